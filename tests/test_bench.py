"""The benchmarks measure what they say: every requested step runs, overhead parts add up."""

import json

import numpy as np
import pytest


def test_timed_fit_runs_every_requested_step_past_the_end_of_the_data():
    import keras

    from tuning.bench.models import RepeatedBatches, compile_and_warm, timed_fit

    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4, 4, 1)).astype("float32")  # 2 batches of 4
    y = rng.integers(0, 3, size=(8,))
    batches = RepeatedBatches(x, y, 4)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    compile_and_warm(model, batches, jit=False)
    before = int(model.optimizer.iterations.numpy())
    rate = timed_fit(model, batches, steps=7)  # more steps than the arrays hold batches
    assert int(model.optimizer.iterations.numpy()) - before == 7
    assert rate > 0


def test_overhead_parts_add_up_to_the_wall_time(finished_run, capsys):
    from tuning.bench.search import bench_overhead

    result, _, _ = finished_run
    out = bench_overhead(result.run_dir)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    parts = (out["training_and_evaluation_seconds"] + out["checkpoint_seconds"] + out["build_seconds"]
             + out["per_trial_other_seconds"] + out["outside_trials_seconds"])
    assert parts == pytest.approx(summary["wall_seconds"], abs=0.5)
    # Both rounded: the shares to 0.001, and overhead_share comes from fit and wall seconds rounded
    # to 0.1 s, which on a run of a few seconds moves it by up to about 0.1 s / wall.
    rounding = 0.001 + 0.1 / summary["wall_seconds"]
    assert out["overhead_share"] == pytest.approx(1 - summary["fit_share"], abs=rounding)
    assert 0 < out["overhead_share"] < 1
    assert [t["trial_id"] for t in out["trials"]] == sorted(json.loads(p.read_text())["trial_id"]
                                                          for p in (result.run_dir / "trials").glob("*.json"))


def fake_run(folder, trials, wall, test_eval=1.0):
    """A finished run folder written with the store's own writers: `trials` as
    (trial_id, initial_epoch, epochs, seconds, fit, build, checkpoint, epoch_seconds)."""
    from tuning.run.folder import RunFolder
    from tuning.run.records import TrialRecord

    run = RunFolder(folder)
    run.write("run.json", {"space": "small", "dataset": "digits", "seed": 0})
    records = []
    for tid, start, epochs, seconds, fit, build, ckpt, epoch_seconds in trials:
        records.append(TrialRecord(tid, run=f"trial_{tid}", initial_epoch=start, epochs=epochs, status="COMPLETED",
                                   val_accuracy=0.5, seconds=seconds, fit_seconds=fit, build_seconds=build,
                                   checkpoint_seconds=ckpt, epoch_seconds=epoch_seconds))
        run.save_record(records[-1])
    fit_total = sum(r.fit_seconds for r in records) + test_eval
    run.write("summary.json", {"wall_seconds": wall, "fit_seconds": fit_total, "fit_share": fit_total / wall})
    run.write_leaderboard(records)
    return run.path


def test_overhead_of_several_runs_per_trial_totals_and_medians(tmp_path, capsys):
    from tuning.bench.search import OVERHEAD_TOTALS, bench_overheads

    a = fake_run(tmp_path / "a", [("0000", 0, 2, 10.0, 6.0, 1.0, 0.5, [4.0, 2.0]),
                                  ("0001", 2, 6, 20.0, 14.0, 2.0, 1.0, [5.0, 3.0, 3.0, 3.0])], wall=40.0)
    b = fake_run(tmp_path / "b", [("0000", 0, 1, 5.0, 3.0, 0.5, 0.5, [3.0])], wall=10.0, test_eval=0.5)
    c = fake_run(tmp_path / "c", [("0000", 0, 3, 30.0, 20.0, 2.0, 2.0, [8.0, 6.0, 6.0])], wall=50.0)
    out = bench_overheads([a, b, c])
    text = capsys.readouterr().out

    first = out["runs"][0]
    assert first["run_dir"] == str(a)
    assert first["trials"] == [
        {"trial_id": "0000", "epochs_trained": 2, "seconds": 10.0, "fit_seconds": 6.0, "build_seconds": 1.0,
         "checkpoint_seconds": 0.5, "other_seconds": 2.5},
        {"trial_id": "0001", "epochs_trained": 4, "seconds": 20.0, "fit_seconds": 14.0, "build_seconds": 2.0,
         "checkpoint_seconds": 1.0, "other_seconds": 3.0}]
    assert first["training_and_evaluation_seconds"] == 21.0 and first["per_trial_other_seconds"] == 5.5
    assert first["outside_trials_seconds"] == 9.0 and first["overhead_share"] == round(1 - 21 / 40, 3)
    # Tracing: the mean excess of a first epoch over the median later one (2.0 and 2.0), times 2 trials.
    assert first["of_which_first_epoch_tracing_seconds_est"] == 4.0
    for run in out["runs"]:
        parts = (run["training_and_evaluation_seconds"] + run["checkpoint_seconds"] + run["build_seconds"]
                 + run["per_trial_other_seconds"] + run["outside_trials_seconds"])
        assert parts == pytest.approx(run["wall_seconds"])
    assert set(out["median"]) == set(OVERHEAD_TOTALS)
    assert out["median"]["wall_seconds"] == 40.0
    shares = sorted(r["overhead_share"] for r in out["runs"])
    assert out["median"]["overhead_share"] == shares[1]
    lines = text.splitlines()
    assert lines[0] == f"{a}: 2 trials"
    assert lines[2].split() == ["0000", "2", "10.00", "6.00", "1.00", "0.50", "2.50"]
    assert lines[3].split() == ["0001", "4", "20.00", "14.00", "2.00", "1.00", "3.00"]
    assert any(line.startswith("median over 3 runs") for line in lines)
    assert bench_overheads([b]).keys() == {"runs"}  # one run: no median


def test_overhead_cli_takes_several_runs_and_writes_all_as_json(tmp_path, capsys):
    from tuning.bench.__main__ import main

    a = fake_run(tmp_path / "a", [("0000", 0, 2, 10.0, 6.0, 1.0, 0.5, [4.0, 2.0])], wall=20.0)
    b = fake_run(tmp_path / "b", [("0000", 0, 2, 12.0, 7.0, 1.0, 0.5, [4.0, 2.0])], wall=24.0)
    out = tmp_path / "overhead.json"
    assert main(["overhead", str(a), str(b), "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["benchmark"] == "overhead" and "machine" in figures
    assert [r["run_dir"] for r in figures["runs"]] == [str(a), str(b)]
    assert figures["runs"][1]["trials"][0]["other_seconds"] == 3.5
    assert figures["median"]["wall_seconds"] == 22.0
    capsys.readouterr()
    assert main(["overhead", str(a), str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
