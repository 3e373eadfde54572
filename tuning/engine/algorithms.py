"""The search algorithms besides Hyperband: BOHB and ASHA, as oracles of the same engine.

Both are `ResNetOracle`s, so they keep what every search relies on: only valid configurations
(invalid draws are drawn again), one order for "the best trial", promoted configurations that
continue from their parent's checkpoint (``tuner/trial_id``, ``tuner/initial_epoch``), checkpoints
deleted once they can no longer be promoted, and the systematic-failure stop.

- `BOHBOracle` (Falkner et al. 2018): Hyperband's brackets and budgets; a new configuration is
  drawn from a TPE density model (Optuna's `TPESampler`, multivariate, with its support for
  conditional parameters, driven through its ask/tell API) fitted on the largest budget with at
  least `min_points` results, and a fixed fraction of them still at random. The model is fitted
  afresh from the trials for every draw, so it needs no state of its own: a resumed search draws
  what it would have drawn.
- `ASHAOracle` (Li et al. 2020, promotion variant): rungs of ``max_epochs / factor**k`` epochs;
  whenever a worker asks for work it promotes the best configuration that can still be promoted
  at the highest rung (one in the top 1/factor of its rung), else starts a new one at the lowest
  rung. Nobody waits for a round; the search ends once it has started as many epochs as
  Hyperband's plan for the same ``max_epochs``, ``factor`` and ``iterations`` trains.
"""

from __future__ import annotations

import math
import random
import warnings
from typing import Any

import keras_tuner as kt

from ..config import ALGORITHMS
from .oracle import FINISHED, ResNetOracle, is_configuration_failure, is_tuned

__all__ = ["ALGORITHMS", "ASHAOracle", "BOHBOracle", "make_oracle", "oracle_seed"]
NAMES = {"hyperband": "Hyperband", "bohb": "BOHB", "asha": "ASHA"}

RANDOM_FRACTION = 1 / 3   # BOHB: share of new configurations still drawn at random (the paper's default)
MIN_POINTS = 10           # BOHB: results a budget needs before a model is fitted on it (Optuna's TPE's start-up)
GOOD_SHARE = 0.15         # BOHB: the best 15% of results make TPE's "good" density (the paper's top_n_percent)
PRIOR_WEIGHT = 2.0        # BOHB: TPE's flat prior counts as two results: a wider model (BOHB widens its KDEs too)
MODEL_TRIES = 20          # BOHB: model proposals tried before a random draw, when they are invalid or seen


SEED_SPACING = 1_000_003  # see `oracle_seed`


def oracle_seed(seed: int) -> int:
    """keras-tuner's seed for the search's `seed`.

    keras-tuner draws hyperparameter k of a search from ``random.Random(seed + k)``, so searches
    whose seeds differ by 1 draw the same numbers, shifted by one hyperparameter: their trials are
    not independent. Seeds a million draws apart are (and keras-tuner reads 0 as "no seed",
    hence the + 1)."""
    return seed * SEED_SPACING + 1


def make_oracle(algorithm: str, **kwargs) -> ResNetOracle:
    """The oracle of `algorithm` (one of `ALGORITHMS`); `kwargs` as for `ResNetOracle`, with
    keras-tuner's own `seed` (`oracle_seed`)."""
    return {"hyperband": ResNetOracle, "bohb": BOHBOracle, "asha": ASHAOracle}[algorithm](**kwargs)


def _finished_value(trial, maximize: bool) -> float | None:
    """What a finished trial tells a model or a rung, higher is better: its score (negated for an
    objective to minimise); for a configuration failure (NaN loss, out of memory) the worst result
    (0 for the objectives to maximise, which lie in [0, 1]; -inf for val_loss); None for anything
    else (not a result)."""
    if trial.status == "COMPLETED" and trial.score is not None:
        return float(trial.score) if maximize else -float(trial.score)
    if trial.status == "FAILED" and is_configuration_failure(trial.message):
        return 0.0 if maximize else -math.inf
    return None


class BOHBOracle(ResNetOracle):
    """Hyperband whose new configurations come from a TPE model once results allow one.

    Args (besides `ResNetOracle`'s):
        random_fraction: share of new configurations drawn at random all the same.
        min_points: results a budget needs before a model is fitted on it. The BOHB paper asks
            for one more than the number of hyperparameters (29 in the small space, so the model
            would hardly ever be fitted within three iterations); TPE needs fewer.
    """

    UNDO = (*ResNetOracle.UNDO, "draws", "model_draws", "model_trials")

    def __init__(self, *args, random_fraction: float = RANDOM_FRACTION, min_points: int = MIN_POINTS, **kwargs):
        self.random_fraction = random_fraction
        self.min_points = min_points
        self.draws = 0          # new configurations asked for (seeds each draw's choice and model)
        self.model_draws = 0    # of them, drawn from the model
        self.model_trials: dict[str, int] = {}  # trial id -> the budget of the model it was drawn from
        self._drawn_from: int | None = None
        self.prior: list = []  # an earlier run's results [values, result, epochs]: evidence (a warm start)
        super().__init__(*args, **kwargs)

    def _random_values(self):
        seeded = self._seeded_values()
        if seeded is not None:
            return seeded
        self.draws += 1
        self._drawn_from = None
        rng = random.Random(f"bohb-{self.seed}-{self.draws}")
        if rng.random() >= self.random_fraction:
            observations = self.observations()
            if observations:
                values = self._model_values(observations[1], rng.randrange(2**31))
                if values is not None:
                    self.model_draws += 1
                    self._drawn_from = observations[0]
                    return values
        return super()._random_values()

    def _random_trial(self, trial_id, bracket):
        response = super()._random_trial(trial_id, bracket)
        if response.get("status") == "RUNNING" and self._drawn_from is not None:
            self.model_trials[trial_id] = self._drawn_from
        return response

    def observations(self) -> tuple[int, list[tuple[dict, float]]] | None:
        """(budget, [(values, result)]) on the largest budget with enough results, or None."""
        need = self.min_points
        by_budget: dict[int, list[tuple[dict, float]]] = {}
        for trial_id in sorted(self.trials):
            trial = self.trials[trial_id]
            value = _finished_value(trial, self.maximize)
            if value is None or not math.isfinite(value):  # TPE takes finite results only
                continue
            values = trial.hyperparameters.values
            budget = int(values.get("tuner/epochs", 0))
            by_budget.setdefault(budget, []).append(({k: v for k, v in values.items()
                                                      if not k.startswith("tuner/")}, value))
        for values, value, budget in self.prior:
            by_budget.setdefault(int(budget), []).append((values, float(value)))
        usable = [b for b, obs in by_budget.items() if len(obs) >= need]
        return (max(usable), by_budget[max(usable)]) if usable else None

    def _model_values(self, observations: list[tuple[dict, float]], seed: int) -> dict | None:
        """A valid, unseen configuration proposed by TPE fitted on `observations`, or None."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # multivariate/group TPE is marked experimental
            sampler = optuna.samplers.TPESampler(
                seed=seed, multivariate=True, group=True, n_startup_trials=0, prior_weight=PRIOR_WEIGHT,
                gamma=lambda n: max(1, math.ceil(GOOD_SHARE * n)), warn_independent_sampling=False)
            study = optuna.create_study(direction="maximize", sampler=sampler)
            by_name = {hp.name: hp for hp in self.hyperparameters.space}
            for values, result in observations:
                params = {k: v for k, v in values.items() if k in by_name and is_tuned(by_name[k])}
                try:
                    distributions = {k: optuna_distribution(by_name[k]) for k in params}
                    study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=result))
                except ValueError:  # a value outside today's space (the space file was edited): not evidence
                    continue
            for _ in range(MODEL_TRIES):
                trial = study.ask()
                hps = kt.HyperParameters()
                for hp in self.hyperparameters.space:
                    hps.merge([hp])
                    if hps.is_active(hp):
                        hps.values[hp.name] = _suggest(trial, hp) if is_tuned(hp) else _only_value(hp)
                values = hps.values
                # Told as failed, so that the next proposal differs; TPE leaves failed trials out.
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                if self._duplicate(values):
                    continue
                if self.check is not None and self.check(values) is not None:
                    self.rejected += 1
                    continue
                return values
        return None

    def get_state(self):
        state = super().get_state()
        state.update({"draws": self.draws, "model_draws": self.model_draws, "model_trials": self.model_trials,
                      "prior": self.prior})
        return state

    def set_state(self, state):
        super().set_state(state)
        self.draws = state.get("draws", 0)
        self.model_draws = state.get("model_draws", 0)
        self.model_trials = state.get("model_trials", {})
        self.prior = state.get("prior", [])


def _only_value(hp):
    """The value of a hyperparameter that can take one value only."""
    if isinstance(hp, kt.engine.hyperparameters.Fixed):
        return hp.value
    if isinstance(hp, kt.engine.hyperparameters.Choice):
        return hp.values[0]
    return hp.min_value


def _suggest(trial, hp):
    """Optuna's suggestion for one keras-tuner hyperparameter."""
    dist = optuna_distribution(hp)
    if hasattr(dist, "choices"):
        return trial.suggest_categorical(hp.name, dist.choices)
    suggest = trial.suggest_int if isinstance(hp, kt.engine.hyperparameters.Int) else trial.suggest_float
    return suggest(hp.name, dist.low, dist.high, step=dist.step, log=dist.log)


def optuna_distribution(hp):
    """The Optuna distribution of a keras-tuner hyperparameter."""
    import optuna.distributions as d

    if isinstance(hp, kt.engine.hyperparameters.Boolean):
        return d.CategoricalDistribution([False, True])
    if isinstance(hp, kt.engine.hyperparameters.Choice):
        return d.CategoricalDistribution(list(hp.values))
    log = getattr(hp, "sampling", None) == "log"
    if isinstance(hp, kt.engine.hyperparameters.Int):
        return d.IntDistribution(hp.min_value, hp.max_value, log=log, step=1 if log else (hp.step or 1))
    if isinstance(hp, kt.engine.hyperparameters.Float):
        return d.FloatDistribution(hp.min_value, hp.max_value, log=log, step=None if log else hp.step)
    raise TypeError(f"no distribution for {type(hp).__name__} {hp.name}")


class ASHAOracle(ResNetOracle):
    """Asynchronous successive halving, promotion variant (see the module's docstring).

    Trials carry the same ``tuner/*`` values as Hyperband's: ``tuner/bracket`` is the single
    bracket (the most exploratory one of Hyperband's, whose rungs it uses) and ``tuner/round``
    the rung.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.top = self._get_num_brackets() - 1
        self.rungs = [self._get_epochs(self.top, k) for k in range(self.top + 1)]
        # Every iteration's epochs; none with a time budget and no cap on iterations (the deadline stops it).
        self.budget = (sum(e - s for _, _, e, s in ResNetOracle.planned_trials(self))
                       if math.isfinite(self.hyperband_iterations) else math.inf)

    def spent(self) -> int:
        """Epochs started so far (running trials included)."""
        return sum(int(t.hyperparameters.values.get("tuner/epochs", 0))
                   - int(t.hyperparameters.values.get("tuner/initial_epoch", 0)) for t in self.trials.values())

    def rung_of(self, trial) -> int:
        return int(trial.hyperparameters.values.get("tuner/round", 0))

    def ranked(self, k: int) -> list:
        """Rung k's trials with a result, best first."""
        values = {t.trial_id: _finished_value(t, self.maximize) for t in self.trials.values() if self.rung_of(t) == k}
        ended = [self.trials[i] for i, value in values.items() if value is not None]
        return sorted(ended, key=lambda t: (-values[t.trial_id], self.rank(t)))

    def promotable(self) -> list[tuple[int, Any]]:
        """(rung, trial) of every finished trial in the top 1/factor of its rung that has not been
        promoted yet, highest rung first, best first within a rung."""
        promoted = {t.hyperparameters.values.get("tuner/trial_id") for t in self.trials.values()}
        out = []
        for k in reversed(range(self.top)):
            ranked = self.ranked(k)
            out += [(k, t) for t in ranked[:len(ranked) // self.factor]
                    if t.trial_id not in promoted and t.status == "COMPLETED"]
        return out

    def next_trial(self, trial_id):
        if self.spent() >= self.budget:
            return {"status": "IDLE"} if self.ongoing_trials else {"status": "STOPPED"}
        candidates = self.promotable()
        if candidates:
            k, parent = candidates[0]
            values = parent.hyperparameters.values.copy()
            values.update({"tuner/trial_id": parent.trial_id, "tuner/epochs": self.rungs[k + 1],
                           "tuner/initial_epoch": self.rungs[k], "tuner/bracket": self.top, "tuner/round": k + 1})
            self._record_lineage(trial_id, values)
            return {"status": "RUNNING", "values": values}
        values = self._random_values()
        if values is None:  # the space is exhausted
            return {"status": "IDLE"} if self.ongoing_trials else {"status": "STOPPED"}
        values.update({"tuner/epochs": self.rungs[0], "tuner/initial_epoch": 0, "tuner/bracket": self.top,
                       "tuner/round": 0})
        self._record_lineage(trial_id, values, trial_id)
        return {"status": "RUNNING", "values": values}

    def dead_checkpoints(self) -> set[str]:
        """Finished trials whose checkpoint will never be loaded again: at the top rung, promoted
        with a finished child, failed, or ranked too low in their rung ever to be promoted (a
        trial's rank only falls as results arrive, and the budget left bounds how many more can
        arrive in each rung); all of them once the budget is spent. Never the best trial's, nor a
        running trial's parent's (`deletable`)."""
        finished = {t for t, trial in self.trials.items() if trial.status in FINISHED}
        left = self.budget - self.spent()
        if not math.isfinite(left):  # a time budget: the epochs that still fit before its deadline
            left = self.deadline.epochs_left() if self.deadline is not None else math.inf
        if left <= 0:
            dead = set(finished)
        else:
            dead = {t for t in finished if self.rung_of(self.trials[t]) == self.top
                    or self.trials[t].status != "COMPLETED"}
            for trial in self.trials.values():
                parent = trial.hyperparameters.values.get("tuner/trial_id")
                if parent is not None and trial.status in FINISHED:
                    dead.add(parent)
            for k in range(self.top if math.isfinite(left) else 0):
                ranked = self.ranked(k)
                running = sum(t.status == "RUNNING" and self.rung_of(t) == k for t in self.trials.values())
                most = len(ranked) + running + int(left // (self.rungs[k] - (self.rungs[k - 1] if k else 0)))
                dead.update(t.trial_id for t in ranked[most // self.factor:])
        return self.deletable(dead)

    def planned_trials(self) -> list[tuple[int, int, int, int]]:
        """An estimate (ASHA's trials are not fixed in advance, its budget is): the rungs of
        synchronous successive halving over the same rungs, repeated until the budget is spent,
        one (bracket, rung, epochs, initial_epoch) per trial."""
        out, spent = [], 0
        budget = self.budget if math.isfinite(self.budget) else sum(
            e - s for _, _, e, s in ResNetOracle.planned_trials(self))  # a time budget: its planned iterations'
        while spent < budget:
            for k in range(self.top + 1):
                start = self.rungs[k - 1] if k else 0
                for _ in range(self._get_size(self.top, k)):
                    if spent >= budget:
                        break
                    out.append((self.top, k, self.rungs[k], start))
                    spent += self.rungs[k] - start
        return out
