"""`run_search(config) -> SearchResult`: Hyperband over ResNets, every trial in TensorBoard.

The command line (``python -m tuning.search``, `tuning.cli`) is a thin layer over it, and
notebooks call it directly::

    import tuning
    result = tuning.run_search(space="small", max_epochs=3)
    result.best["test_accuracy"]

The search owns its run folder (checks, lock, ``run.json``) and runs the trials in trial
processes (`tuning.engine.trial_process`) that hand over to fresh ones as TensorFlow's memory
grows, or in this process with ``recycle_mb=0``.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import sys
import time
from collections.abc import Callable, Iterator

from .config import RUN_KEY_BEFORE, RUN_KEYS, SearchConfig
from .engine.finish import SearchResult
from .errors import Recycled, SearchError, SystematicFailure, UsageError
from .store import RunFolder

__all__ = ["SearchConfig", "SearchResult", "run_search", "owned_run"]


def run_search(config: SearchConfig | None = None, *, log: Callable[[str], None] | None = None,
               role: str = "standalone", started: float | None = None, **options) -> SearchResult | None:
    """Run (or resume) a Hyperband search over a space of ResNets.

    Args:
        config: the search's options (`SearchConfig`); `options` override single fields, so
            ``run_search(space="small", max_epochs=3)`` works too.
        log: where progress lines go (default: this process's stdout at the time of the call, with a
            live status line inside trials when it is a terminal; see `tuning.progress`).
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
    from .progress import rendering, top_level_mode
    from .runtime import check_keras_tuner, stdout_log

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
    from .engine.session import run_session

    if role != "standalone":  # started by hand with keras-tuner's variables
        from .network import oracle_address, wait_for_chief

        address = oracle_address()  # complete, or said in one line now
    if role == "worker":  # the chief owns the folder: touch it only once the chief is up
        if not wait_for_chief(address, log, finished=lambda: not config.overwrite and folder.summary_json.exists()):
            log(f"the search in {folder.path} has finished (its summary.json is written) and no chief is "
                f"running: this worker has nothing to do. Its results: {folder.path / 'leaderboard.md'}")
            return None
        if config.recycle_mb:
            from .supervisor import supervise_worker

            return supervise_worker(folder, config, space, log)
        return run_session(config, space, folder, role=role, log=log, resuming=False, t_start=t_start)
    with owned_run(config, space) as (folder, lock_fd, resuming):
        if role == "standalone" and config.recycle_mb:
            from .supervisor import supervise

            return supervise(folder, lock_fd, config, log, resuming, t_start)
        return run_session(config, space, folder, role=role, log=log, resuming=resuming, t_start=t_start)


@contextlib.contextmanager
def owned_run(config: SearchConfig, space) -> Iterator[tuple[RunFolder, int, bool]]:
    """Check the run folder, lock it, and write the config to its run.json.

    Yields:
        (folder, lock_fd, resuming): `lock_fd` for child processes to inherit; `resuming` when
        the folder holds an earlier session of this run.
    """
    from .backend import select

    select(config.backend)  # before anything imports Keras, here and in every child process
    folder = RunFolder(config.run_dir)
    folder.check_lock()  # another search on this folder: refuse now, before any work
    resuming = _check_existing_run(folder, config, space)
    _check_writable(pathlib.Path(config.results_dir))
    with folder.lock() as lock_fd:
        if config.overwrite:
            folder.clear()
        _write_config(folder, config, space, resuming)
        try:
            yield folder, lock_fd, resuming
        except BaseException:
            if not resuming and not folder.tuner_dir.exists():  # nothing ran: leave no run behind
                folder.run_json.unlink(missing_ok=True)
                for made in ("data", "compile_cache"):  # a folder's index and cache, compiled steps
                    shutil.rmtree(folder.path / made, ignore_errors=True)
            raise


def _write_config(folder: RunFolder, config: SearchConfig, space, resuming: bool) -> None:
    """run.json: what the run is (checked on resume) and the config every child process reads."""
    info = (folder.read("run.json") or {}) if resuming else {}
    folder.write("run.json", {**info, **config.identity(space.name), "space_file": str(space.path),
                              "space_text": space.text, "config": config.to_dict()})


def _check_existing_run(folder: RunFolder, config: SearchConfig, space) -> bool:
    """True to resume; UsageError if the folder holds a different run (unless overwriting)."""
    if config.overwrite or not folder.exists():
        return False
    from .store import LOCK_NAME

    names = {p.name for p in folder.path.iterdir()} - {LOCK_NAME, "error.log"}
    if names and "run.json" not in names:
        raise UsageError(f"{folder.path} exists but is not a search run; choose another --name or "
                         "--results-dir, or pass --overwrite to replace it")
    if names <= {"run.json"}:
        return False  # nothing of a run yet (or a first start that stopped before its first trial)
    try:
        old = folder.read("run.json", strict=True) or {}
    except UsageError:
        raise UsageError(f"{folder.run_json} is unreadable; pass --overwrite to start this run afresh") from None
    now = config.identity(space.name)
    old = {k: old.get(k, RUN_KEY_BEFORE.get(k)) for k in RUN_KEYS}
    diffs = [f"{k} {old[k]!r} (now {now[k]!r})" for k in RUN_KEYS if old[k] != now[k]]
    if diffs:
        raise UsageError(f"{folder.path} holds a run made with {', '.join(diffs)}; resume it with the same "
                         "options, choose another --name, or pass --overwrite to replace it")
    return True


def _check_writable(results_dir: pathlib.Path) -> None:
    probe = results_dir
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to {results_dir}: {probe} is not a writable folder; "
                         "choose another --results-dir")


if __name__ == "__main__":  # `python -m tuning.search` is the command line
    from .cli import main

    sys.exit(main())
