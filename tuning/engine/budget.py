"""A search that keeps to a time budget (``--time-budget``): what a trial costs, the calibration
before the first trial, the plan, and the deadline the oracle keeps.

- The cost model (`CostModel`): a trial takes ``overhead + epochs x (per_epoch + per_step x steps +
  per_gflop x GFLOPs)`` seconds, where an epoch's steps are its training and validation batches and
  its GFLOPs the multiply-adds of its images (a training image counts three forward passes: the pass
  itself and the two halves of the backward pass; a validation image one). The four coefficients are
  fitted by non-negative least squares (scipy's `nnls`) to the calibration's points and every
  finished trial's measured seconds, so the model follows the trials as they come in.
- The calibration (`calibrate`): the cheapest and the costliest of `SAMPLES` random valid
  configurations are built and trained for a few short epochs with validation, timed with their
  compilation.
- The plan (`make_plan`): from the model, the mean random configuration and Hyperband's trials,
  the iterations that fit in the time left; if not even one does, the largest max_epochs for
  which one does.
- The deadline (`Deadline`): asked before each trial starts. A trial predicted not to end before
  the deadline (less `END_SECONDS` for the search's end) does not start, and the search ends.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ..config import fmt_time

SAMPLES = 64              # random valid configurations the plan averages over (and calibrates the extremes of)
CALIBRATION_STEPS = 3     # steps of a calibration epoch (then 3 times as many)
END_SECONDS = 5.0         # kept back for the end: the best trial's test scores, summary, report (~3 s on digits)
TRAINING_PASSES = 3       # a training image's multiply-adds, in forward passes
MAX_GAP = 60.0            # a longer pause between two trials is a pause between sessions, not a trial's cost


@dataclasses.dataclass(frozen=True)
class Work:
    """One epoch of one configuration: its steps and its GFLOPs (see the module's docstring)."""

    steps: float
    gflops: float


def epoch_work(flops: int, batch_size: int, sizes: Mapping[str, int]) -> Work:
    """An epoch's work for a configuration of `flops` multiply-adds per image at `batch_size`,
    on a dataset of `sizes` (``train`` and ``validation`` images)."""
    n_train, n_val = sizes["train"], sizes["validation"]
    steps = math.ceil(n_train / batch_size) + math.ceil(n_val / max(batch_size, 256))
    return Work(steps, flops * (TRAINING_PASSES * n_train + n_val) / 1e9)


@dataclasses.dataclass(frozen=True)
class CostModel:
    """Seconds of a trial: ``overhead + epochs x (per_epoch + per_step x steps + per_gflop x gflops)``."""

    overhead: float
    per_step: float
    per_gflop: float
    per_epoch: float = 0.0

    def trial_seconds(self, work: Work, epochs: float) -> float:
        return self.overhead + epochs * self.epoch_seconds(work)

    def epoch_seconds(self, work: Work) -> float:
        return self.per_epoch + self.per_step * work.steps + self.per_gflop * work.gflops

    @classmethod
    def fit(cls, points: Iterable[tuple[Work, float, float]]) -> CostModel:
        """The model fitted to `points` ``(work of an epoch, epochs, seconds)`` by non-negative
        least squares, each point weighted by 1 / its seconds (relative errors count alike)."""
        from scipy.optimize import nnls

        rows, targets = [], []
        for work, epochs, seconds in points:
            weight = 1.0 / max(seconds, 1e-3)
            rows.append([weight, weight * epochs * work.steps, weight * epochs * work.gflops, weight * epochs])
            targets.append(weight * seconds)
        if not rows:
            raise ValueError("no points to fit a cost model to")
        coef, _ = nnls(np.asarray(rows, dtype=float), np.asarray(targets, dtype=float))
        return cls(*map(float, coef))

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 9) for k, v in dataclasses.asdict(self).items()}


def trial_points(records: Iterable, work_of: Callable[[Any], Work | None]) -> list[tuple[Work, float, float]]:
    """The cost model's points of finished trial records: (epoch work, epochs trained, seconds),
    each trial's seconds with the gap before the next trial's start (the search's own time
    between trials, while it is under `MAX_GAP`). `work_of(record)` is None for a record it
    cannot cost."""
    ended = sorted((r for r in records if r.seconds and r.started and r.status in ("COMPLETED", "FAILED")),
                   key=lambda r: r.started)
    points = []
    for i, r in enumerate(ended):
        work = work_of(r)
        if work is None:
            continue
        gap = ended[i + 1].started - (r.started + r.seconds) if i + 1 < len(ended) else 0.0
        epochs = (r.epochs or 1) - (r.resumed_from_epoch if r.resumed_from_epoch is not None else r.initial_epoch)
        points.append((work, max(epochs, 0), r.seconds + (gap if 0 < gap < MAX_GAP else 0.0)))
    return points


# ----- the calibration (needs Keras) ---------------------------------------------------------
def calibrate(hypermodel, values: list[dict]) -> list[tuple[Work, float, float]]:
    """Points for the cost model from timing the cheapest and the costliest of `values` (random
    valid configurations): each is built and trained for `CALIBRATION_STEPS` steps after as many
    that compile; one point says what one epoch costs (a trial of 1 epoch, its build and
    compilation included), a second what 3 epochs cost."""
    sampler, sizes = hypermodel.sampler, hypermodel.data.sizes()
    costed = sorted(values, key=lambda v: _sort_key(sampler, v, sizes))
    points = []
    for chosen in ([costed[0], costed[-1]] if len(costed) > 1 else costed):
        work = work_of_values(sampler, chosen, sizes)
        first, per_epoch, per_step = _time_steps(hypermodel, chosen)
        epoch = per_epoch + per_step * work.steps
        points += [(work, 1, first + epoch), (work, 3, first + 3 * epoch)]
    return points


def _sort_key(sampler, values, sizes) -> float:
    work = work_of_values(sampler, values, sizes)
    return work.gflops + 1e-3 * work.steps


def work_of_values(sampler, values: Mapping[str, Any], sizes: Mapping[str, int]) -> Work:
    """An epoch's work for a configuration's hyperparameter values."""
    _, cfg, cost = sampler.resolve(values)
    return epoch_work(cost.flops, cfg.batch_size, sizes)


def _time_steps(hypermodel, values: dict) -> tuple[float, float, float]:
    """(seconds to build and compile, seconds of an epoch besides its steps, seconds a steady
    step) of one configuration: one epoch of `CALIBRATION_STEPS` steps with validation compiles
    the train and test steps; then an epoch of that many steps and one of three times as many
    tell the cost of a step from the cost of an epoch's start, end and validation."""
    import keras

    hp = hypermodel.hyperparameters(values)
    _, cfg = hypermodel.resolve(hp)
    data = hypermodel.data
    steps = max(1, min(CALIBRATION_STEPS, data.sizes()["train"] // cfg.batch_size // 4))
    val_batch = max(cfg.batch_size, 256)
    val, val_steps = data.pipeline("validation", val_batch), -(-data.sizes()["validation"] // val_batch)
    train, _ = data.training_pipeline("train", cfg.batch_size, seed=0, initial_epoch=0, epochs=4)
    seconds = []
    t0 = time.perf_counter()
    model = hypermodel.build(hp)
    for n in (steps, steps, 3 * steps):
        model.fit(train, epochs=1, steps_per_epoch=n, validation_data=val, validation_steps=min(val_steps, steps),
                  shuffle=False, verbose=0)
        seconds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
    del model
    keras.backend.clear_session()
    per_step = max(0.0, (seconds[2] - seconds[1]) / (2 * steps))
    per_epoch = max(0.0, seconds[1] - per_step * steps)
    return max(0.0, seconds[0] - seconds[1]), per_epoch, per_step


# ----- the plan ----------------------------------------------------------------------------
def iteration_seconds(model: CostModel, mean: Work, planned: list[tuple[int, int, int, int]]) -> float:
    """Predicted seconds of one iteration's `planned` trials (bracket, round, epochs, initial
    epoch), each at the mean configuration's epoch cost."""
    return sum(model.trial_seconds(mean, epochs - start) for _, _, epochs, start in planned)


def make_plan(budget: float, elapsed: float, model: CostModel, mean: Work, max_epochs: int,
              planned: Callable[[int], list], shrink: bool = True) -> dict[str, Any]:
    """How the search fits `budget` seconds of which `elapsed` are gone: Hyperband's iterations at
    `max_epochs` that fit (``planned(m)``: one iteration's trials at max_epochs m); if not even one
    does and `shrink`, the largest smaller max_epochs for which one does.

    Returns:
        ``{"max_epochs", "iterations", "iteration_seconds", "predicted_seconds"}``: predicted_seconds
        is the run's wall time at the end of the planned iterations and the search's end.
        ``iterations`` is 0 when not even one trial of 1 epoch fits.
    """
    left = budget - elapsed - END_SECONDS
    m = max_epochs
    per_iteration = iteration_seconds(model, mean, planned(m))
    if per_iteration > left and shrink:
        while m > 1 and iteration_seconds(model, mean, planned(m)) > left:
            m -= 1
        per_iteration = iteration_seconds(model, mean, planned(m))
    iterations = int(left // per_iteration) if per_iteration > 0 and left > 0 else 0
    return {"max_epochs": m, "iterations": iterations, "iteration_seconds": round(per_iteration, 1),
            "predicted_seconds": round(elapsed + iterations * per_iteration + END_SECONDS, 1)}


# ----- the deadline --------------------------------------------------------------------------
@dataclasses.dataclass
class Deadline:
    """The oracle's check before a trial starts.

    Attributes:
        budget: the run's wall seconds it may take, its end included.
        elapsed: the run's wall seconds so far (every session's).
        predict: a trial's predicted seconds from its hyperparameter values (the model refitted
            to the trials so far).
        epoch_seconds: the mean random configuration's epoch, by that model.
    """

    budget: float
    elapsed: Callable[[], float]
    predict: Callable[[Mapping[str, Any]], float]
    epoch_seconds: Callable[[], float]  # the mean configuration's epoch, by the model as refitted now

    def epochs_left(self) -> float:
        """Epochs of the mean configuration that still fit before the deadline."""
        return max(0.0, self.budget - END_SECONDS - self.elapsed()) / max(self.epoch_seconds(), 1e-6)

    def refuse(self, values: Mapping[str, Any]) -> str | None:
        """None if a trial of `values` is predicted to end before the deadline, else why it does not start."""
        now, seconds = self.elapsed(), self.predict(values)
        if now + seconds + END_SECONDS <= self.budget:
            return None
        return (f"the time budget: at {fmt_time(now)} of {fmt_time(self.budget)}, the next trial "
                f"({int(values.get('tuner/epochs', 0)) - int(values.get('tuner/initial_epoch', 0))} epochs) was "
                f"predicted to take {fmt_time(seconds)}, past the deadline")


def random_configurations(sampler, n: int = SAMPLES, seed: int = 12345) -> list[dict]:
    """`n` random valid configurations of a space (keras-tuner's draws, drawn again until valid),
    from a stream of their own: the search's sequence of trials is not touched."""
    import keras_tuner as kt

    from .oracle import ResNetOracle

    oracle = ResNetOracle(objective=kt.Objective("val_accuracy", "max"), max_epochs=1, factor=2, seed=seed,
                          check=sampler.check)
    hp = oracle.get_space()
    sampler.declare(hp)
    oracle.update_space(hp)
    drawn = (oracle._random_values() for _ in range(n))
    return [values for values in drawn if values is not None]


def hyperband_trials(max_epochs: int, factor: int) -> list[tuple[int, int, int, int]]:
    """One Hyperband iteration's trials at `max_epochs` and `factor` (ASHA trains as many epochs)."""
    import keras_tuner as kt

    from .oracle import ResNetOracle

    oracle = ResNetOracle(objective=kt.Objective("val_accuracy", "max"), max_epochs=max_epochs, factor=factor,
                          hyperband_iterations=1)
    return oracle.planned_trials()
