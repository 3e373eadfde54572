"""A search with a time budget: durations, the cost model, the plan, the deadline, extending."""

import json
import math
import random

import keras_tuner as kt
import pytest

from tuning.config import OBJECTIVES, SearchConfig, parse_duration
from tuning.engine.algorithms import make_oracle
from tuning.engine.budget import END_SECONDS, CostModel, Deadline, Work, hyperband_trials, iteration_seconds, make_plan
from tuning.errors import UsageError

from .test_budget import _search
from .test_oracle import space


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("45m", 2700), ("2h", 7200), ("1h30m", 5400), ("90", 90),
                                           ("1.5h", 5400), ("2h5m10s", 7510), (" 2H ", 7200)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "0s", "h", "1m30h", "-5", "5 minutes"])
def test_bad_durations_are_refused_in_one_line(text):
    with pytest.raises(UsageError, match="time budget .* (is not a duration|is not more than 0 seconds): give one"):
        parse_duration(text)


def test_a_time_budget_is_checked_and_leaves_iterations_to_the_plan(tiny_space):
    with pytest.raises(UsageError, match="time_budget = -1 is invalid"):
        SearchConfig(space=tiny_space, time_budget=-1).validate()
    cfg, sp = SearchConfig(space=tiny_space, time_budget=60).resolve()
    assert cfg.iterations is None and cfg.max_epochs == sp.max_epochs  # the plan chooses; a number caps it
    assert SearchConfig(space=tiny_space, time_budget=60, iterations=2).resolve()[0].iterations == 2
    assert SearchConfig(space=tiny_space).resolve()[0].iterations == sp.iterations


def test_the_cost_model_recovers_the_costs_it_is_fitted_to():
    truth = CostModel(overhead=2.0, per_step=0.01, per_gflop=0.1, per_epoch=0.3)
    rng = random.Random(0)
    points = []
    for _ in range(20):
        work, epochs = Work(rng.randint(10, 200), rng.uniform(0.1, 30)), rng.randint(1, 9)
        points.append((work, epochs, truth.trial_seconds(work, epochs) * rng.uniform(0.98, 1.02)))
    fitted = CostModel.fit(points)
    for work, epochs, _ in points:
        assert fitted.trial_seconds(work, epochs) == pytest.approx(truth.trial_seconds(work, epochs), rel=0.05)
    assert fitted.overhead == pytest.approx(2.0, rel=0.2)


def test_the_plan_takes_the_iterations_that_fit_else_a_smaller_max_epochs():
    model, mean = CostModel(1.0, 0.01, 0.1), Work(30, 4.0)
    one = iteration_seconds(model, mean, hyperband_trials(12, 3))
    assert len(hyperband_trials(12, 3)) == 30

    plan = make_plan(10 + 3.5 * one + END_SECONDS, 10, model, mean, 12, lambda m: hyperband_trials(m, 3))
    assert (plan["max_epochs"], plan["iterations"]) == (12, 3)
    assert plan["predicted_seconds"] == pytest.approx(10 + 3 * one + END_SECONDS, abs=0.2)

    plan = make_plan(10 + 0.6 * one + END_SECONDS, 10, model, mean, 12, lambda m: hyperband_trials(m, 3))
    m = plan["max_epochs"]
    assert m < 12 and plan["iterations"] == 1
    assert iteration_seconds(model, mean, hyperband_trials(m, 3)) <= 0.6 * one
    assert iteration_seconds(model, mean, hyperband_trials(m + 1, 3)) > 0.6 * one  # the largest that fits

    kept = make_plan(10 + 0.6 * one + END_SECONDS, 10, model, mean, 12, lambda m: hyperband_trials(m, 3), shrink=False)
    assert (kept["max_epochs"], kept["iterations"]) == (12, 0)  # an extension keeps the run's max_epochs
    assert make_plan(12, 10, model, mean, 12, lambda m: hyperband_trials(m, 3))["iterations"] == 0


def _budgeted_oracle(directory, algorithm, budget, clock):
    oracle = make_oracle(algorithm, objective=kt.Objective("val_accuracy", OBJECTIVES["val_accuracy"]), max_epochs=9,
                         factor=3, hyperband_iterations=None, seed=1, hyperparameters=space())
    oracle._set_project_dir(str(directory), "tuner")
    oracle._display.verbose = 0
    if budget is not None:  # a trial takes as many seconds as it trains epochs, and 1 more
        oracle.deadline = Deadline(budget, lambda: clock[0], lambda v: 1 + v["tuner/epochs"] - v["tuner/initial_epoch"],
                                   lambda: 1.0)
    return oracle


def _run(oracle, clock, most=200):
    """Trials until the oracle stops (or `most`): [(trial id, values)]."""
    out = []
    for _ in range(most):
        trial = oracle.create_trial("tuner0")
        if trial.status != "RUNNING":
            break
        values = trial.hyperparameters.values
        clock[0] += 1 + values["tuner/epochs"] - values["tuner/initial_epoch"]
        score = random.Random(trial.trial_id).random()
        oracle.update_trial(trial.trial_id, {"val_accuracy": score}, step=values["tuner/epochs"])
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
        out.append((trial.trial_id, dict(values)))
    return out


@pytest.mark.parametrize("algorithm", ["hyperband", "bohb", "asha"])
def test_the_deadline_stops_before_a_trial_that_would_end_past_it_and_a_larger_budget_goes_on(tmp_path, algorithm):
    free = _run(_budgeted_oracle(tmp_path / "free", algorithm, None, [0.0]), [0.0], most=60)
    clock = [0.0]
    oracle = _budgeted_oracle(tmp_path / "budgeted", algorithm, 80 + END_SECONDS, clock)
    first = _run(oracle, clock)
    assert first == free[:len(first)] and 0 < len(first) < len(free)
    assert clock[0] <= 80  # every trial started was predicted (here: exactly) to end in time
    refused = free[len(first)][1]
    assert clock[0] + 1 + refused["tuner/epochs"] - refused["tuner/initial_epoch"] > 80
    assert oracle.budget_stop.startswith("the time budget: at 0:01:")

    # A larger budget, in a fresh process: it goes on with the very trial that was refused.
    again = _budgeted_oracle(tmp_path / "budgeted", algorithm, 160 + END_SECONDS, clock)
    again.reload()
    more = _run(again, clock)
    assert first + more == free[:len(first) + len(more)] and len(more) > 0


def test_a_time_budget_plans_stops_says_why_and_extends(tiny_space, tmp_path):
    results = tmp_path / "results"
    short = _search("--space", tiny_space, "--results-dir", str(results), "--name", "short", "--time-budget", "1s")
    assert short.returncode == 2 and short.stderr.strip().splitlines()[-1].startswith(
        "error: time budget 0:00:01 is too short for this space and data:")
    assert not (results / "short" / "run.json").exists()  # nothing ran: no run left behind

    first = _search("--space", tiny_space, "--results-dir", str(results), "--time-budget", "45s")
    assert first.returncode == 0, first.stderr[-3000:]
    run = results / "tiny-digits"
    info = json.loads((run / "run.json").read_text())
    plan = info["plan"]
    assert info["time_budget"] == 45 and info["iterations"] is None and plan["time_budget"] == 45
    assert plan["iterations"] >= 1 and plan["calibration_seconds"] > 0 and len(plan["points"]) == 4
    assert f"plan: {plan['iterations']} iteration" in first.stdout and "of 0:00:45, calibrated in" in first.stdout
    summary = json.loads((run / "summary.json").read_text())
    timed = summary["time_budget"]
    assert timed["budget_seconds"] == 45 and timed["planned_iterations"] == plan["iterations"]
    assert timed["actual_seconds"] == summary["wall_seconds"]
    assert timed["stopped"].startswith("the time budget: at ") and "past the deadline" in timed["stopped"]
    assert f"stopped by {timed['stopped']}" in first.stdout
    report = (run / "report" / "report.md").read_text()
    assert f"max_epochs {plan['max_epochs']}, factor 2, time budget 0:00:45 (" in report
    trials = {p.name: p.read_text() for p in (run / "trials").glob("*.json")}
    # Not `5 x planned iterations`: the plan can be optimistic (docs/BENCHMARKS.md); the deadline holds.
    assert summary["trials"] == len(trials) >= 1

    longer = _search("--space", tiny_space, "--results-dir", str(results), "--time-budget", "75s")
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert f"extending {run} from a time budget of 0:00:45 to 0:01:15 of wall time in all" in longer.stdout
    after = {p.name: p.read_text() for p in (run / "trials").glob("*.json")}
    assert len(after) > len(trials) and all(after[name] == text for name, text in trials.items())
    info = json.loads((run / "run.json").read_text())
    assert info["time_budget"] == 75 and [e["time_budget"] for e in info["extended"]] == [[45, 75]]
    assert json.loads((run / "summary.json").read_text())["trials"] == len(after)
    assert len(json.loads((run / "summary.json").read_text())["anytime"]) == len(after)

    smaller = _search("--space", tiny_space, "--results-dir", str(results), "--time-budget", "50s")
    assert smaller.returncode == 0, smaller.stderr[-3000:]
    assert (f"{run} has a time budget of 0:01:15; --time-budget 0:00:50 does not shrink it: nothing more to do"
            in smaller.stdout)
    assert len(list((run / "trials").glob("*.json"))) == len(after)
    assert math.isclose(json.loads((run / "run.json").read_text())["time_budget"], 75)
