"""One search per run folder: an OS lock on ``results/<name>/.lock``.

The lock is ``fcntl.flock`` on the open ``.lock`` file, so the kernel releases it the moment
its holder dies, kill -9 included, and a dead or unreaped (zombie) process can never hold a
folder. The search takes it and its trial processes inherit the open file, so the folder
stays locked until the last of them has exited. The file's text (PID, host, command, start
time) is only for the message that refuses a second search. Across hosts sharing a
filesystem, ``flock`` may not reach the other host, so a lock file that names another host is
honoured as held until that host's search removes its name (or a person removes the file).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import socket
import sys
import time

from ..errors import UsageError
from ..processes.system import running

LOCK_NAME = ".lock"
DYING_WAIT = 10.0  # seconds to wait for a holder that is dead or dying to let go


def _holder(path: pathlib.Path) -> dict:
    """What the lock file says of its holder ({} if it is empty, gone or unreadable)."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _refusal(run_dir: pathlib.Path, holder: dict) -> UsageError:
    host = holder.get("host")
    where = "" if host in (None, socket.gethostname()) else \
        f" on {host} (if it is gone, remove {run_dir / LOCK_NAME})"
    return UsageError(f"{run_dir} is in use by process {holder.get('pid', '?')}{where} "
                      f"(`{holder.get('command', '?')}`, since {holder.get('since', '?')}); wait for it to finish or "
                      "stop it, or use another --name")


def _acquire(path: pathlib.Path, run_dir: pathlib.Path) -> int:
    """Open and flock the lock file; return the descriptor, or raise the refusal."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        deadline = None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(path)
                pid = holder.get("pid")
                # Its recorded holder is gone: a trial process it left is being killed with it
                # (it dies with its supervisor). Or the holder has not written its name yet.
                # Give it a moment rather than refuse.
                dying = not holder or (holder.get("host") == socket.gethostname() and isinstance(pid, int)
                                       and not running(pid))
                if deadline is None:
                    deadline = time.monotonic() + (DYING_WAIT if dying else 0.0)
                if time.monotonic() >= deadline:
                    raise _refusal(run_dir, holder) from None
                time.sleep(0.05)
        holder = _holder(path)
        if holder.get("host") not in (None, socket.gethostname()):
            raise _refusal(run_dir, holder)  # another host's search, which our flock may not see
        return fd
    except BaseException:
        os.close(fd)
        raise


def _remove_empty(created: list[pathlib.Path]) -> None:
    """Remove the folders the lock created (innermost first) if nothing but the lock is in them."""
    with contextlib.suppress(OSError):
        for folder in created:
            if [p.name for p in folder.iterdir()] in ([LOCK_NAME], []):
                (folder / LOCK_NAME).unlink(missing_ok=True)
            folder.rmdir()


def check_lock(run_dir: pathlib.Path) -> None:
    """Refuse at once (UsageError) if another search holds `run_dir`'s lock; take nothing."""
    path = run_dir / LOCK_NAME
    if path.exists():
        os.close(_acquire(path, run_dir))  # closing the descriptor releases the lock


@contextlib.contextmanager
def hold_lock(run_dir: pathlib.Path):
    """Hold `run_dir`'s ``.lock`` for the duration; refuse (UsageError) if another search holds it.

    Yields the locked file descriptor: pass it to child processes (``pass_fds``) that must keep
    the folder locked for as long as they live. Folders it had to create are removed again if
    nothing but the lock was written to them.
    """
    created = [p for p in (run_dir, *run_dir.parents) if not p.exists()]  # innermost first
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = _acquire(run_dir / LOCK_NAME, run_dir)
    except BaseException:
        _remove_empty(created)
        raise
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
          "command": " ".join(sys.argv)}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    try:
        yield fd
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no name left behind for another host to honour
        _remove_empty(created)  # refused or stopped before writing anything: leave no empty folder behind
        os.close(fd)
