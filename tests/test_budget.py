"""The budget of a run: a larger --iterations extends a finished run; a smaller one changes nothing."""

import json
import os
import shutil
import subprocess
import sys

from tuning.run.records import record_key

from .test_reliability import ROOT, sequence


def _search(*args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TUNING_FAULTS", "KERAS_BACKEND")}
    return subprocess.run([sys.executable, "-m", "tuning.search", *args, "--recycle-mb", "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_a_larger_budget_extends_a_finished_run_and_a_smaller_one_changes_nothing(finished_run, tiny_space,
                                                                                   tmp_path):
    from tuning.run.opened import open_run

    _, _, results = finished_run
    copy = tmp_path / "results"
    shutil.copytree(results / "tiny-digits", copy / "tiny-digits", ignore=shutil.ignore_patterns("export", ".lock"))
    run = copy / "tiny-digits"
    first = sequence(run)
    before = {r.trial_id: r for r in open_run(run).records.values()}
    assert json.loads((run / "run.json").read_text())["iterations"] == 1 and len(before) == 5

    done = _search("--space", tiny_space, "--results-dir", str(copy), "--iterations", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"extending {run} from 1 to 2 iterations" in done.stdout
    assert "resuming" in done.stdout and "5 of 10 trials already done" in done.stdout
    extended = open_run(run)
    assert len(extended.records) == 10 and all(r.completed for r in extended.records.values())
    assert sequence(run)[:5] == first  # the first iteration's trials, as they were
    for trial_id, old in before.items():
        new = extended.records[trial_id]
        assert (new.score, new.epochs, new.hyperparameters, new.history) == (old.score, old.epochs,
                                                                             old.hyperparameters, old.history)
    new_ids = sorted(set(extended.records) - set(before))
    assert new_ids == [f"{i:04d}" for i in range(5, 10)]
    assert {extended.records[i].bracket for i in new_ids} == {r.bracket for r in before.values()}  # a new iteration
    info = json.loads((run / "run.json").read_text())
    assert info["iterations"] == 2 and [e["iterations"] for e in info["extended"]] == [[1, 2]]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["trials"] == 10 and len(summary["anytime"]) == 10  # the whole run, both sessions
    best = json.loads((run / "best.json").read_text())
    assert best["trial_id"] == min(extended.records.values(), key=record_key).trial_id
    assert "| 0009 |" in (run / "leaderboard.md").read_text()

    smaller = _search("--space", tiny_space, "--results-dir", str(copy), "--iterations", "1")
    assert smaller.returncode == 0, smaller.stderr[-3000:]
    said = [line for line in smaller.stdout.splitlines() if "does not shrink it" in line]
    assert said == [f"{run} has a budget of 2 iterations; --iterations 1 does not shrink it: nothing more to do"]
    assert sorted(p.name for p in (run / "trials").glob("*.json")) == [f"{i:04d}.json" for i in range(10)]
    assert json.loads((run / "run.json").read_text())["iterations"] == 2
    assert json.loads((run / "best.json").read_text())["trial_id"] == best["trial_id"]

    refused = _search("--space", tiny_space, "--results-dir", str(copy), "--iterations", "3", "--max-epochs", "3")
    assert refused.returncode == 2 and "max_epochs 2 (now 3)" in refused.stderr  # the brackets still are the run's
    assert len(refused.stderr.strip().splitlines()) == 1
