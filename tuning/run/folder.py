"""The run folder: everything a search writes under ``results/<name>/``.

- ``run.json``: what the run is (space, dataset, seed, budget); a resumed run must match it.
- ``state.json``: the sessions of the run (wall time of each), so a resumed run adds them up.
- ``trials/<id>.json``: one `TrialRecord` per finished trial (our own, next to keras-tuner's state).
- ``leaderboard.csv`` / ``leaderboard.md``: one row per trial, best first.
- ``best.json``: the best trial, its spec and its test accuracy (evaluated once).
- ``summary.json``: trials, wall and fit seconds, best accuracies, dataset, seed, versions.
- ``error.log``: the tracebacks of unexpected failures, kept across sessions.
- ``tuner/``: keras-tuner's own state (oracle, trials, checkpoints), so the run can resume.
- ``tensorboard/``: one run per configuration plus the HParams experiment.
- ``report/``: the report's plots and text.
- ``data/``: what stays fixed for the run's data (a folder's index and image cache, the normalisation).
- ``.lock``: one search per folder (`tuning.run.lock`).

Every file is written to a temporary name and renamed, so none is ever half-written. Nothing
here imports TensorFlow, Keras or keras-tuner.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .files import read_json, write_json
from .leaderboard import write_leaderboard
from .lock import LOCK_NAME, check_lock, hold_lock
from .records import TrialRecord

CHECKPOINT_NAME = "checkpoint.npz"  # a trial's best-epoch checkpoint, in its folder under tuner/
ENDING = ".ending"  # trials/<id>.ending: a trial's record kept while the oracle saves its end (`save_ending`)


class RunFolder:
    """``results/<name>``: the files of one search and their readers and writers."""

    def __init__(self, path: str | os.PathLike):
        self.path = p = pathlib.Path(path)
        self.run_json, self.state_json, self.best_json = p / "run.json", p / "state.json", p / "best.json"
        self.summary_json, self.error_log, self.lock_path = p / "summary.json", p / "error.log", p / LOCK_NAME
        self.trials_dir, self.tuner_dir, self.tensorboard_dir = p / "trials", p / "tuner", p / "tensorboard"
        self.report_dir = p / "report"

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, RunFolder) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        return self.path.exists()

    def trial_dir(self, trial_id: str) -> pathlib.Path:
        """keras-tuner's folder of a trial (its state and checkpoints)."""
        return self.tuner_dir / f"trial_{trial_id}"

    def checkpoint(self, trial_id: str) -> pathlib.Path:
        """The trial's best-epoch checkpoint."""
        return self.trial_dir(trial_id) / CHECKPOINT_NAME

    # ----- JSON files ---------------------------------------------------------------------------
    def read(self, name: str, *, strict: bool = False) -> dict[str, Any] | None:
        """A JSON file of the folder (``"run.json"``); None when it is missing. When it is
        unreadable: None, or with `strict` a UsageError naming it and the fix."""
        return read_json(self.path / name, strict)

    def write(self, name: str, data: Mapping[str, Any]) -> None:
        """Write a JSON file of the folder atomically."""
        write_json(self.path / name, dict(data))

    def records(self) -> dict[str, TrialRecord]:
        """Every trial record, by trial id (files that cannot be read are skipped)."""
        out = {}
        for path in sorted(self.trials_dir.glob("*.json")):
            data = read_json(path)  # a record is only ever replaced atomically: skip anything unreadable
            if not isinstance(data, dict) or "trial_id" not in data:
                continue
            out[data["trial_id"]] = TrialRecord.from_dict(data)
        return out

    def save_record(self, record: TrialRecord) -> None:
        """Write the trial's record; it supersedes the copy saved as it ended (`save_ending`)."""
        write_json(self.trials_dir / f"{record.trial_id}.json", record.to_dict())
        (self.trials_dir / f"{record.trial_id}{ENDING}").unlink(missing_ok=True)

    def save_ending(self, record: TrialRecord) -> None:
        """Keep a trial's record as it stands just before the oracle saves the trial as ended, so
        that a kill between that save and `save_record` loses nothing (`ending_records`). It is
        not a record (`records` does not read it) until then."""
        write_json(self.trials_dir / f"{record.trial_id}{ENDING}", record.to_dict())

    def ending_records(self) -> dict[str, TrialRecord]:
        """The records saved by `save_ending` and not yet superseded, by trial id."""
        out = {}
        for path in sorted(self.trials_dir.glob(f"*{ENDING}")):
            data = read_json(path)
            if isinstance(data, dict) and "trial_id" in data:
                out[data["trial_id"]] = TrialRecord.from_dict(data)
            else:  # unreadable (written atomically, so damaged afterwards): no evidence of anything
                path.unlink(missing_ok=True)
        return out

    def drop_ending(self, trial_id: str) -> None:
        (self.trials_dir / f"{trial_id}{ENDING}").unlink(missing_ok=True)

    def write_leaderboard(self, records: Iterable[TrialRecord]) -> None:
        """``leaderboard.csv`` and ``leaderboard.md``: one row per trial, best first."""
        write_leaderboard(self.path, records)

    def append_error_log(self, text: str) -> pathlib.Path:
        """Add `text` to ``error.log`` (kept across sessions: nothing on disk is lost); returns
        where it went (a temporary file when the folder is not writable)."""
        path = self.error_log
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(f"----- {time.strftime('%Y-%m-%d %H:%M:%S')} (pid {os.getpid()})\n{text.rstrip()}\n")
        except OSError:  # an unwritable folder: keep the traceback somewhere the user can read it
            fd, tmp = tempfile.mkstemp(prefix="tuning-error-", suffix=".log")
            with os.fdopen(fd, "w") as f:
                f.write(text)
            path = pathlib.Path(tmp)
        return path

    def clear(self) -> None:
        """--overwrite: delete the old run's files (the lock, which the caller holds, stays)."""
        for child in self.path.iterdir():
            if child.name == LOCK_NAME:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    # ----- the lock (`tuning.run.lock`) -----------------------------------------------------------
    def check_lock(self) -> None:
        """Refuse at once (UsageError) if another search holds the folder's lock; take nothing."""
        check_lock(self.path)

    def lock(self):
        """A context holding the folder's lock (`tuning.run.lock.hold_lock`); it yields the locked
        file descriptor, for child processes to inherit."""
        return hold_lock(self.path)
