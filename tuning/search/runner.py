"""`run_search(config) -> SearchResult`: Hyperband over ResNets, every trial in TensorBoard.

The command line (``python -m tuning.search``, `tuning.search.cli`) is a thin layer over it, and
notebooks call it directly::

    import tuning
    result = tuning.run_search(space="small", max_epochs=3)
    result.best["test_accuracy"]

The search owns its run folder (checks, lock, ``run.json``: `tuning.run.owner`) and runs the
trials in trial processes (`tuning.search.supervise`) that hand over to fresh ones as the
backend's memory grows, or in this process with ``recycle_mb=0`` (`tuning.search.session`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from ..config import SearchConfig
from ..errors import Recycled, SearchError, SystematicFailure
from ..observe.progress import rendering, stdout_log, top_level_mode
from ..run.folder import RunFolder
from ..run.owner import owned_run
from ..runtime import check_keras_tuner
from .finish import SearchResult
from .session import run_session
from .supervise import supervise, supervise_worker
from .workers import oracle_address, wait_for_chief


def run_search(config: SearchConfig | None = None, *, log: Callable[[str], None] | None = None,
               role: str = "standalone", started: float | None = None, **options) -> SearchResult | None:
    """Run (or resume) a Hyperband search over a space of ResNets.

    Args:
        config: the search's options (`SearchConfig`); `options` override single fields, so
            ``run_search(space="small", max_epochs=3)`` works too.
        log: where progress lines go (default: this process's stdout at the time of the call, with a
            live status line inside trials when it is a terminal; see `tuning.observe.progress`).
        role: ``standalone``; or keras-tuner's ``chief`` / ``worker`` for a search started by
            hand on several hosts (see the README).
        started: when the user's command started (`time.time()`), for the wall time; default: now.

    Returns:
        A `SearchResult` with best.json's and summary.json's contents and the leaderboard (None
        for a worker, which only runs trials).

    Raises:
        UsageError, SpaceError, DataError (all `ValueError`): bad input; nothing was changed.
        SystematicFailure: trials kept failing the same way; SearchError: anything else (one line,
        the traceback in ``<run>/error.log``).
    """
    t_start = started or time.time()
    check_keras_tuner()
    config, space = (config or SearchConfig()).replace(**options).resolve()
    folder = RunFolder(config.run_dir)
    # A caller's own log gets lines, never terminal control codes; this process's stdout gets the
    # live status line when it is a terminal.
    mode = top_level_mode(config.quiet, terminal=log is None and _is_terminal(sys.stdout))
    try:
        with rendering(log or stdout_log(), mode, sys.stdout) as shown:
            return _run(config, space, folder, role, shown, t_start)
    except (ValueError, SystematicFailure, SearchError, Recycled, KeyboardInterrupt):
        raise  # UsageError, SpaceError and DataError are ValueErrors: bad input, said in one line
    except Exception as e:  # anything else: one line here, the traceback in the run's error.log
        raise SearchError.unexpected(e, folder) from e


def _is_terminal(stream) -> bool:
    """Whether `stream` is a terminal that draws in place (not TERM=dumb)."""
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):  # a replaced or closed sys.stdout
        return False


def _run(config: SearchConfig, space, folder: RunFolder, role: str, log, t_start: float):
    if role != "standalone":  # started by hand with keras-tuner's variables
        address = oracle_address()  # complete, or said in one line now
    if role == "worker":  # the chief owns the folder: touch it only once the chief is up
        if not wait_for_chief(address, log, finished=lambda: not config.overwrite and folder.summary_json.exists()):
            log(f"the search in {folder.path} has finished (its summary.json is written) and no chief is "
                f"running: this worker has nothing to do. Its results: {folder.path / 'leaderboard.md'}")
            return None
        if config.recycle_mb:
            return supervise_worker(folder, config, space, log)
        return run_session(config, space, folder, role=role, log=log, resuming=False, t_start=t_start)
    with owned_run(config, space, log) as (folder, lock_fd, resuming, config):
        if role == "standalone" and config.recycle_mb:
            return supervise(folder, lock_fd, config, log, resuming, t_start)
        return run_session(config, space, folder, role=role, log=log, resuming=resuming, t_start=t_start)

