"""Trial processes that hand over to fresh ones as they grow: a standalone search's, and each
worker of ``--workers``.

TensorFlow keeps 10-30 MB for every model a process has trained, so trials run in a child
process (`tuning.engine.trial_process`) that exits with `RECYCLE_EXIT` once it has grown by
``recycle_mb``, after saving everything; the next one resumes where it stopped. So that a
hand-over costs no start-up, the next process is started as a *standby* while the current one
is half-way to its limit (if the machine has the memory for it): it imports TensorFlow and loads
the data, then waits for "go" on its standard input, sent the moment the current one has exited.
A `Seat` is one such succession of processes: the standalone search has one, ``--workers N``
has one per worker (`tuning.distributed`), and so has a worker started by hand on another host
(`supervise_worker`).

Every trial process inherits the run's lock (a hand-started worker's have none: its chief holds
it), so the folder stays locked until the last has exited; each is killed if this process dies.
A process says how it ended with its exit status and an outcome file, never through its stderr
text.
"""

from __future__ import annotations

import os
import pathlib
import signal
import sys
import tempfile
import time
from collections.abc import Callable

from .config import SearchConfig
from .engine.finish import SearchResult, result_from_disk
from .engine.trial_process import MODULE, command_args
from .faults import standby_always
from .forkserver import start_for
from .outcome import RECYCLE_EXIT, exit_status, raise_outcome, read_outcome
from .processes import ChildProcess, child_env, python_module
from .runtime import rss_mb
from .store import RunFolder

STANDBY_AT = 0.5        # start the standby once the current process has grown by this share of recycle_mb
STANDBY_HEADROOM = 512  # MB of available memory to leave besides the standby (which is as large as a
                        # trial process before its first trial: TensorFlow and the data)
RESTARTS = 3            # times a killed trial process (a dead --workers worker) of a seat is started again
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # a process asked to stop is not started again


class TrialProcess:
    """A trial process (``python -m tuning.engine.trial_process``), and its outcome file if asked for.

    Args:
        run_dir, role: its run folder and role.
        log: called with each line of its standard output.
        lock_fd: the run's lock, which it inherits (None: a hand-started worker's, which holds none).
        standby: None, or where it waits for `go` (`tuning.engine.trial_process.STANDBY_POINTS`).
        env: its environment (default: this process's, `child_env`).
        show_error: called with each line of its standard error; None merges it into `log`.
        outcome: give it an outcome file (`outcome`) to say how it ended in.
        name: what to call it in messages.
        forkserver: start it as a fork of this `tuning.forkserver.ForkServer` where it can.
        **args: the rest of its arguments (`command_args`).
    """

    def __init__(self, run_dir, role: str, log: Callable[[str], None], lock_fd: int | None, *, standby: str | None,
                 env: dict | None = None, show_error: Callable[[str], None] | None = None, outcome: bool = False,
                 name: str = "", forkserver=None, **args):
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
                                    name=name, forkserver=forkserver)

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
        available = _available_mb()
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


def usable_cpus() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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

    A trial process killed by a signal other than a request to stop (the kernel's out-of-memory
    killer, kill -9) is started again, `RESTARTS` times: it resumes the search from the folder as
    the same command run again would (a trial cut short resumes from its last completed epoch, a
    record cut short is completed). Raises what ended a trial process otherwise
    (`tuning.errors.raise_outcome`).
    """
    show_error = _show_error(config)
    forkserver = start_for(config, child_env(), str(folder.path))

    def spawn(standby: bool, continuing: bool) -> TrialProcess:
        return TrialProcess(folder.path, "standalone", log, lock_fd, standby="loaded" if standby else None,
                            show_error=show_error, outcome=True, handover=True, resuming=resuming,
                            continuing=continuing, started=None if continuing else t_start, forkserver=forkserver)

    _run_seat(spawn, config, folder, forkserver, log)
    return result_from_disk(folder)


def supervise_worker(folder: RunFolder, config: SearchConfig, space, log) -> None:
    """A worker started by hand (keras-tuner's variables, usually on another host): its trials
    run in trial processes that hand over to fresh ones as they grow, as a standalone search's
    do, until the chief has no more work. They take the config of this command from a file of
    their own, not the run's run.json: the chief may not have written it yet, and its paths are
    the chief host's. The chief holds the run's lock, so they inherit none. One that is killed
    is started again (`RESTARTS` times): the chief gives it back its unfinished trial."""
    from .backend import select
    from .runtime import write_json

    select(config.backend)
    fd, config_file = tempfile.mkstemp(prefix="tuning-worker-", suffix=".json")
    os.close(fd)
    write_json(config_file, {"config": config.to_dict(), "space": space.name, "space_file": str(space.path),
                             "space_text": space.text})
    try:
        forkserver = start_for(config, child_env(), str(folder.path))

        show_error = _show_error(config)

        def spawn(standby: bool, continuing: bool) -> TrialProcess:
            return TrialProcess(folder.path, "worker", log, None, standby="loaded" if standby else None,
                                show_error=show_error, outcome=True, handover=True, continuing=continuing,
                                config=config_file, forkserver=forkserver)

        _run_seat(spawn, config, folder, forkserver, log)
    finally:
        os.unlink(config_file)


def _show_error(config: SearchConfig) -> Callable[[str], None]:
    """Where a trial process's standard error goes: this one's with ``--verbose``, else nowhere
    (what ended it comes back in its outcome file)."""
    return (lambda line: print(line, file=sys.stderr, flush=True)) if config.verbose else (lambda line: None)


def _run_seat(spawn: Callable[[bool, bool], TrialProcess], config: SearchConfig, folder: RunFolder, forkserver,
              log: Callable[[str], None]) -> None:
    """Trial processes from `spawn`, one after another (a `Seat`), until one ends the search's
    part with exit status 0; raises what ended one otherwise (`tuning.errors.raise_outcome`).
    One killed by a signal other than a request to stop (kill -9, the kernel's out-of-memory
    killer) is started again up to `RESTARTS` times, said in `log`. Closes the seat and
    `forkserver` at the end."""
    seat = None
    try:
        seat = Seat(spawn, config.recycle_mb, standbys=usable_cpus() > 1)
        while True:
            returncode = seat.current.process.wait(every=seat.prepare_standby)
            if returncode == RECYCLE_EXIT:
                seat.hand_over()
            elif returncode < 0 and -returncode not in STOP_SIGNALS and seat.restarts < RESTARTS:
                seat.restarts += 1
                log(f"the trial process {exit_status(returncode)}; starting another ({seat.restarts}/{RESTARTS}): "
                    "its trial resumes from its last completed epoch")
                seat.hand_over()
            else:
                break
        if returncode != 0:
            said = read_outcome(seat.current.outcome)
            raise_outcome(said, returncode, "" if said else _killed(folder, returncode, seat.current.process.errors))
    finally:
        if seat is not None:
            seat.close()
        if forkserver is not None:
            forkserver.close()


def _killed(folder: RunFolder, returncode: int, errors: list[str]) -> str:
    """The message for a trial process that ended without a word (killed, or crashed hard)."""
    how = exit_status(returncode)
    log_path = folder.append_error_log(f"the trial process {how}; its last output:\n" + "".join(errors[-50:]))
    return (f"the trial process {how}; finished trials and the running trial's last completed epoch are saved: "
            f"run the same command again to resume (its last output is in {log_path})")
