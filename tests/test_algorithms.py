"""BOHB and ASHA as oracles: driven directly (no training), with scores and completion orders
chosen by hypothesis, so that their rules are checked on their own."""

import json
import math
import random

import keras_tuner as kt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search_spaces import Sampler, load_space
from tuning.bench.simulate import offline_oracle
from tuning.engine.algorithms import ASHAOracle


@pytest.fixture(scope="module")
def sampler():
    return Sampler(load_space("small"), (8, 8, 1), 10)


def active_names(oracle, values) -> set[str]:
    """The hyperparameters active under `values` (keras-tuner's own conditions)."""
    hps = kt.HyperParameters()
    names = set()
    for hp in oracle.hyperparameters.space:
        hps.merge([hp])
        hps.values[hp.name] = values.get(hp.name)
        if hps.is_active(hp):
            names.add(hp.name)
    return names


def needed_checkpoints_kept(oracle) -> None:
    """A trial that has not finished loads its parent's checkpoint when it starts, and again when it
    restarts (its worker killed before its first epoch ended): that checkpoint is never deleted."""
    unfinished = [t for t in oracle.trials.values() if t.status not in ("COMPLETED", "FAILED", "INVALID")]
    needed = {t.hyperparameters.values.get("tuner/trial_id") for t in unfinished} - {None}
    assert not needed & oracle.dead_checkpoints(), (needed, oracle.dead_checkpoints())


def drive(oracle, score, workers: int, rng: random.Random, on_create=None, limit: int = 2000) -> list:
    """Run `oracle` to its end: free workers ask for trials; a random running trial ends next,
    with ``score(values)`` (None: it fails with a generic error). Returns the trials in the order
    they were created. After every trial's end, no checkpoint a running trial needs is dead."""
    running, owner, created, free = {}, {}, [], [f"tuner{i}" for i in range(workers)]
    for _ in range(limit):
        waiting = []
        for w in free:
            trial = oracle.create_trial(w)
            if on_create is not None:
                on_create(trial)
            if trial.status == "RUNNING":
                running[trial.trial_id], owner[trial.trial_id] = trial, w
                created.append(trial)
            elif trial.status == "IDLE":
                waiting.append(w)
        free = waiting
        if not running:
            return created
        trial = running.pop(rng.choice(sorted(running)))
        value = score(trial.hyperparameters.values)
        if value is None:
            trial.status, trial.message = "FAILED", "RuntimeError: boom"
        else:
            step = int(trial.hyperparameters.values["tuner/epochs"]) - 1
            oracle.update_trial(trial.trial_id, {"val_accuracy": value}, step=step)
            trial.status = "COMPLETED"
        oracle.end_trial(trial)
        needed_checkpoints_kept(oracle)
        free.append(owner[trial.trial_id])
    raise AssertionError("the search did not end")


def configuration_score(seed: int):
    """A score per configuration (seeded), growing with epochs; None (a failure) for about 5%."""
    def score(values):
        key = json.dumps({k: v for k, v in values.items() if not k.startswith("tuner/")}, sort_keys=True)
        r = random.Random(f"{seed}-{key}")
        base, fails = r.random(), r.random() < 0.05
        return None if fails else round(base * (1 - 1 / (1 + int(values["tuner/epochs"]))), 2)  # ties happen
    return score


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), workers=st.integers(1, 4), max_epochs=st.sampled_from([4, 9, 12]),
       factor=st.sampled_from([2, 3]))
def test_asha_promotes_the_best_at_the_highest_rung_never_waits_and_spends_its_budget(sampler, seed, workers,
                                                                                     max_epochs, factor):
    oracle = offline_oracle("asha", sampler, seed=seed, max_epochs=max_epochs, factor=factor, iterations=1)
    assert isinstance(oracle, ASHAOracle)
    dead: set[str] = set()

    def expected_promotion(trials):
        """The spec, written out again: highest rung first, then the best of the rung's top 1/factor."""
        promoted = {t.hyperparameters.values.get("tuner/trial_id") for t in trials.values()}
        for k in reversed(range(len(oracle.rungs) - 1)):
            # A generic failure is not a result: it neither counts in its rung nor can be promoted.
            ended = [t for t in trials.values() if t.hyperparameters.values["tuner/round"] == k
                     and t.status == "COMPLETED"]
            ranked = sorted(ended, key=lambda t: (-t.score, int(t.hyperparameters.values["tuner/epochs"]),
                                                  t.trial_id))
            for t in ranked[:len(ranked) // factor]:
                if t.trial_id not in promoted:
                    return t.trial_id
        return None

    def on_create(trial):
        if trial.status != "RUNNING":
            assert trial.status == "STOPPED" or oracle.spent() >= oracle.budget  # never waits while work remains
            return
        before = {t.trial_id: t for t in oracle.trials.values() if t.trial_id != trial.trial_id}
        values = trial.hyperparameters.values
        parent = values.get("tuner/trial_id")
        assert parent == expected_promotion(before)
        if parent is None:
            assert values["tuner/round"] == 0 and values["tuner/epochs"] == oracle.rungs[0]
            assert values["tuner/initial_epoch"] == 0 and sampler.check(values) is None
        else:
            k = before[parent].hyperparameters.values["tuner/round"]
            assert values["tuner/round"] == k + 1 and values["tuner/initial_epoch"] == oracle.rungs[k]
            assert values["tuner/epochs"] == oracle.rungs[k + 1]
            assert parent not in dead  # its checkpoint was never deleted before it was needed
        dead.update(oracle.dead_checkpoints())

    created = drive(oracle, configuration_score(seed), workers, random.Random(seed), on_create)
    spent = sum(t.hyperparameters.values["tuner/epochs"] - t.hyperparameters.values["tuner/initial_epoch"]
                for t in created)
    assert oracle.budget <= spent < oracle.budget + max_epochs
    assert oracle.budget == sum(e - s for _, _, e, s in oracle.__class__.__mro__[1].planned_trials(oracle))
    parents = [t.hyperparameters.values.get("tuner/trial_id") for t in created]
    assert len([p for p in parents if p]) == len({p for p in parents if p})  # each promoted once at most
    assert any(p for p in parents)
    best = oracle.get_best_trials(1)[0].trial_id
    assert oracle.dead_checkpoints() == {t.trial_id for t in created} - {best}  # the end frees all but the best


def good(values) -> bool:
    return values["base_filters"] == 32


def prefers_32_filters(values):
    """A space where one value decides: configurations with 32 base filters score high, all others
    low; plus a little of every other value, so that no two configurations tie."""
    key = json.dumps({k: v for k, v in values.items() if not k.startswith("tuner/")}, sort_keys=True)
    return (0.9 if good(values) else 0.4) + 0.05 * random.Random(key).random()


def test_bohb_draws_from_its_model_only_valid_unseen_configurations_with_the_right_conditional_values(sampler):
    forbidden = []

    def check(values):  # the space's own check, and one more rule a model knows nothing of
        if values.get("optimizer") == "adam" and values.get("base_filters") == 32:
            forbidden.append(values)
            return "adam with 32 filters is not allowed here"
        return sampler.check(values)

    oracle = offline_oracle("bohb", sampler, seed=3, max_epochs=12, factor=3, iterations=3)
    oracle.check, oracle.min_points = check, 8
    created = drive(oracle, prefers_32_filters, 1, random.Random(0))
    assert oracle.model_draws > 15 and oracle.draws == sum(t.hyperparameters.values["tuner/round"] == 0
                                                           for t in created)
    firsts = [t.hyperparameters.values for t in created if t.hyperparameters.values["tuner/round"] == 0]
    keys = [json.dumps({k: v for k, v in v.items() if not k.startswith("tuner/")}, sort_keys=True) for v in firsts]
    assert len(keys) == len(set(keys))  # never the same configuration twice
    assert forbidden and oracle.rejected >= len(forbidden)  # proposed, rejected, redrawn
    for values in firsts:
        assert check(values) is None
        tuned = {k for k in values if not k.startswith("tuner/")}
        assert tuned == active_names(oracle, values)  # momentum only under SGD, and so on
    # The model found what matters: far more of its configurations are good ones than of the
    # random draws; and Hyperband's plan is unchanged.
    model = [t.hyperparameters.values for t in created if t.trial_id in oracle.model_trials]
    rand = [v for v in firsts if v not in model]
    assert len(model) == oracle.model_draws and 12 in set(oracle.model_trials.values()) <= {2, 4, 12}
    assert sum(map(good, model)) / len(model) > 1.5 * sum(map(good, rand)) / len(rand)
    assert len(created) == len(oracle.planned_trials())


def run_from_files(sampler, algorithm, directory, score, *, stop=None, resume=False, min_points=None, **budget):
    """Run an oracle that keeps its files in `directory`: until `stop` trials were created (a
    kill), or, with `resume`, reloaded from those files to its end. Returns (values of the trials
    it created, the oracle)."""
    oracle = offline_oracle(algorithm, sampler, directory=str(directory), **budget)
    if min_points is not None:
        oracle.min_points = min_points
    if resume:
        oracle.reload()
    created = []

    def on_create(trial):
        if stop is not None and len(created) >= stop:
            raise KeyboardInterrupt
        if trial.status == "RUNNING":
            created.append(trial.hyperparameters.values)

    try:
        drive(oracle, score, 1, random.Random(0), on_create)
    except KeyboardInterrupt:
        pass
    return created, oracle


@pytest.mark.parametrize("algorithm, stop, budget", [
    ("bohb", 20, dict(seed=5, max_epochs=9, factor=3, iterations=2, min_points=6)),
    ("asha", 12, dict(seed=2, max_epochs=9, factor=3, iterations=1)),
])
def test_an_oracle_resumed_from_its_files_runs_what_it_would_have_run(sampler, tmp_path, algorithm, stop, budget):
    score = prefers_32_filters if algorithm == "bohb" else configuration_score(2)
    whole, oracle = run_from_files(sampler, algorithm, tmp_path / "whole", score, **budget)
    assert oracle.model_draws > 0 if algorithm == "bohb" else any("tuner/trial_id" in v for v in whole)
    first, _ = run_from_files(sampler, algorithm, tmp_path / "killed", score, stop=stop, **budget)
    rest, _ = run_from_files(sampler, algorithm, tmp_path / "killed", score, resume=True, **budget)
    assert first + rest == whole


def test_the_surrogate_benchmark_replays_every_algorithm_on_the_same_budget(tmp_path):
    from tuning.bench.algorithms import plot, run_benchmark, strict_json, table

    result = run_benchmark(seeds=2, workers=[1, 3], iterations=1, check_surrogate=False)
    runs = result["runs"]
    assert len(runs) == 2 * 2 * 3
    for r in runs:
        best = [b for _, b in r["anytime"] if b is not None]
        assert best == sorted(best) and best[-1] == r["best"]  # a best-so-far curve
        assert [t for t, _ in r["anytime"]] == sorted(t for t, _ in r["anytime"])
        assert r["anytime"][-1][0] == pytest.approx(r["wall"], abs=1e-3)
        assert 0 < r["busy_share"] <= 1 + 1e-9
        if r["algorithm"] == "asha":
            assert 136 <= r["epochs"] < 136 + 12  # Hyperband's budget for the small space, overrun by one trial
        else:
            assert r["epochs"] == 136 and r["trials"] == 30
        if r["algorithm"] == "bohb" and r["model_draws"]:  # when its first trial drawn from the model started
            assert 0 < r["model_from"] < r["wall"]
        else:
            assert r["model_from"] is None and r["model_draws"] == 0
        if r["workers"] == 1:  # one worker never waits
            assert r["busy_share"] == pytest.approx(1.0)
    assert any(r["model_from"] for r in runs)
    for r in runs:  # the surrogate's view of how well the new configurations were chosen
        assert 0.5 < r["random_potential"] < 1
        assert (r["model_potential"] is None) == (r["model_draws"] == 0)
    one, three = result["summary"]["1"], result["summary"]["3"]
    assert one["hyperband"]["ratio_of_medians"] == 1.0 and one["hyperband"]["reached"] == 1.0
    assert three["asha"]["busy_share"] > 0.9
    assert three["hyperband"]["wall"] < one["hyperband"]["wall"] / 2  # three workers share the work
    text = table(result)
    assert len(text.splitlines()) == 2 + 6 and "| 3 | ASHA |" in text
    assert math.isinf(one["hyperband"]["time_to"]["0.99"])  # never reached in so short a search
    written = json.loads(json.dumps(strict_json(result), allow_nan=False))  # --out's JSON: null for never
    assert written["summary"]["1"]["hyperband"]["time_to"]["0.99"] is None
    assert written["runs"][0]["anytime"] == [list(p) for p in runs[0]["anytime"]]
    plot(result, tmp_path / "algorithms.png")
    assert (tmp_path / "algorithms.png").read_bytes()[:4] == b"\x89PNG"


def test_the_perfect_model_bound_is_bohb_drawing_what_the_surrogate_predicts_best():
    """`bench algorithms --perfect-model`: BOHB whose model is the surrogate. Where it draws from
    its model, it takes the best predicted of its candidates; its random draws stay BOHB's own."""
    from tuning.bench.algorithms import CURVES, surrogate_setup
    from tuning.bench.simulate import PERFECT, simulate

    state = surrogate_setup(str(CURVES), "small", 0)
    surrogate, space_sampler = state["surrogate"], state["sampler"]

    def predicted(values):  # the surrogate's accuracy after the trial's epochs
        return float(surrogate.predict(values)[0][int(values["tuner/epochs"]) - 1])

    def new_configurations(algorithm):
        oracle = offline_oracle(algorithm, space_sampler, seed=4, max_epochs=12, factor=3, iterations=2,
                                surrogate=surrogate)
        created = drive(oracle, predicted, 1, random.Random(0))
        firsts = [t for t in created if t.hyperparameters.values["tuner/round"] == 0]
        model = [t.hyperparameters.values for t in firsts if t.trial_id in oracle.model_trials]
        rand = [t.hyperparameters.values for t in firsts if t.trial_id not in oracle.model_trials]
        return model, rand

    model, rand = new_configurations(PERFECT)
    bohb_model, bohb_rand = new_configurations("bohb")
    assert len(model) >= 10 and len(bohb_model) >= 10
    assert rand[:len(rand) // 2] == bohb_rand[:len(rand) // 2]  # the same random draws, in the same order

    def best(values):
        return float(surrogate.predict(values)[0].max())

    random_median = sorted(map(best, rand))[len(rand) // 2]
    assert min(map(best, model)) > random_median
    assert sum(map(best, model)) / len(model) > sum(map(best, bohb_model)) / len(bohb_model)
    run = simulate(PERFECT, surrogate, space_sampler, seed=4, workers=1, max_epochs=12, factor=3, iterations=2)
    assert run["model_potential"] > run["random_potential"]
    weaker = simulate(PERFECT, surrogate, space_sampler, seed=4, workers=1, max_epochs=12, factor=3, iterations=2,
                      candidates=2)  # the best of 2: a weaker model
    assert run["model_potential"] > weaker["model_potential"] > run["random_potential"]


def test_the_surrogate_benchmark_with_a_minimised_objective():
    """`bench algorithms --objective val_loss`: the surrogate predicts the recorded losses, every
    algorithm ranks by them, and the best so far only ever falls."""
    from tuning.bench.algorithms import CURVES, summarize, surrogate_setup
    from tuning.bench.simulate import simulate, time_to_reach

    state = surrogate_setup(str(CURVES), "small", 0, "val_loss")
    runs = [{"algorithm": a, "seed": 1, "workers": 1,
             **simulate(a, state["surrogate"], state["sampler"], seed=1, workers=1, max_epochs=12, factor=3,
                        iterations=1)} for a in ("hyperband", "asha")]
    for run in runs:
        bests = [b for _, b in run["anytime"] if b is not None]
        assert bests == sorted(bests, reverse=True) and run["best"] == bests[-1] < 1.0  # losses, falling
        assert 0 < run["best"] <= run["random_potential"] + 0.5  # potentials are lowest losses too
    assert time_to_reach(runs[0]["anytime"], runs[0]["best"], maximize=False) <= runs[0]["wall"]
    assert time_to_reach(runs[0]["anytime"], runs[0]["best"]) == runs[0]["anytime"][0][0]  # the wrong way: at once
    summary = summarize(runs, (), maximize=False)
    assert summary["hyperband"]["ratio_of_medians"] == 1.0 and summary["hyperband"]["reached"] == 1.0
