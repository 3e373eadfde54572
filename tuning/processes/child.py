"""Child processes of a search: spawn, pump output, hand over, restart, interrupt.

One `ChildProcess` serves both the trial processes of a standalone search (which hand over to
fresh ones as TensorFlow's memory grows) and the chief and workers of ``--workers``. It imports
nothing of this package.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child is killed if its parent dies (kill -9 included), so it can never go on
    writing to a folder whose lock its parent held."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class ChildProcess:
    """A ``python -m ...`` child whose output goes, line by line, to callbacks.

    Args:
        cmd: the command.
        env: its environment.
        on_line: called with each line of its stdout (without the newline).
        on_error_line: called with each line of its stderr; None merges stderr into stdout.
        pass_fds: descriptors it inherits (the run's lock).
        name: what to call it in messages.
        stdin: give it a pipe on its standard input (`send`) instead of this process's.

    The last 200 stderr lines are kept in `errors`. The child dies with this process.
    """

    def __init__(self, cmd: Sequence[str], env: dict, on_line: Callable[[str], None],
                 on_error_line: Callable[[str], None] | None = None, pass_fds: Sequence[int] = (), name: str = "",
                 stdin: bool = False):
        self.cmd, self.env, self.on_line, self.on_error_line = list(cmd), env, on_line, on_error_line
        self.name, self.stdin = name, stdin
        self.pass_fds = tuple(pass_fds)
        self.start()

    def start(self) -> None:
        """Start (or start again) the command."""
        self.errors: list[str] = []
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, stdout=subprocess.PIPE, text=True, bufsize=1, pass_fds=self.pass_fds,
            stdin=subprocess.PIPE if self.stdin else None,
            stderr=subprocess.PIPE if self.on_error_line else subprocess.STDOUT,
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
        self._pumps = [threading.Thread(target=self._pump_out, daemon=True)]
        if self.on_error_line:
            self._pumps.append(threading.Thread(target=self._pump_err, daemon=True))
        for t in self._pumps:
            t.start()

    def _pump_out(self) -> None:
        for line in self.proc.stdout:
            self.on_line(line.rstrip("\n"))

    def _pump_err(self) -> None:
        for line in self.proc.stderr:
            self.errors.append(line)
            del self.errors[:-200]
            self.on_error_line(line.rstrip("\n"))

    def send(self, line: str) -> bool:
        """Write a line to its standard input (`stdin=True`); False if it is gone."""
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            return False
        return True

    def stop(self) -> None:
        """Kill it (a child that holds nothing yet, such as a standby) and wait for it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.join_output(2)

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, every: Callable[[], None] | None = None) -> int:
        """Wait for it to exit and for its output to be passed on; its exit status.

        `every`, if given, is called about every 0.2 s while it runs. On Ctrl-C here, Ctrl-C goes
        on to the child (again until it stops: see `interrupt`), its last words are still passed
        on, and the KeyboardInterrupt is raised again.
        """
        try:
            while every is not None and self.proc.poll() is None:
                every()
                try:
                    self.proc.wait(0.2)
                except subprocess.TimeoutExpired:
                    pass
            self.proc.wait()
        except KeyboardInterrupt:
            threading.Thread(target=self.interrupt, daemon=True).start()
            self.proc.wait()
            self.join_output()
            raise
        self.join_output()
        return self.proc.returncode

    def join_output(self, timeout: float = 10.0) -> None:
        for t in self._pumps:
            t.join(timeout)

    def interrupt(self, every: float = 5.0, limit: float = 120.0,
                  give_up: Callable[[], bool] | None = None) -> None:
        """Send Ctrl-C until it stops.

        Python drops a KeyboardInterrupt that lands while it runs a finaliser ("Exception ignored
        in ..."), so one signal may not be enough. Once the child has it, it ignores further ones
        while it saves. After `limit` seconds, or as soon as `give_up()` says there is no point
        in waiting, it is killed: its trial resumes from the last completed epoch anyway.
        """
        t0 = time.monotonic()
        signalled = None
        while self.proc.poll() is None:
            now = time.monotonic()
            if now - t0 > limit or (give_up is not None and give_up()):
                self.proc.kill()
                self.proc.wait()
                return
            if signalled is None or now - signalled >= every:
                self.proc.send_signal(signal.SIGINT)
                signalled = now
            try:
                self.proc.wait(0.2)
            except subprocess.TimeoutExpired:
                pass


def interrupt_all(children: Sequence[ChildProcess], give_up: Callable[[ChildProcess], bool] | None = None) -> None:
    """Ctrl-C to every child still running (again until each stops), and wait for them all.
    `give_up(child)`: whether to stop waiting for that child and kill it (see `interrupt`)."""
    stoppers = [threading.Thread(target=c.interrupt, kwargs={"give_up": give_up and (lambda c=c: give_up(c))},
                                 daemon=True) for c in children if c.poll() is None]
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join()


def python_module(module: str, args: Sequence[str]) -> list[str]:
    """The command that runs ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def child_env(**extra: str) -> dict:
    """This process's environment with unbuffered Python output and `extra`."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
