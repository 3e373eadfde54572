"""A search's trials in trial processes that hand over to fresh ones as they grow (a
`tuning.processes.seat.Seat`): a standalone search's (`supervise`), and those of a worker started
by hand on another host (`supervise_worker`).

Every trial process inherits the run's lock (a hand-started worker's have none: its chief holds
it), so the folder stays locked until the last has exited; each is killed if this process dies.
A process says how it ended with its exit status and an outcome file, never through its stderr
text. One killed by a signal other than a request to stop (the kernel's out-of-memory killer,
kill -9) is started again, `RESTARTS` times.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable

from ..config import SearchConfig
from ..errors import EXIT_RECYCLED
from ..processes.protocol import exit_status, raise_outcome, read_outcome
from ..processes.seat import RESTARTS, STOP_SIGNALS, Seat, TrialProcess
from ..processes.system import usable_cpus
from ..run.files import write_json
from ..run.folder import RunFolder
from ..runtime import select
from .finish import SearchResult, result_from_disk


def supervise(folder: RunFolder, lock_fd: int, config: SearchConfig, log, resuming: bool,
              t_start: float) -> SearchResult:
    """Run the trials in trial processes until the search is done; its result.

    A trial process killed by a signal other than a request to stop (the kernel's out-of-memory
    killer, kill -9) is started again, `RESTARTS` times: it resumes the search from the folder as
    the same command run again would (a trial cut short resumes from its last completed epoch, a
    record cut short is completed). Raises what ended a trial process otherwise
    (`tuning.processes.protocol.raise_outcome`).
    """
    show_error = _show_error(config)

    def spawn(standby: bool, continuing: bool) -> TrialProcess:
        return TrialProcess(folder.path, "standalone", log, lock_fd, standby="loaded" if standby else None,
                            show_error=show_error, outcome=True, handover=True, resuming=resuming,
                            continuing=continuing, started=None if continuing else t_start)

    _run_seat(spawn, config, folder, log)
    return result_from_disk(folder)


def supervise_worker(folder: RunFolder, config: SearchConfig, space, log) -> None:
    """A worker started by hand (keras-tuner's variables, usually on another host): its trials
    run in trial processes that hand over to fresh ones as they grow, as a standalone search's
    do, until the chief has no more work. They take the config of this command from a file of
    their own, not the run's run.json: the chief may not have written it yet, and its paths are
    the chief host's. The chief holds the run's lock, so they inherit none. One that is killed
    is started again (`RESTARTS` times): the chief gives it back its unfinished trial."""
    select(config.backend)
    fd, config_file = tempfile.mkstemp(prefix="tuning-worker-", suffix=".json")
    os.close(fd)
    write_json(config_file, {"config": config.to_dict(), "space": space.name, "space_file": str(space.path),
                             "space_text": space.text})
    try:
        show_error = _show_error(config)

        def spawn(standby: bool, continuing: bool) -> TrialProcess:
            return TrialProcess(folder.path, "worker", log, None, standby="loaded" if standby else None,
                                show_error=show_error, outcome=True, handover=True, continuing=continuing,
                                config=config_file)

        _run_seat(spawn, config, folder, log)
    finally:
        os.unlink(config_file)


def _show_error(config: SearchConfig) -> Callable[[str], None]:
    """Where a trial process's standard error goes: this one's with ``--verbose``, else nowhere
    (what ended it comes back in its outcome file)."""
    return (lambda line: print(line, file=sys.stderr, flush=True)) if config.verbose else (lambda line: None)


def _run_seat(spawn: Callable[[bool, bool], TrialProcess], config: SearchConfig, folder: RunFolder,
              log: Callable[[str], None]) -> None:
    """Trial processes from `spawn`, one after another (a `Seat`), until one ends the search's
    part with exit status 0; raises what ended one otherwise (`tuning.processes.protocol.raise_outcome`).
    One killed by a signal other than a request to stop (kill -9, the kernel's out-of-memory
    killer) is started again up to `RESTARTS` times, said in `log`. Closes the seat at the end."""
    seat = None
    try:
        seat = Seat(spawn, config.recycle_mb, standbys=usable_cpus() > 1)
        while True:
            returncode = seat.current.process.wait(every=seat.prepare_standby)
            if returncode == EXIT_RECYCLED:
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


def _killed(folder: RunFolder, returncode: int, errors: list[str]) -> str:
    """The message for a trial process that ended without a word (killed, or crashed hard)."""
    how = exit_status(returncode)
    log_path = folder.append_error_log(f"the trial process {how}; its last output:\n" + "".join(errors[-50:]))
    return (f"the trial process {how}; finished trials and the running trial's last completed epoch are saved: "
            f"run the same command again to resume (its last output is in {log_path})")
