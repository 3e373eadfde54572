"""Trial processes that hand over to fresh ones as they grow: a `Seat` is one such succession.

TensorFlow keeps 10-30 MB for every model a process has trained, so trials run in a child
process (``python -m tuning.search.trial_process``) that exits with `EXIT_RECYCLED` once it has
grown by ``recycle_mb``, after saving everything; the next one resumes where it stopped. So that
a hand-over costs no start-up, the next process is started as a *standby* while the current one
is half-way to its limit (if the machine has the memory for it): it imports the backend and loads
the data, then waits for "go" on its standard input, sent the moment the current one has exited.
A standalone search has one seat, ``--workers N`` one per worker, and so has a worker started by
hand on another host.
"""

from __future__ import annotations

import os
import pathlib
import signal
import tempfile
import time
from collections.abc import Callable

from ..faults import standby_always
from .child import ChildProcess, child_env, python_module
from .protocol import MODULE, command_args
from .system import available_mb, rss_mb

STANDBY_AT = 0.5        # start the standby once the current process has grown by this share of recycle_mb
STANDBY_HEADROOM = 512  # MB of available memory to leave besides the standby (which is as large as a
                        # trial process before its first trial: the backend and the data)
RESTARTS = 3            # times a killed trial process (a dead --workers worker) of a seat is started again
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # a process asked to stop is not started again


class TrialProcess:
    """A trial process (``python -m tuning.search.trial_process``), and its outcome file if asked for.

    Args:
        run_dir, role: its run folder and role.
        log: called with each line of its standard output.
        lock_fd: the run's lock, which it inherits (None: a hand-started worker's, which holds none).
        standby: None, or where it waits for `go` (`tuning.processes.protocol.STANDBY_POINTS`).
        env: its environment (default: this process's, `child_env`).
        show_error: called with each line of its standard error; None merges it into `log`.
        outcome: give it an outcome file (`outcome`) to say how it ended in.
        name: what to call it in messages.
        **args: the rest of its arguments (`command_args`).
    """

    def __init__(self, run_dir, role: str, log: Callable[[str], None], lock_fd: int | None, *, standby: str | None,
                 env: dict | None = None, show_error: Callable[[str], None] | None = None, outcome: bool = False,
                 name: str = "", **args):
        self.outcome: pathlib.Path | None = None
        if outcome:
            fd, path = tempfile.mkstemp(prefix="tuning-outcome-", suffix=".json")
            os.close(fd)
            self.outcome = pathlib.Path(path)
        cmd = python_module(MODULE, command_args(run_dir, role, outcome=self.outcome and str(self.outcome),
                                                  standby=standby, **args))
        self.baseline: float | None = None  # its memory when it reported its first trial
        self.process = ChildProcess(cmd, env or child_env(), self._line(log), stdin=bool(standby),
                                    on_error_line=show_error, pass_fds=() if lock_fd is None else (lock_fd,),
                                    name=name)

    def _line(self, log: Callable[[str], None]) -> Callable[[str], None]:
        def on_line(line: str) -> None:
            if self.baseline is None and line.startswith("trial "):
                self.baseline = _rss(self.process.proc.pid)
            log(line)

        return on_line

    def go(self) -> bool:
        """Start a standby's session now; False if it is gone."""
        return self.process.send(f"go {time.time()!r}")

    def grown(self) -> float:
        """MB it has grown by since its first trial (0 before)."""
        return 0.0 if self.baseline is None else _rss(self.process.proc.pid) - self.baseline

    def room_for_standby(self) -> bool:
        """Whether the machine has the memory for a second process of this size (and headroom)."""
        available = available_mb()
        return available is None or available > (self.baseline or 0.0) + STANDBY_HEADROOM

    def close(self) -> None:
        if self.outcome is not None:
            self.outcome.unlink(missing_ok=True)


class Seat:
    """Where one succession of trial processes runs: the current one and, once it has grown by
    half of `recycle_mb`, its standby.

    Args:
        spawn: ``spawn(standby, continuing)`` starts a process (`TrialProcess`) that goes on with
            the search, as a standby (waiting for "go" once the data is loaded) if `standby`;
            `continuing`: it takes over from an earlier process of the seat (every one but the first).
        recycle_mb: the config's ``recycle_mb``.
        first: the first process, if it was started already as a standby (to be told `go`
            later); by default ``spawn(False, False)``.
        standbys: whether to start standbys at all. A standby's start-up (importing TensorFlow,
            loading the data: seconds of CPU) is only free where a core is spare: where every
            core is already training, it slows the running trials by as much as it saves.
    """

    def __init__(self, spawn: Callable[[bool, bool], TrialProcess], recycle_mb: int,
                 first: TrialProcess | None = None, standbys: bool = True):
        self.spawn, self.recycle_mb, self.standbys = spawn, recycle_mb, standbys or standby_always()
        self.current = first or spawn(False, False)
        self.waiting = first is not None  # the current process still waits for go
        self.standby: TrialProcess | None = None
        self.children = [self.current]
        self.restarts = 0

    def go(self) -> None:
        """The first process (`first`) starts its session; if it is gone, a fresh one does."""
        if self.waiting and not self.current.go():
            self._replace()
        self.waiting = False

    def prepare_standby(self) -> None:
        """Start the standby if the current process has grown enough and the machine has the room."""
        current = self.current
        if not (self.recycle_mb and self.standbys):
            return
        grown = current.grown() > STANDBY_AT * self.recycle_mb or (standby_always() and current.baseline)
        if self.standby is None and grown and current.room_for_standby():
            self.standby = self.spawn(True, True)
            self.children.append(self.standby)

    def hand_over(self) -> TrialProcess:
        """The current process has exited: its standby goes on (a fresh process if none is ready)."""
        if self.standby is None or not self.standby.go():
            self._replace()
        else:
            self.current, self.standby = self.standby, None
        return self.current

    def _replace(self) -> None:
        self.current, self.standby = self.spawn(False, True), None
        self.children.append(self.current)

    def poll(self) -> int | None:
        return self.current.process.poll()

    def close(self) -> None:
        """Kill every process of this seat but the running one (standbys hold nothing), and remove
        the outcome files."""
        for child in self.children:
            if child is not self.current or self.waiting:
                child.process.stop()
            child.close()


def _rss(pid: int) -> float:
    try:
        return rss_mb(pid)
    except OSError:
        return 0.0
