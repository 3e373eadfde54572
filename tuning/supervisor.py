"""A standalone search's trial processes: each hands over to a fresh one when it has grown.

TensorFlow keeps 10-30 MB for every model a process has trained, so trials run in a child
process (`tuning.engine.trial_process`) that exits with `RECYCLE_EXIT` once it has grown by
``recycle_mb``, after saving everything; the next one resumes where it stopped. So that a
hand-over costs no start-up, the next process is started as a *standby* while the current one
is half-way to its limit (if the machine has the memory for it): it imports TensorFlow and loads
the data, then waits for "go" on its standard input, sent the moment the current one has exited.

Every trial process inherits the run's lock, so the folder stays locked until the last has
exited; each is killed if this process dies. A process says how it ended with its exit status
and an outcome file, never through its stderr text.
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable

from .config import SearchConfig
from .engine.finish import SearchResult, result_from_disk
from .engine.trial_process import MODULE, command_args
from .faults import standby_always
from .outcome import RECYCLE_EXIT, exit_status, raise_outcome, read_outcome
from .processes import ChildProcess, child_env, python_module
from .runtime import rss_mb
from .store import RunFolder

STANDBY_AT = 0.5        # start the standby once the current process has grown by this share of recycle_mb
STANDBY_HEADROOM = 512  # MB of available memory to leave besides the standby (which is as large as a
                        # trial process before its first trial: TensorFlow and the data)


class _Child:
    """A trial process and its outcome file."""

    def __init__(self, folder: RunFolder, lock_fd: int, log, show_error, *, resuming: bool, continuing: bool,
                 standby: bool, started: float | None = None):
        fd, path = tempfile.mkstemp(prefix="tuning-outcome-", suffix=".json")
        os.close(fd)
        self.outcome = pathlib.Path(path)
        self.baseline: float | None = None  # its memory when it reported its first trial
        args = command_args(folder.path, "standalone", outcome=path, handover=True, resuming=resuming,
                             continuing=continuing, standby=standby, started=started)
        self.process = ChildProcess(python_module(MODULE, args), child_env(), self._line(log), stdin=standby,
                                    on_error_line=show_error, pass_fds=(lock_fd,))

    def _line(self, log: Callable[[str], None]) -> Callable[[str], None]:
        def on_line(line: str) -> None:
            if self.baseline is None and line.startswith("trial "):
                self.baseline = _rss(self.process.proc.pid)
            log(line)

        return on_line

    def grown(self) -> float:
        """MB it has grown by since its first trial (0 before)."""
        return 0.0 if self.baseline is None else _rss(self.process.proc.pid) - self.baseline

    def room_for_standby(self) -> bool:
        """Whether the machine has the memory for a second process of this size (and headroom)."""
        available = _available_mb()
        return available is None or available > (self.baseline or 0.0) + STANDBY_HEADROOM

    def close(self) -> None:
        self.outcome.unlink(missing_ok=True)


def _available_mb() -> float | None:
    """The kernel's estimate of memory available without swapping (None where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _rss(pid: int) -> float:
    try:
        return rss_mb(pid)
    except OSError:
        return 0.0


def supervise(folder: RunFolder, lock_fd: int, config: SearchConfig, log, resuming: bool,
              t_start: float) -> SearchResult:
    """Run the trials in trial processes until the search is done; its result.

    Raises what ended a trial process (`tuning.errors.raise_outcome`).
    """
    show_error = (lambda line: print(line, file=sys.stderr, flush=True)) if config.verbose else (lambda line: None)

    def spawn(standby: bool, started: float | None = None) -> _Child:
        return _Child(folder, lock_fd, log, show_error, resuming=resuming, continuing=standby, standby=standby,
                      started=started)

    current, standby = spawn(False, started=t_start), None
    children = [current]

    def prepare_standby() -> None:
        nonlocal standby
        grown = current.grown() > STANDBY_AT * config.recycle_mb or (standby_always() and current.baseline)
        if standby is None and grown and current.room_for_standby():
            standby = spawn(True)
            children.append(standby)

    try:
        while (returncode := current.process.wait(every=prepare_standby)) == RECYCLE_EXIT:
            if standby is None or not standby.process.send(f"go {time.time()!r}"):
                standby = spawn(True)  # none ready (or it died): start one now
                children.append(standby)
                standby.process.send(f"go {time.time()!r}")
            current, standby = standby, None
        if returncode == 0:
            return result_from_disk(folder)
        said = read_outcome(current.outcome)
        raise_outcome(said, returncode, "" if said else _killed(folder, returncode, current.process.errors))
    finally:
        for child in children:
            if child is not current:
                child.process.stop()
            child.close()


def _killed(folder: RunFolder, returncode: int, errors: list[str]) -> str:
    """The message for a trial process that ended without a word (killed, or crashed hard)."""
    how = exit_status(returncode)
    log_path = folder.append_error_log(f"the trial process {how}; its last output:\n" + "".join(errors[-50:]))
    return (f"the trial process {how}; finished trials and the running trial's last completed epoch are saved: "
            f"run the same command again to resume (its last output is in {log_path})")
