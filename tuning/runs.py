"""Open a run folder written by a search, for export and the report."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

from . import results as res
from .errors import UsageError
from .ranking import best_record


@dataclasses.dataclass
class Run:
    """A run folder's metadata and trial records (no TensorFlow needed)."""

    run_dir: pathlib.Path
    info: dict[str, Any]                     # run.json
    records: dict[str, dict[str, Any]]       # trials/<id>.json
    best: dict[str, Any] | None              # best.json, if the search got that far
    summary: dict[str, Any] | None           # summary.json

    @property
    def name(self) -> str:
        return self.run_dir.name

    def completed(self) -> list[dict[str, Any]]:
        return [r for r in self.records.values() if r.get("status") == "COMPLETED" and r.get("val_accuracy")
                is not None]

    def best_trial_id(self) -> str:
        if self.best and self.best.get("trial_id") in self.records:
            return self.best["trial_id"]
        return best_record(self.completed())["trial_id"]

    def values(self, trial_id: str) -> dict[str, Any]:
        """The trial's hyperparameter values under keras-tuner's names."""
        values = self.records[trial_id].get("values")
        if values is None:  # fall back on keras-tuner's own record of the trial
            state = _read_json(self.run_dir / "tuner" / f"trial_{trial_id}" / "trial.json") or {}
            values = state.get("hyperparameters", {}).get("values", {})
        return {k: v for k, v in values.items() if not k.startswith("tuner/")}

    def checkpoint(self, trial_id: str) -> pathlib.Path:
        from .engine.checkpoints import CHECKPOINT_NAME

        return self.run_dir / "tuner" / f"trial_{trial_id}" / CHECKPOINT_NAME


def _read_json(path: pathlib.Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"{path} is unreadable ({e}); rerun the search to rewrite it") from None


def open_run(run_dir: str | pathlib.Path, *, need_completed: bool = True) -> Run:
    """Read a run folder. `UsageError` if it is missing, not a run, or (optionally) has no
    completed trial."""
    run_dir = pathlib.Path(run_dir)
    if not run_dir.exists():
        raise UsageError(f"results folder {run_dir} does not exist; run `python -m tuning.search` first, or give "
                         "the folder it printed (results/<name>)")
    if not run_dir.is_dir() or not (run_dir / "run.json").exists():
        raise UsageError(f"{run_dir} is not a search results folder (no run.json); give results/<name> as "
                         "written by `python -m tuning.search`")
    info = _read_json(run_dir / "run.json") or {}
    run = Run(run_dir, info, res.load_records(run_dir), _read_json(run_dir / "best.json"),
              _read_json(run_dir / "summary.json"))
    if need_completed and not run.completed():
        raise UsageError(f"{run_dir} has no completed trial yet; let the search finish a trial first "
                         f"(python -m tuning.search resumes it)")
    return run


def load_run_data(run: Run, verbose: bool = False):
    """The run's dataset, split exactly as during the search (same name, seed, image size)."""
    from .data import load_data
    from .runtime import import_tensorflow

    import_tensorflow(verbose)
    size = run.info.get("image_size")
    return load_data(run.info["dataset"], seed=int(run.info.get("seed", 0)), image_size=tuple(size) if size else None,
                     skip_bad_images=True)


def hypermodel_for(run: Run, data):
    """The run's hypermodel, rebuilt from the space text stored in run.json."""
    from search_spaces import Sampler, parse_space

    from .engine.hypermodel import ResNetHyperModel

    space = parse_space(run.info["space_text"], run.info.get("space_file", "space.toml"), run.info["space"])
    sampler = Sampler(space, data.net_input_shape, data.num_classes)
    return ResNetHyperModel(space, data, max_epochs=int(run.info["max_epochs"]), sampler=sampler,
                            seed=int(run.info.get("seed", 0)))


def load_trial_model(run: Run, trial_id: str, hypermodel):
    """Build a trial's configuration and load its best-epoch checkpoint."""
    if trial_id not in run.records:
        known = ", ".join(sorted(run.records)) or "none"
        raise UsageError(f"unknown trial id {trial_id!r} in {run.run_dir}; trials: {known}")
    rec = run.records[trial_id]
    if rec.get("status") != "COMPLETED":
        raise UsageError(f"trial {trial_id} did not complete ({rec.get('status')}); choose a completed trial "
                         "from leaderboard.md")
    ckpt = run.checkpoint(trial_id)
    if not ckpt.exists():
        raise UsageError(f"the checkpoint of trial {trial_id} is gone ({ckpt}); it was not among the best, so the "
                         "search deleted it. Export the best trial, or use --retrain to train this one again")
    model = hypermodel.build(hypermodel.hyperparameters(run.values(trial_id)))
    from .engine.checkpoints import load_variables

    load_variables(model, ckpt)
    return model
