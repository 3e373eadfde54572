"""One search per results folder: a lock file naming the process that holds it."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import sys
import time

from .errors import UsageError

LOCK_NAME = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _refuse_if_held(run_dir: pathlib.Path, holder: dict, me: dict) -> None:
    pid = int(holder.get("pid", -1))
    same_host = holder.get("host") == me["host"]
    if pid > 0 and pid != os.getpid() and (not same_host or _alive(pid)):
        where = "" if same_host else f" on {holder.get('host')} (remove {run_dir / LOCK_NAME} if it is gone)"
        raise UsageError(
            f"{run_dir} is in use by process {pid}{where} (`{holder.get('command', '?')}`, since "
            f"{holder.get('since', '?')}); wait for it to finish or stop it, or use another --name"
        )


def _holder(path: pathlib.Path) -> dict:
    """What the lock file says of its holder ({} if it is gone or unreadable)."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def check_lock(run_dir: pathlib.Path) -> None:
    """Refuse at once (UsageError) if a live process holds the run's lock; take nothing."""
    _refuse_if_held(run_dir, _holder(run_dir / LOCK_NAME), {"host": socket.gethostname()})


@contextlib.contextmanager
def run_lock(run_dir: pathlib.Path):
    """Hold ``<run_dir>/.lock`` for the duration; refuse (UsageError) if a live process holds it.

    A lock left by a process that no longer exists (killed, machine rebooted) is taken over.
    """
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
          "command": " ".join(sys.argv)}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            _refuse_if_held(run_dir, _holder(path), me)
            path.unlink(missing_ok=True)  # its holder is gone: take it over
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise UsageError(f"cannot take the lock {path}; remove it if no search is running")
    try:
        yield
    finally:
        if _holder(path).get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                path.unlink()
        if created:  # refused before writing anything: leave no empty folder behind
            with contextlib.suppress(OSError):
                run_dir.rmdir()
