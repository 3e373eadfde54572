"""Replay the search algorithms against a surrogate of real learning curves, in simulated time.

A real search on 2 CPU cores is too slow to compare algorithms over many seeds. This module
drives the search's own oracles (`tuning.engine.algorithms.make_oracle`: the same code a search
runs, invalid draws redrawn by the same check) with simulated workers and a simulated clock:

- `Surrogate`: scikit-learn random forests fitted on learning curves recorded from real training
  (``docs/figures/curves-small-digits.jsonl``, made by ``scripts/record_curves.py``): validation
  accuracy from the encoded hyperparameters and the epoch; seconds per epoch and the first
  epoch's extra seconds (tracing and compiling the step, paid again by every trial) from the
  encoded hyperparameters.
- `simulate`: one search. Each simulated worker asks the oracle for a trial whenever it is free
  (an "idle" answer makes it wait for the next trial to end); a trial takes the surrogate's
  seconds for its epochs plus `TRIAL_OVERHEAD`, and reports the surrogate's accuracy after each
  of its epochs (a promoted trial continues its parent's curve). Returns the anytime curve
  ``[(seconds, best so far)]`` and the workers' busy share.
- `perfect_model_bohb` (``PERFECT``, benchmark only): BOHB whose model is the surrogate itself, a
  bound on what any model could gain within BOHB's brackets.
"""

from __future__ import annotations

import heapq
import json
import math
import pathlib
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..config import OBJECTIVES
from ..run.records import better

# Seconds a trial costs besides its epochs: building the model, checkpoints and bookkeeping
# (docs/BENCHMARKS.md, "Where the rest of the time goes": 8.6 s over 30 trials of the small space).
TRIAL_OVERHEAD = 0.3
CURVE_METRICS = ("val_accuracy", "val_loss")  # what scripts/record_curves.py records for every epoch


def read_curves(path: str | pathlib.Path) -> list[dict[str, Any]]:
    """The recorded curves: one dict per configuration (see ``scripts/record_curves.py``)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Encoder:
    """Hyperparameter values -> a fixed-length vector: one column per numeric hyperparameter
    (log-scaled where it is sampled on a log scale; -1 when inactive), one-hot columns per
    categorical one (all zero when inactive)."""

    def __init__(self, space: Sequence):
        import keras_tuner as kt

        self.columns: list[tuple[str, Any]] = []
        for hp in space:
            if isinstance(hp, kt.engine.hyperparameters.Fixed):
                continue
            if isinstance(hp, (kt.engine.hyperparameters.Choice, kt.engine.hyperparameters.Boolean)):
                values = [True, False] if isinstance(hp, kt.engine.hyperparameters.Boolean) else hp.values
                if len(values) > 1:
                    self.columns += [(hp.name, ("=", v)) for v in values]
            elif hp.min_value != hp.max_value:
                log = getattr(hp, "sampling", None) == "log"
                lo, hi = (math.log(hp.min_value), math.log(hp.max_value)) if log else (hp.min_value, hp.max_value)
                self.columns.append((hp.name, ("num", log, lo, hi)))

    def __call__(self, values: Mapping[str, Any]) -> np.ndarray:
        row = np.zeros(len(self.columns), np.float32)
        for i, (name, kind) in enumerate(self.columns):
            v = values.get(name)
            if kind[0] == "=":
                row[i] = float(v is not None and v == kind[1] and type(v) is type(kind[1]))
            elif v is None:
                row[i] = -1.0
            else:
                _, log, lo, hi = kind
                x = math.log(v) if log else float(v)
                row[i] = (x - lo) / (hi - lo) if hi > lo else 0.0
        return row


class Surrogate:
    """A validation metric per epoch (`metric`: ``val_accuracy`` or ``val_loss``, what the curves
    hold) and seconds per trial of any configuration of a space, predicted by random forests fitted
    on recorded curves."""

    def __init__(self, curves: Sequence[Mapping[str, Any]], space: Sequence, seed: int = 0,
                 metric: str = "val_accuracy"):
        from sklearn.ensemble import RandomForestRegressor

        self.metric, self.maximize = metric, OBJECTIVES[metric] == "max"
        self.encode = Encoder(space)
        self.max_epochs = max(len(c["curve"]) for c in curves)
        rows, accs, cost_rows, per_epoch, first_extra = [], [], [], [], []
        for c in curves:
            x = self.encode(c["values"])
            for point in c["curve"]:
                rows.append(np.append(x, point["epoch"]))
                accs.append(point[metric])
            seconds = [p["seconds"] for p in c["curve"]]
            later = float(np.median(seconds[1:])) if len(seconds) > 1 else seconds[0]
            cost_rows.append(x)
            per_epoch.append(later)
            first_extra.append(max(0.0, seconds[0] - later))
        forest = dict(n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1)
        self.accuracy = RandomForestRegressor(**forest).fit(np.array(rows), np.array(accs))
        self.seconds = RandomForestRegressor(**forest).fit(np.array(cost_rows),
                                                           np.column_stack([per_epoch, first_extra]))
        self._cache: dict[str, tuple[np.ndarray, float, float]] = {}

    def predict(self, values: Mapping[str, Any]) -> tuple[np.ndarray, float, float]:
        """(the metric after epochs 1..max_epochs, seconds per epoch, first epoch's extra seconds) of
        a configuration."""
        key = json.dumps({k: v for k, v in values.items() if not k.startswith("tuner/")}, sort_keys=True,
                         default=str)
        if key not in self._cache:
            x = self.encode(values)
            grid = np.column_stack([np.repeat(x[None], self.max_epochs, 0), np.arange(1, self.max_epochs + 1)])
            per_epoch, extra = self.seconds.predict(x[None])[0]
            self._cache[key] = (self.accuracy.predict(grid), float(per_epoch), float(extra))
        return self._cache[key]


def best_of(surrogate: Surrogate, curve: np.ndarray) -> float:
    """The best value of a predicted curve under the surrogate's metric (highest, or lowest loss)."""
    return float(curve.max() if surrogate.maximize else curve.min())


def surrogate_error(curves: Sequence[Mapping[str, Any]], space: Sequence, folds: int = 5,
                    metric: str = "val_accuracy") -> dict[str, float]:
    """How well the surrogate of `metric` predicts configurations it was not fitted on: `folds`-fold
    cross validation over configurations. Returns the mean absolute error of the metric (every
    epoch, and the best over all epochs: ``best_accuracy_mae`` and ``accuracy_mae_per_epoch``,
    named for the default metric), the Spearman correlation of predicted and real best, and the
    mean absolute error of seconds per epoch."""
    from scipy.stats import spearmanr

    order = np.random.default_rng(0).permutation(len(curves))
    errors, per_epoch_errors, seconds_errors, real, predicted = [], [], [], [], []
    for k in range(folds):
        held = set(order[k::folds].tolist())
        model = Surrogate([c for i, c in enumerate(curves) if i not in held], space, metric=metric)
        for i in sorted(held):
            c = curves[i]
            curve, per_epoch, _ = model.predict(c["values"])
            truth = np.array([p[metric] for p in c["curve"]])
            errors.append(abs(best_of(model, curve[:len(truth)]) - best_of(model, truth)))
            per_epoch_errors.append(float(np.mean(np.abs(curve[:len(truth)] - truth))))
            seconds = [p["seconds"] for p in c["curve"]]
            seconds_errors.append(abs(per_epoch - float(np.median(seconds[1:]))))
            real.append(best_of(model, truth))
            predicted.append(best_of(model, curve[:len(truth)]))
    return {"best_accuracy_mae": float(np.mean(errors)), "accuracy_mae_per_epoch": float(np.mean(per_epoch_errors)),
            "best_accuracy_spearman": float(spearmanr(real, predicted).statistic),
            "seconds_per_epoch_mae": float(np.mean(seconds_errors)), "configurations": len(curves), "folds": folds,
            "metric": metric}


PERFECT = "bohb-perfect"  # not a search algorithm: BOHB with the surrogate as its model (`perfect_model_bohb`)
CANDIDATES = 64           # configurations the perfect model chooses from (the BOHB paper's num_samples)


def perfect_model_bohb(surrogate: Surrogate, candidates: int = CANDIDATES, **kwargs):
    """A bound, for the benchmark only: BOHB whose model knows the surrogate. Where BOHB would
    draw from its TPE model, this draws `candidates` random valid configurations and takes the
    one the surrogate predicts best (what no model fitted on a few results can beat, given that
    many candidates). Brackets, budgets, the random fraction and the model's start (`min_points`
    results on one budget) are BOHB's."""
    from ..engine.algorithms import BOHBOracle
    from ..engine.oracle import ResNetOracle

    class PerfectModelBOHB(BOHBOracle):
        def _model_values(self, observations, seed):
            kept = self._seed_state, self.rejected  # candidates leave the random draws as they were
            self._seed_state = seed
            drawn = [ResNetOracle._random_values(self) for _ in range(candidates)]
            self._seed_state, self.rejected = kept
            drawn = [c for c in drawn if c is not None and not self._duplicate(c)]
            sign = 1.0 if surrogate.maximize else -1.0
            return max(drawn, key=lambda c: sign * best_of(surrogate, surrogate.predict(c)[0]), default=None)

    return PerfectModelBOHB(**kwargs)


def offline_oracle(algorithm: str, sampler, *, seed: int, max_epochs: int, factor: int, iterations: int,
                   directory: str | None = None, surrogate: Surrogate | None = None, candidates: int = CANDIDATES,
                   objective: str = "val_accuracy"):
    """The search's oracle of `algorithm` (or `PERFECT`, which needs the `surrogate` and takes the
    best of `candidates`) ranking by `objective`, seeded as a search seeds it, with the sampler's
    space declared. Without `directory` it writes no files (nothing to resume in a simulation)."""
    import keras_tuner as kt

    from ..engine.algorithms import make_oracle, oracle_seed

    kwargs = dict(objective=kt.Objective(objective, OBJECTIVES[objective]), max_epochs=max_epochs, factor=factor,
                  hyperband_iterations=iterations, seed=oracle_seed(seed), check=sampler.check)
    oracle = (perfect_model_bohb(surrogate, candidates, **kwargs) if algorithm == PERFECT
              else make_oracle(algorithm, **kwargs))
    oracle._display.verbose = 0
    if directory is None:
        oracle._get_trial_dir = lambda trial_id: tempfile.gettempdir()  # checkpoints to delete: none exist
        oracle.save = oracle._save_trial = lambda *a: None
    oracle._set_project_dir(directory or tempfile.gettempdir(), "oracle")
    hp = kt.HyperParameters()
    sampler.declare(hp)
    oracle.update_space(hp)
    return oracle


def simulate(algorithm: str, surrogate: Surrogate, sampler, *, seed: int, workers: int, max_epochs: int,
             factor: int, iterations: int, candidates: int = CANDIDATES) -> dict[str, Any]:
    """One search of `algorithm` in simulated time (see the module's docstring).

    Args:
        sampler: the space's `search_spaces.Sampler` (declares the hyperparameters and checks each
            configuration, as in a search).
        seed: the search's seed.
        candidates: for `PERFECT`, how many configurations its model chooses from.

    Returns:
        ``{"anytime": [[seconds, best], ...], "best": final best, "wall": seconds, "busy_share": x,
        "trials": n, "epochs": epochs trained, "model_draws": BOHB's draws from its model,
        "model_from": the simulated second its first trial drawn from the model started (None: none
        was), "model_potential" / "random_potential": the median over the new configurations drawn
        from the model / at random of the surrogate's best accuracy for them at the full budget
        (None: none was drawn so)}``: how well the model chose.
    """
    oracle = offline_oracle(algorithm, sampler, seed=seed, max_epochs=max_epochs, factor=factor,
                            iterations=iterations, surrogate=surrogate, candidates=candidates,
                            objective=surrogate.metric)
    clock, busy, events, epochs, best, anytime, model_from = 0.0, 0.0, [], 0, None, [], None
    potential: dict[str, list[float]] = {"model": [], "random": []}  # new configurations' best at full budget
    free = [f"tuner{i}" for i in range(workers)]
    while True:
        waiting = []
        for worker in free:  # every free worker asks; "idle" waits for the next trial to end
            trial = oracle.create_trial(worker)
            if trial.status == "IDLE":
                waiting.append(worker)
            if trial.status != "RUNNING":
                continue
            if model_from is None and getattr(oracle, "model_draws", 0):
                model_from = clock
            values = trial.hyperparameters.values
            start, stop = int(values.get("tuner/initial_epoch", 0)), int(values["tuner/epochs"])
            curve, per_epoch, extra = surrogate.predict(values)
            if int(values.get("tuner/round", 0)) == 0:  # a new configuration: from BOHB's model, or at random
                drawn = "model" if trial.trial_id in getattr(oracle, "model_trials", {}) else "random"
                potential[drawn].append(best_of(surrogate, curve))
            for e in range(start, stop):
                oracle.update_trial(trial.trial_id, {surrogate.metric: float(curve[e])}, step=e)
            seconds = TRIAL_OVERHEAD + extra + per_epoch * (stop - start)
            busy, epochs = busy + seconds, epochs + stop - start
            heapq.heappush(events, (clock + seconds, trial.trial_id, worker))
        free = waiting
        if not events:
            break
        clock, trial_id, worker = heapq.heappop(events)
        trial = oracle.trials[trial_id]
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
        free.append(worker)
        if trial.score is not None and better(trial.score, best, surrogate.maximize):
            best = float(trial.score)
        anytime.append([round(clock, 3), best])
    return {"anytime": anytime, "best": best, "wall": clock, "busy_share": busy / (workers * clock) if clock else 0.0,
            "trials": len(oracle.trials), "epochs": epochs, "model_draws": getattr(oracle, "model_draws", 0),
            "model_from": model_from,
            **{f"{k}_potential": float(np.median(v)) if v else None for k, v in potential.items()}}


def time_to_reach(anytime: Sequence[Sequence[float]], target: float, maximize: bool = True) -> float:
    """Seconds until the best so far first reaches `target` (at least it; at most it where not
    `maximize`), inf if never."""
    sign = 1.0 if maximize else -1.0
    return next((t for t, best in anytime if best is not None and sign * best >= sign * target - 1e-12), math.inf)
