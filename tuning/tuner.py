"""keras-tuner's Hyperband, adapted: no invalid trials, one TensorBoard run per configuration,
a leaderboard row and a progress line per finished trial."""

from __future__ import annotations

import math
import pathlib
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import keras
import keras_tuner as kt
from keras_tuner.src.tuners.hyperband import HyperbandOracle

from .hypermodel import ResNetHyperModel
from .tensorboard_log import TrialLogger, tensorboard_callback, write_experiment_config

MAX_DRAWS = 1000


class ResNetOracle(HyperbandOracle):
    """Hyperband whose random draws are only ever valid configurations.

    `check(values)` returns None for a point that can be built within the cost limits, else the
    reason; rejected draws are drawn again from the same seeded stream, so they never become
    trials (and never count towards keras-tuner's consecutive-failure limit).
    """

    def __init__(self, *args, check: Callable[[Mapping[str, Any]], str | None] | None = None, **kwargs):
        self.check = check
        self.rejected = 0
        super().__init__(*args, **kwargs)

    def _random_values(self):
        for _ in range(MAX_DRAWS):
            values = super()._random_values()
            if values is None or self.check is None or self.check(values) is None:
                return values
            self.rejected += 1
        return None

    # ----- the schedule, for progress and ETA --------------------------------------------
    def planned_trials(self) -> list[tuple[int, int, int, int]]:
        """(bracket, round, epochs, initial_epoch) of every trial a complete search runs."""
        out = []
        iterations = self.hyperband_iterations if math.isfinite(self.hyperband_iterations) else 1
        for _ in range(int(iterations)):
            for b in reversed(range(self._get_num_brackets())):
                for r in range(self._get_num_rounds(b)):
                    epochs = self._get_epochs(b, r)
                    start = self._get_epochs(b, r - 1) if r else 0
                    out += [(b, r, epochs, start)] * self._get_size(b, r)
        return out


class ResNetTuner(kt.Hyperband):
    """Hyperband over a `ResNetHyperModel`.

    Args:
        hypermodel: the hypermodel (its sampler checks validity).
        results_dir: ``results/<name>``; keras-tuner's own state goes to its ``tuner/`` subfolder.
        max_epochs, factor, iterations: the Hyperband budget.
        seed: seeds the oracle (the sequence of trials) and each trial's initial weights.
        on_trial_done: called with (tuner, trial, record) after each trial, for results/progress.
        overwrite: start afresh instead of resuming.
    """

    def __init__(self, hypermodel: ResNetHyperModel, results_dir: pathlib.Path, *, max_epochs: int, factor: int,
                 iterations: int, seed: int, on_trial_done: Callable | None = None, overwrite: bool = False,
                 **kwargs):
        oracle = ResNetOracle(
            objective=kt.Objective("val_accuracy", "max"), max_epochs=max_epochs, factor=factor,
            # keras-tuner treats seed 0 as "no seed" (`seed or random.randint(...)`), hence the + 1.
            hyperband_iterations=iterations, seed=seed + 1, check=hypermodel.sampler.check,
        )
        self.results_dir = pathlib.Path(results_dir)
        self.logdir = self.results_dir / "tensorboard"
        self.seed = seed
        self.on_trial_done = on_trial_done
        self.records: dict[str, dict[str, Any]] = {}
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, directory=str(self.results_dir),
                          project_name="tuner", overwrite=overwrite, **kwargs)

    # keras-tuner builds the model several times to discover conditional hyperparameters;
    # the space is data, so declaring it is enough.
    def _populate_initial_space(self):
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self.oracle.update_space(hp)

    # Our own TensorBoard layout replaces keras-tuner's one-folder-per-trial patching.
    def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
        return

    def on_search_begin(self):
        super().on_search_begin()
        if not any(self.logdir.glob("events.out.tfevents.*")):
            write_experiment_config(self.logdir, self.oracle.get_space().space, self.hypermodel.sampler.aliases)

    def run_name(self, trial_id: str) -> str:
        """A configuration's TensorBoard run: named after the trial that first sampled it."""
        root = trial_id
        while True:
            parent = self.oracle.trials[root].hyperparameters.values.get("tuner/trial_id")
            if parent is None or parent not in self.oracle.trials:
                return f"trial_{root}"
            root = parent

    def run_trial(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        values = hp.values
        sampler = self.hypermodel.sampler
        spec, cfg, cost = sampler.resolve(values)
        run = self.run_name(trial.trial_id)
        parent = values.get("tuner/trial_id")
        bracket, round_num = int(values.get("tuner/bracket", 0)), int(values.get("tuner/round", 0))
        record = {
            "trial_id": trial.trial_id, "run": run, "parent": parent, "bracket": bracket, "round": round_num,
            "initial_epoch": int(values.get("tuner/initial_epoch", 0)), "epochs": int(values.get("tuner/epochs", 1)),
            "params": cost.params, "flops": cost.flops, "spec": spec.to_dict(),
            "values": {k: v for k, v in values.items() if not k.startswith("tuner/")},  # keras-tuner's names
            "hyperparameters": sampler.describe(values), "started": time.time(),
        }
        self.records[trial.trial_id] = record
        # Same configuration, same initial weights, whatever order the trials run in.
        keras.utils.set_random_seed((self.seed * 1_000_003 + zlib.crc32(run.encode())) % 2**31)
        hparams = {**record["hyperparameters"], "bracket": bracket}
        callbacks = list(kwargs.pop("callbacks", []))
        callbacks += [tensorboard_callback(self.logdir / run),
                      TrialLogger(self.logdir / run, run, hparams, cost.params, cost.flops, bracket, round_num,
                                  first_round=parent is None,
                                  best_so_far=self.oracle.trials[parent].score if parent in self.oracle.trials
                                  else None)]
        return super().run_trial(trial, *args, callbacks=callbacks, **kwargs)

    def _try_build(self, hp):
        t0 = time.perf_counter()
        model = super()._try_build(hp)  # Hyperband's build also loads a parent's checkpoint
        self._build_seconds = time.perf_counter() - t0
        return model

    def _build_and_fit_model(self, trial, *args, **kwargs):
        record = self.records[trial.trial_id]
        self._build_seconds = 0.0
        t0 = time.perf_counter()
        results = super()._build_and_fit_model(trial, *args, **kwargs)
        record["build_seconds"] = round(self._build_seconds, 3)
        record["fit_seconds"] = round(time.perf_counter() - t0 - self._build_seconds, 3)
        history = getattr(results, "history", {})
        record["history"] = {k: [float(x) for x in v] for k, v in history.items()}
        return results

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        record = self.records.setdefault(trial.trial_id, {"trial_id": trial.trial_id})
        record["seconds"] = round(time.time() - record.get("started", time.time()), 3)
        record["status"] = trial.status
        record["val_accuracy"] = trial.score
        record["best_step"] = trial.best_step
        if trial.message:
            record["error"] = trial.message.strip().splitlines()[-1][:300]
        if self.on_trial_done:
            self.on_trial_done(self, trial, record)
