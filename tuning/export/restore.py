"""A finished run's data, hypermodel and trained models, rebuilt from its folder (for export).

Importing this module does not import Keras; each function imports what it needs.
"""

from __future__ import annotations

import pathlib

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
                            seed=int(run.info.get("seed", 0)), class_weight=run.class_weight)


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


def recreate_trial_model(run: Run, trial_id: str, hypermodel, log) -> tuple[object, dict]:
    """A trial whose checkpoint was pruned, made again: its configuration trained from scratch on
    the training split for its epochs, seeded as the search seeded it, and the weights of its best
    epoch by the run's objective. Returns (model, what was done, for the card)."""
    import tempfile
    import time

    import keras
    import keras_tuner as kt

    from ..config import OBJECTIVES
    from ..engine.callbacks import TimedSaveBestEpoch
    from ..engine.checkpoints import load_variables
    from ..engine.tuner import configuration_seed

    rec = run.records[trial_id]
    epochs = int(rec.epochs or 1)
    log(f"the checkpoint of trial {trial_id} was pruned by the search; training its configuration again from its "
        f"recorded hyperparameters, from scratch for {epochs} epochs")
    t0 = time.perf_counter()
    keras.utils.set_random_seed(configuration_seed(int(run.info.get("seed", 0)), rec.run or f"trial_{trial_id}"))
    hp = hypermodel.hyperparameters(run.values(trial_id))
    model = hypermodel.build(hp)
    objective = kt.Objective(run.objective, OBJECTIVES[run.objective])
    with tempfile.TemporaryDirectory() as scratch:
        best = TimedSaveBestEpoch(objective, str(pathlib.Path(scratch) / "best.npz"), None)
        hypermodel.fit(hp, model, epochs=epochs, initial_epoch=0, callbacks=[best])
        load_variables(model, pathlib.Path(scratch) / "best.npz")
    return model, {"reason": "checkpoint pruned", "epochs": epochs, "data": "train",
                   "images": int(len(hypermodel.data.y_train)),
                   f"{run.objective}": None if best.best_value is None else float(best.best_value),
                   "seconds": round(time.perf_counter() - t0, 1),
                   "note": "trained again from scratch (its checkpoint was pruned), so the validation scores are "
                           "the search's of this configuration, not of these weights"}
