"""A finished run's data, hypermodel and trained models, rebuilt from its folder (for export).

Importing this module does not import Keras; each function imports what it needs.
"""

from __future__ import annotations

from search_spaces import Sampler, parse_space

from ..data.datasets import load_data
from ..errors import UsageError
from ..run.opened import Run
from ..runtime import configured, import_keras, installed


def load_run_data(run: Run, verbose: bool = False):
    """The run's dataset, split exactly as during the search (same name, seed, image size)."""
    # The run's own backend (same numbers as in the search); else this machine's (.keras files and
    # checkpoints are the same on every backend).
    import_keras(run.backend if installed(run.backend) else configured(), verbose)
    size = run.info.get("image_size")
    cache = bool((run.info.get("config") or {}).get("image_cache", True))
    return load_data(run.info["dataset"], seed=int(run.info.get("seed", 0)), image_size=tuple(size) if size else None,
                     skip_bad_images=True, run_dir=run.run_dir, image_cache=cache)


def hypermodel_for(run: Run, data):
    """The run's hypermodel, rebuilt from the space text stored in run.json."""
    from ..engine.hypermodel import ResNetHyperModel  # imports Keras

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
    if rec.status != "COMPLETED":
        raise UsageError(f"trial {trial_id} did not complete ({rec.status}); choose a completed trial "
                         "from leaderboard.md")
    ckpt = run.checkpoint(trial_id)
    if not ckpt.exists():
        raise UsageError(f"the checkpoint of trial {trial_id} is gone ({ckpt}); it was not among the best, so the "
                         "search deleted it. Export the best trial, or use --retrain to train this one again")
    model = hypermodel.build(hypermodel.hyperparameters(run.values(trial_id)))
    from ..engine.checkpoints import load_variables

    load_variables(model, ckpt)
    return model
