"""The benchmarks measure what they say: every requested step runs, overhead parts add up."""

import json

import numpy as np
import pytest


def test_timed_fit_runs_every_requested_step_past_the_end_of_the_data():
    import keras

    from tuning.bench import _Batches, _prepare, _timed_fit

    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4, 4, 1)).astype("float32")  # 2 batches of 4
    y = rng.integers(0, 3, size=(8,))
    batches = _Batches(x, y, 4)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    _prepare(model, batches, jit=False)
    before = int(model.optimizer.iterations.numpy())
    rate = _timed_fit(model, batches, steps=7)  # more steps than the arrays hold batches
    assert int(model.optimizer.iterations.numpy()) - before == 7
    assert rate > 0


def test_overhead_parts_add_up_to_the_wall_time(finished_run, capsys):
    from tuning.bench import bench_overhead

    result, _, _ = finished_run
    out = bench_overhead(result.run_dir)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    parts = (out["training_and_evaluation_seconds"] + out["checkpoint_seconds"] + out["build_seconds"]
             + out["per_trial_other_seconds"] + out["outside_trials_seconds"])
    assert parts == pytest.approx(summary["wall_seconds"], abs=0.5)
    assert out["overhead_share"] == pytest.approx(1 - summary["fit_share"], abs=0.005)  # both rounded
    assert 0 < out["overhead_share"] < 1
