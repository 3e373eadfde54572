"""The oracle's bookkeeping on its own, without training: fake trial tables with ties, trials
reloaded from disk in shuffled order between every end, failed trials and distributed end
orders. What must hold whatever happens: a trial that is promoted finds its parent's
checkpoint, the final best's checkpoint exists, and no more checkpoints remain than needed."""

import dataclasses
import pathlib
import random
import types

import keras_tuner as kt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuning.config import OBJECTIVES
from tuning.engine.oracle import ResNetOracle, is_configuration_failure, systematic_failure
from tuning.errors import SystematicFailure
from tuning.run.folder import CHECKPOINT_NAME
from tuning.run.records import TrialRecord, best_record, rank_key, record_key, trial_key

NAN = "keras_tuner.src.errors.FailedTrialError: the loss became NaN in epoch 1 (learning rate 10); stopped by " \
      "TerminateOnNaN"


def space() -> kt.HyperParameters:
    hp = kt.HyperParameters()
    hp.Choice("block", ["basic", "bottleneck"])
    hp.Int("depth", 2, 8)
    hp.Choice("optimizer", ["sgd", "adam"])
    with hp.conditional_scope("optimizer", ["sgd"]):
        hp.Float("momentum", 0.0, 0.99)
    return hp


def new_oracle(directory: pathlib.Path, max_epochs: int, factor: int, iterations: int, seed: int,
               objective: str = "val_accuracy") -> ResNetOracle:
    oracle = ResNetOracle(objective=kt.Objective(objective, OBJECTIVES[objective]), max_epochs=max_epochs,
                          factor=factor, hyperband_iterations=iterations, seed=seed, hyperparameters=space())
    oracle._set_project_dir(str(directory), "tuner")
    oracle._display.verbose = 0  # keras-tuner's per-trial printout
    return oracle


def checkpoint(oracle, trial_id) -> pathlib.Path:
    return pathlib.Path(oracle._get_trial_dir(trial_id), CHECKPOINT_NAME)


def reload(directory, oracle, rng: random.Random) -> ResNetOracle:
    """A fresh process's oracle: read back from disk, its trials in a shuffled order."""
    fresh = new_oracle(directory, oracle.max_epochs, oracle.factor, oracle.hyperband_iterations, oracle.seed,
                       oracle.objective.name)
    fresh.reload()
    items = list(fresh.trials.items())
    rng.shuffle(items)
    fresh.trials = dict(items)
    return fresh


def simulate(directory: pathlib.Path, scores, *, workers=1, reload_every=None, fail=(), rng=None,
             max_epochs=9, factor=3, iterations=1, objective="val_accuracy"):
    """Run a whole Hyperband search with made-up scores.

    `scores(i)` is the score (of `objective`) of the i-th trial to end; `fail` holds the indices that fail instead;
    `reload_every(i)` says whether to reload the oracle (a hand-over or a kill) after the i-th end.
    Workers end their trials in an order drawn from `rng`. Every invariant is checked on the way.
    """
    rng = rng or random.Random(0)
    oracle = new_oracle(directory, max_epochs, factor, iterations, seed=1, objective=objective)
    running: dict[str, object] = {}  # tuner id -> trial
    stopped: set[str] = set()
    ended = 0
    while True:
        for w in (f"tuner{i}" for i in range(workers)):
            if w in running or w in stopped:
                continue
            trial = oracle.create_trial(w)
            if trial.status == "STOPPED":
                stopped.add(w)
            elif trial.status == "RUNNING":
                parent = trial.hyperparameters.values.get("tuner/trial_id")
                # A promoted trial starts from its parent's checkpoint: it must still be there.
                assert parent is None or checkpoint(oracle, parent).exists(), (trial.trial_id, parent)
                checkpoint(oracle, trial.trial_id).write_bytes(b"weights")  # training writes it
                running[w] = trial
        if not running:
            if len(stopped) == workers:
                break
            continue  # idle: every worker waits for a trial that is not running anywhere
        w = rng.choice(sorted(running))
        trial = running.pop(w)
        epochs = trial.hyperparameters.values["tuner/epochs"]
        if ended in fail:
            trial.status, trial.message = "FAILED", NAN
        else:
            oracle.update_trial(trial.trial_id, {objective: scores(ended)}, step=epochs)
            trial.status = "COMPLETED"
        oracle.end_trial(trial)
        ended += 1
        best = oracle.get_best_trials(1)
        if best and best[0].status == "COMPLETED":
            assert checkpoint(oracle, best[0].trial_id).exists()
        if reload_every and reload_every(ended):
            oracle = reload(directory, oracle, rng)
            running = {}  # their processes died with the oracle's; the oracle hands the trials out again
    return oracle


def surviving_checkpoints(directory) -> set[str]:
    return {p.parent.name.removeprefix("trial_") for p in pathlib.Path(directory, "tuner").glob(f"*/{CHECKPOINT_NAME}")}


def test_ranking_is_a_total_order():
    assert rank_key(0.9, 3, "0004") < rank_key(0.8, 1, "0000")          # score first
    assert rank_key(0.9, 1, "0009") < rank_key(0.9, 3, "0001")          # then fewer epochs
    assert rank_key(0.9, 3, "0001") < rank_key(0.9, 3, "0002")          # then the lower id
    assert rank_key(0.1, 9, "0009") < rank_key(None, 1, "0000")          # any score before none
    assert rank_key(float("nan"), 1, "0000") == rank_key(None, 1, "0000")
    assert rank_key(0.9, 1, "0000", completed=False) > rank_key(0.1, 9, "0009")
    recs = [TrialRecord("0003", val_accuracy=0.5, epochs=3, status="COMPLETED"),
            TrialRecord("0001", val_accuracy=0.5, epochs=3, status="COMPLETED"),
            TrialRecord("0002", val_accuracy=0.7, epochs=9, status="FAILED")]
    for _ in range(5):
        random.shuffle(recs)
        assert best_record(recs).trial_id == "0001"
        assert [r.trial_id for r in sorted(recs, key=record_key)] == ["0001", "0003", "0002"]
    assert best_record([dataclasses.replace(recs[0], status="FAILED")]) is None


def test_ties_with_a_reload_before_every_end_keep_the_best_checkpoint(tmp_path):
    """The failure seen on a fresh machine: tied best scores and a new process (hand-over) after
    every trial used to delete every tied trial's checkpoint."""
    oracle = simulate(tmp_path, lambda i: 0.9861, reload_every=lambda i: True, rng=random.Random(3))
    best = oracle.get_best_trials(1)[0]
    assert surviving_checkpoints(tmp_path) == {best.trial_id}
    # The best of the tie: the fewest epochs, then the lowest id.
    tied = [t for t in oracle.trials.values() if t.status == "COMPLETED"]
    fewest = min(t.hyperparameters.values["tuner/epochs"] for t in tied)
    assert best.trial_id == min(t.trial_id for t in tied if t.hyperparameters.values["tuner/epochs"] == fewest)
    # Every process agrees, whatever order it loaded the trials in.
    for seed in range(5):
        assert reload(tmp_path, oracle, random.Random(seed)).get_best_trials(1)[0].trial_id == best.trial_id


def test_failed_trials_and_distributed_end_orders(tmp_path):
    oracle = simulate(tmp_path, lambda i: [0.5, 0.75, 0.75, 1.0][i % 4], workers=3, fail={0, 2, 5, 6},
                      reload_every=lambda i: i % 4 == 0, rng=random.Random(7), iterations=2)
    assert sum(t.status == "FAILED" for t in oracle.trials.values()) == 4
    assert surviving_checkpoints(tmp_path) == {oracle.get_best_trials(1)[0].trial_id}


def test_a_round_closed_by_failures_still_promotes_its_last_trials(tmp_path):
    """Found by the property test below: round 1 of the largest bracket (5 trials, 3 failed) fills
    only 2 of round 2's 3 slots and closes the third; round 3 (2 slots) must still take both of
    round 2's trials, or the second is never promoted and its checkpoint is never freed."""
    oracle = simulate(tmp_path, lambda i: 0.25, fail={10, 11, 12}, rng=random.Random(0), max_epochs=9, factor=2)
    last = [t for t in oracle.trials.values() if t.hyperparameters.values["tuner/bracket"] == 3
            and t.hyperparameters.values["tuner/round"] == 3]
    assert len(last) == 2
    assert surviving_checkpoints(tmp_path) == {oracle.get_best_trials(1)[0].trial_id}


def promotions(oracle):
    """(promoted trial, the trials of its round that were passed over) for every promotion."""
    promoted = {s.hyperparameters.values.get("tuner/trial_id") for s in oracle.trials.values()}
    for t in oracle.trials.values():
        parent = t.hyperparameters.values.get("tuner/trial_id")
        if parent is None:
            continue
        rnd = t.hyperparameters.values["tuner/round"]
        siblings = [oracle.trials[i] for i, info in oracle.lineage.items()
                    if info["bracket_run"] == oracle.lineage[parent]["bracket_run"] and info["round"] == rnd - 1]
        yield oracle.trials[parent], [s for s in siblings if s.trial_id not in promoted]


def test_promotion_among_ties_is_the_ranking_order(tmp_path):
    oracle = simulate(tmp_path, lambda i: 0.5, rng=random.Random(1))
    for parent, passed_over in promotions(oracle):
        # No trial of the round that was passed over ranks above the one promoted.
        assert all(trial_key(parent) <= trial_key(s) for s in passed_over)


def test_a_minimised_objective_promotes_keeps_and_ranks_the_lowest(tmp_path):
    """With val_loss the best is the lowest: promotions take the lowest of each round, and only
    the lowest trial's checkpoint is left; the records rank the same way."""
    losses = {}

    def score(i):
        losses[i] = [0.9, 0.2, 0.5, 0.7, 0.4, 0.3][i % 6] + i / 1000
        return losses[i]

    oracle = simulate(tmp_path, score, rng=random.Random(5), objective="val_loss")
    best = oracle.get_best_trials(1)[0]
    assert best.score == min(t.score for t in oracle.trials.values() if t.status == "COMPLETED")
    assert surviving_checkpoints(tmp_path) == {best.trial_id}
    for parent, passed_over in promotions(oracle):
        assert all(parent.score <= s.score for s in passed_over)
    records = [TrialRecord(t.trial_id, objective="val_loss", score=t.score, status=t.status,
                           epochs=t.hyperparameters.values["tuner/epochs"]) for t in oracle.trials.values()]
    assert best_record(records).trial_id == best.trial_id


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), workers=st.integers(1, 3), max_epochs=st.sampled_from([3, 9]),
       factor=st.sampled_from([2, 3]))
def test_property_checkpoints_survive_any_scores_and_reloads(tmp_path_factory, data, workers, max_epochs, factor):
    directory = tmp_path_factory.mktemp("oracle")
    levels = data.draw(st.lists(st.sampled_from([0.25, 0.5, 0.75, 1.0]), min_size=1, max_size=4, unique=True))
    scores = data.draw(st.lists(st.sampled_from(levels), min_size=60, max_size=60))
    reloads = data.draw(st.sets(st.integers(1, 60), max_size=30))
    fail = data.draw(st.sets(st.integers(0, 59), max_size=10))
    seed = data.draw(st.integers(0, 2**16))
    objective = data.draw(st.sampled_from(["val_accuracy", "val_loss"]))  # maximised, minimised
    oracle = simulate(directory, lambda i: scores[i % 60], workers=workers, reload_every=lambda i: i in reloads,
                      fail=fail, rng=random.Random(seed), max_epochs=max_epochs, factor=factor, objective=objective)
    best = oracle.get_best_trials(1)[0]
    left = surviving_checkpoints(directory)
    if best.status == "COMPLETED":
        completed = [t.score for t in oracle.trials.values() if t.status == "COMPLETED"]
        assert best.score == (max(completed) if objective == "val_accuracy" else min(completed))
        assert left == {best.trial_id}  # the final best's, and nothing else once the search is over
    else:
        assert left == set()  # every trial failed


def test_a_bracket_closed_with_an_earlier_round_short_leaves_only_the_best_checkpoint(tmp_path):
    """Found by the property above: round 1 of the first bracket fails three times and a reload
    hands a round-0 trial out again; the later rounds run ahead and fill the bracket's last round
    while round 1 still has an open slot. The bracket creates no more trials, so its round-0
    trials that were never promoted are dead."""
    oracle = simulate(tmp_path, lambda i: 0.25, workers=2, reload_every=lambda i: i == 10, fail={9, 10, 11},
                      rng=random.Random(2), max_epochs=9, factor=2)
    first = next(e for e in oracle.bracket_runs.values() if e["bracket"] == 3)
    assert len(first["rounds"]["1"]) < oracle._get_size(3, 1)  # the short round this is about
    assert surviving_checkpoints(tmp_path) == {oracle.get_best_trials(1)[0].trial_id}


def fake(trial_id, values, status="FAILED", message="RuntimeError: injected fault: a bug"):
    return types.SimpleNamespace(trial_id=trial_id, status=status, message=message,
                                 hyperparameters=types.SimpleNamespace(values=values))


def test_only_systematic_failures_stop():
    hp = space()
    a = {"block": "basic", "depth": 2, "optimizer": "sgd", "momentum": 0.5}
    b = {"block": "bottleneck", "depth": 5, "optimizer": "adam"}
    c = {"block": "basic", "depth": 7, "optimizer": "sgd", "momentum": 0.9}
    # The same error where the configurations differ in every tuned value: systematic.
    reason = systematic_failure([fake("0", a), fake("1", b), fake("2", c)], hp)
    assert reason and "the last 3 trials all failed with the same error" in reason and "injected fault" in reason
    # Every failure shares block = basic: that value may be the cause, so go on.
    assert systematic_failure([fake("0", a), fake("1", a | {"depth": 3}), fake("2", c)], hp) is None
    # Different errors, or a completed trial in between: go on.
    assert systematic_failure([fake("0", a), fake("1", b, message="ValueError: other"), fake("2", c)], hp) is None
    assert systematic_failure([fake("0", a), fake("1", b), fake("9", c, status="COMPLETED")], hp) is None
    # NaN losses and out-of-memory errors belong to their configuration: never a stop, however many.
    nans = [fake(str(i), a if i % 2 else b, message=NAN) for i in range(50)]
    assert is_configuration_failure(NAN) and systematic_failure(nans, hp) is None
    oom = "FailedTrialError: out of memory at batch size 64 and again at 32: OOM"
    assert systematic_failure([fake(str(i), b, message=oom) for i in range(20)], hp) is None
    # ... and they neither count towards a streak nor break it.
    assert systematic_failure([fake("0", a), fake("1", b, message=NAN), fake("2", b), fake("3", c)], hp)


def test_a_new_session_forgets_an_old_streak(tmp_path):
    oracle = new_oracle(tmp_path, 3, 3, 20, seed=1)
    for _ in range(60):
        trial = oracle.create_trial("tuner0")
        if trial.status != "RUNNING":
            break
        trial.status, trial.message = "FAILED", "RuntimeError: disk full"
        try:
            oracle.end_trial(trial)
        except SystematicFailure:
            break
    else:
        pytest.fail("the same error in configurations that differ everywhere never stopped the search")
    stopped_after = len(oracle.end_order)
    oracle = reload(tmp_path, oracle, random.Random(0))
    oracle.forget_failures()  # the user ran the command again
    assert oracle.streak_from == stopped_after
    trial = oracle.create_trial("tuner0")
    trial.status, trial.message = "FAILED", "RuntimeError: disk full"
    oracle.end_trial(trial)  # one more failure: no stop at once
    assert reload(tmp_path, oracle, random.Random(1)).streak_from == stopped_after  # saved with the oracle
