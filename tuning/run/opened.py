"""A finished (or interrupted) run opened for reading: export, the report and the benchmarks
(no Keras needed)."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

from ..config import DEFAULT_OBJECTIVE
from ..errors import UsageError
from .files import read_json
from .folder import RunFolder
from .records import TrialRecord, best_record


@dataclasses.dataclass
class Run:
    """A run folder's metadata and trial records (no Keras needed)."""

    folder: RunFolder
    info: dict[str, Any]                     # run.json
    records: dict[str, TrialRecord]          # trials/<id>.json
    best: dict[str, Any] | None              # best.json, if the search got that far
    summary: dict[str, Any] | None           # summary.json

    @property
    def run_dir(self) -> pathlib.Path:
        return self.folder.path

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def backend(self) -> str:
        """The Keras backend the run was searched on (runs from before the choice: TensorFlow)."""
        return self.info.get("backend") or (self.info.get("config") or {}).get("backend") or "tensorflow"

    @property
    def objective(self) -> str:
        """What the run selected on (runs from before the choice: val_accuracy)."""
        return self.info.get("objective") or DEFAULT_OBJECTIVE

    @property
    def class_weight(self) -> str | None:
        """How the run weighted the training loss's classes (None: every image the same)."""
        return self.info.get("class_weight")

    def completed(self) -> list[TrialRecord]:
        return [r for r in self.records.values() if r.completed]

    def best_trial_id(self) -> str:
        if self.best and self.best.get("trial_id") in self.records:
            return self.best["trial_id"]
        return best_record(self.completed()).trial_id

    def values(self, trial_id: str) -> dict[str, Any]:
        """The trial's hyperparameter values under keras-tuner's names."""
        values = self.records[trial_id].values
        if values is None:  # fall back on keras-tuner's own record of the trial
            state = read_json(self.folder.trial_dir(trial_id) / "trial.json", strict=True) or {}
            values = state.get("hyperparameters", {}).get("values", {})
        return {k: v for k, v in values.items() if not k.startswith("tuner/")}

    def checkpoint(self, trial_id: str) -> pathlib.Path:
        return self.folder.checkpoint(trial_id)


def open_run(run_dir: str | os.PathLike, *, need_completed: bool = True) -> Run:
    """Read a run folder. `UsageError` if it is missing, not a run, or (optionally) has no
    completed trial."""
    folder = RunFolder(run_dir)
    run_dir = folder.path
    if not run_dir.exists():
        raise UsageError(f"results folder {run_dir} does not exist; run `python -m tuning.search` first, or give "
                         "the folder it printed (results/<name>)")
    if not run_dir.is_dir() or not folder.run_json.exists():
        raise UsageError(f"{run_dir} is not a search results folder (no run.json); give results/<name> as "
                         "written by `python -m tuning.search`")
    info = folder.read("run.json", strict=True) or {}
    run = Run(folder, info, folder.records(), folder.read("best.json", strict=True),
              folder.read("summary.json", strict=True))
    if need_completed and not run.completed():
        raise UsageError(f"{run_dir} has no completed trial yet; let the search finish a trial first "
                         f"(python -m tuning.search resumes it)")
    return run


def finished_runs(results_dir: str | os.PathLike, log=None) -> list[Run]:
    """The finished runs (folders with summary.json) directly under `results_dir`, by name; unreadable ones are
    left out (with a note to `log`)."""
    root = pathlib.Path(results_dir)
    if not root.is_dir():
        return []
    runs = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and (p / "summary.json").is_file()):
        try:
            runs.append(open_run(d))
        except UsageError as e:
            if log:
                log(f"note: left out {d.name}: {e}")
    return runs
