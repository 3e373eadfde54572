"""Owning a run folder: the checks before a search may use it, its lock, and its ``run.json``.

A search (standalone, a hand-started chief, or the ``--workers`` launcher) owns its folder for
as long as it runs: `owned_run` checks that the folder holds this run or nothing (a resumed run
must match what ``run.json`` says it is), takes the lock, and writes the config every child
process reads.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import time
from collections.abc import Iterator

from ..config import RUN_KEY_BEFORE, RUN_KEYS, SearchConfig, fmt_time
from ..errors import UsageError
from ..runtime import select
from .folder import RunFolder
from .lock import LOCK_NAME


@contextlib.contextmanager
def owned_run(config: SearchConfig, space, log=print) -> Iterator[tuple[RunFolder, int, bool, SearchConfig]]:
    """Check the run folder, lock it, settle the budget and write the config to its run.json.

    Yields:
        (folder, lock_fd, resuming, config): `lock_fd` for child processes to inherit; `resuming`
        when the folder holds an earlier session of this run; `config` with the run's budget (a
        larger ``iterations`` than the run's extends it; a smaller one leaves it as it was, said in
        one line through `log`).
    """
    select(config.backend)  # before anything imports Keras, here and in every child process
    folder = RunFolder(config.run_dir)
    folder.check_lock()  # another search on this folder: refuse now, before any work
    resuming = _check_existing_run(folder, config, space)
    _check_writable(pathlib.Path(config.results_dir))
    with folder.lock() as lock_fd:
        if config.overwrite:
            folder.clear()
        config = _settle_budget(folder, config, resuming, log)
        _write_config(folder, config, space, resuming)
        try:
            yield folder, lock_fd, resuming, config
        except BaseException:
            if not resuming and not folder.tuner_dir.exists():  # nothing ran: leave no run behind
                folder.run_json.unlink(missing_ok=True)
                for made in ("data", "compile_cache"):  # a folder's index and cache, compiled steps
                    shutil.rmtree(folder.path / made, ignore_errors=True)
            raise


def _settle_budget(folder: RunFolder, config: SearchConfig, resuming: bool, log) -> SearchConfig:
    """The budget of a resumed run. A larger `iterations` or `time_budget` than run.json's extends
    the run (its trials and scores are kept; the new work follows them); a smaller one changes
    nothing, said in one line. A command without a time budget keeps the run's."""
    info = (folder.read("run.json") or {}) if resuming else {}
    if not info:
        return config
    before_time, before_iterations = info.get("time_budget"), info.get("iterations")
    if before_time is not None or config.time_budget is not None:
        return _settle_time(folder, config, info, log)
    if before_iterations is None or before_iterations == config.iterations:
        return config
    if config.iterations > before_iterations:
        log(f"extending {folder.path} from {before_iterations} to {config.iterations} iterations: its trials and "
            "scores are kept, and the new iterations run after them")
        return config
    finished = (folder.read("summary.json") or {}).get("hyperband", {}).get("iterations")  # at its last end
    done = finished is not None and finished >= before_iterations
    log(f"{folder.path} has a budget of {before_iterations} iterations; --iterations {config.iterations} does not "
        "shrink it: " + ("nothing more to do" if done else f"resuming with {before_iterations}"))
    return config.replace(iterations=before_iterations)


def _settle_time(folder: RunFolder, config: SearchConfig, info: dict, log) -> SearchConfig:
    """`_settle_budget` for a run or a command with a time budget (see `tuning.engine.budget`)."""
    before = info.get("time_budget")
    if config.time_budget is None:  # the run's budget stays: resumed without --time-budget
        return config.replace(time_budget=before, iterations=info.get("iterations"))
    if before is None or config.time_budget > before:
        what = (f"from a time budget of {fmt_time(before)}" if before is not None
                else f"from {info.get('iterations')} iteration(s)")
        log(f"extending {folder.path} {what} to {fmt_time(config.time_budget)} of wall time in all: its trials and "
            "scores are kept, and the new trials run after them")
        return config
    if config.time_budget < before:
        stopped = (folder.read("summary.json") or {}).get("time_budget", {}).get("stopped")
        log(f"{folder.path} has a time budget of {fmt_time(before)}; --time-budget {fmt_time(config.time_budget)} "
            "does not shrink it: " + ("nothing more to do" if stopped else f"resuming with {fmt_time(before)}"))
    return config.replace(time_budget=before)


def _write_config(folder: RunFolder, config: SearchConfig, space, resuming: bool) -> None:
    """run.json: what the run is (checked on resume), its budget, and the config every child
    process reads; `extended` lists each extension (iterations or time budget before and after,
    when). A time-budgeted run's max_epochs in its config is the plan's (`tuning.engine.budget`)."""
    info = (folder.read("run.json") or {}) if resuming else {}
    record = config_record(config, space)
    plan = info.get("plan")
    if plan is not None and plan.get("asked_max_epochs") == config.max_epochs:
        record["config"]["max_epochs"] = plan["max_epochs"]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for key in ("iterations", "time_budget"):
        before, now = info.get(key), record[key]
        if info and before != now and now is not None and (before is None or now > before):
            record["extended"] = [*record.get("extended", info.get("extended", [])), {key: [before, now], "at": stamp}]
    folder.write("run.json", {**info, **record})


def config_record(config: SearchConfig, space) -> dict:
    """What run.json says of a search (read back by every child process): its identity, the space's
    file and text, and the whole config."""
    return {**config.identity(space.name), "iterations": config.iterations,
            "time_budget": config.time_budget, "space_file": str(space.path),
            "space_text": space.text, "config": config.to_dict()}


def _check_existing_run(folder: RunFolder, config: SearchConfig, space) -> bool:
    """True to resume; UsageError if the folder holds a different run (unless overwriting)."""
    if config.overwrite or not folder.exists():
        return False
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
