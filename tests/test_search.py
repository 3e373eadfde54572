"""End to end: a tiny Hyperband search on digits, its results files, TensorBoard, resume, CLI."""

import csv
import json
import os
import pathlib
import subprocess
import sys

import keras_tuner as kt
import numpy as np
import pytest

from resnet import ResNetSpec
from search_spaces import load_space
from tuning.data.datasets import load_digits
from tuning.engine.hypermodel import ResNetHyperModel

ROOT = pathlib.Path(__file__).resolve().parents[1]


def read_tensorboard(logdir: pathlib.Path):
    from tensorboard.backend.event_processing import event_multiplexer
    from tensorboard.plugins.hparams import metadata
    from tensorboard.util import tensor_util

    mux = event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()

    def scalars(run, tag):
        return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in mux.Tensors(run, tag)]

    sessions, experiment = {}, None
    for run, tags in mux.PluginRunToTagToContent(metadata.PLUGIN_NAME).items():
        if metadata.SESSION_START_INFO_TAG in tags:
            info = metadata.parse_session_start_info_plugin_data(tags[metadata.SESSION_START_INFO_TAG])
            sessions[run] = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                             for k, v in info.hparams.items()}
        if metadata.EXPERIMENT_TAG in tags:
            experiment = metadata.parse_experiment_plugin_data(tags[metadata.EXPERIMENT_TAG])
    return mux, sessions, experiment, scalars


def test_search_writes_every_results_file(finished_run):
    result, lines, _ = finished_run
    run = result.run_dir
    assert (run / "report" / "report.md").exists()  # the search writes its report too
    # keras-tuner's own state lives in a subfolder, so the run can resume.
    assert (run / "tuner" / "oracle.json").exists()
    records = {p.stem: json.loads(p.read_text()) for p in (run / "trials").glob("*.json")}
    # Hyperband max_epochs=2 factor=2: brackets of 2+1 and 2 trials.
    assert len(records) == result.summary["trials"] == result.summary["planned_trials"] == 5
    # The space allows 5 halvings on an 8x8 input: no trial failed or was invalid.
    assert all(r["status"] == "COMPLETED" for r in records.values())
    assert any("fits at most 4" in line for line in lines)

    with open(run / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5
    for col in ("trial_id", "params", "flops", "epochs", "val_accuracy", "seconds", "status", "depth",
                "downsample_at", "block", "optimizer", "learning_rate"):
        assert col in rows[0]
    accs = [float(r["val_accuracy"]) for r in rows]
    assert accs == sorted(accs, reverse=True)
    assert (run / "leaderboard.md").read_text().count("\n| 0") == 5

    best = json.loads((run / "best.json").read_text())
    assert best["val_accuracy"] == pytest.approx(max(accs))
    assert 0.0 <= best["test_accuracy"] <= 1.0
    spec = ResNetSpec.from_dict(best["spec"])
    spec.validate((8, 8, 1))
    assert best["params"] > 0 and best["flops"] > 0 and best["hyperparameters"]["depth"] == spec.depth

    summary = json.loads((run / "summary.json").read_text())
    for key in ("trials", "wall_seconds", "fit_seconds", "best_val_accuracy", "best_test_accuracy", "dataset",
                "seed", "versions"):
        assert key in summary
    assert summary["dataset"] == "digits" and summary["seed"] == 0
    # On TensorFlow (the default backend) compile time is estimated from each fit's first batches.
    assert summary["backend"] == "tensorflow" and json.loads((run / "run.json").read_text())["backend"] == "tensorflow"
    assert all(r["compile_measure"] == "estimated" and 0 <= r["compile_seconds"] <= r["fit_seconds"]
               for r in records.values())
    assert 0 <= summary["compile_share"] < summary["fit_share"]
    assert 0 < summary["fit_seconds"] < summary["wall_seconds"]
    assert summary["best_test_accuracy"] == best["test_accuracy"]
    assert summary["versions"]["keras-tuner"]
    # One progress line per finished trial, and the exact TensorBoard command at the end.
    progress = [line for line in lines if line.startswith("trial ")]
    assert len(progress) == 5 and all("/5 trials" in p and "elapsed" in p and "left" in p for p in progress)
    assert not any(line.startswith("warning") for line in lines)
    assert lines[-1] == f"view the trials: tensorboard --logdir {run / 'tensorboard'}"


def test_tensorboard_one_run_per_configuration(finished_run):
    result, _, _ = finished_run
    run = result.run_dir
    records = [json.loads(p.read_text()) for p in (run / "trials").glob("*.json")]
    configs = {r["run"] for r in records}
    assert len(configs) == sum(r["round"] == 0 for r in records)  # promotions share their run
    mux, sessions, experiment, scalars = read_tensorboard(run / "tensorboard")
    assert set(sessions) == configs
    names = {h.name for h in experiment.hparam_infos}
    assert {"depth", "stages", "downsample_at", "base_filters", "block", "preact", "shortcut", "optimizer",
            "learning_rate", "schedule", "batch_size", "label_smoothing", "bracket"} <= names
    metric_tags = {(m.name.group, m.name.tag) for m in experiment.metric_infos}
    assert {("validation", "epoch_accuracy"), ("", "params"), ("", "flops")} <= metric_tags
    for rec in records:
        hparams = sessions[rec["run"]]
        assert hparams["depth"] == rec["hyperparameters"]["depth"]
        assert hparams["optimizer"] == rec["hyperparameters"]["optimizer"]
        assert "momentum" in hparams if hparams["optimizer"] == "sgd" else "momentum" not in hparams
        assert scalars(rec["run"], "params") == [(0, float(rec["params"]))]
    # A promoted configuration is one continuous curve: epoch 0 from round 0, epoch 1 from round 1.
    promoted = [r for r in records if r["round"] == 1]
    assert promoted
    for rec in promoted:
        steps = [s for s, _ in scalars(f"{rec['run']}/validation", "epoch_accuracy")]
        assert steps == list(range(rec["epochs"]))
        rounds = scalars(rec["run"], "hyperband/round")
        assert rounds == [(0, 0.0), (1, 1.0)]
        lr = scalars(f"{rec['run']}/train", "epoch_learning_rate")
        assert [s for s, _ in lr] == [0, 1]


def test_second_identical_command_does_no_new_work(finished_run, tiny_space):
    import tuning

    result, _, results = finished_run
    run = result.run_dir
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and "tuner" in p.parts}
    best_before = (run / "best.json").read_text()
    lines: list[str] = []
    again = tuning.run_search(space=tiny_space, results_dir=results, seed=0, log=lines.append)
    assert any("resuming" in line and "5 of 5 trials already done" in line for line in lines)
    assert not any(line.startswith("trial ") for line in lines)
    after = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and "tuner" in p.parts}
    assert set(after) == set(before)
    assert (run / "best.json").read_text() == best_before  # test split not evaluated again
    assert again.summary["trials"] == 5 and again.best == result.best


def test_same_seed_same_sequence_of_trials(finished_run, tiny_space, tmp_path):
    import tuning

    result, _, _ = finished_run
    other = tuning.run_search(space=tiny_space, results_dir=tmp_path, seed=0, log=lambda s: None)

    def sequence(run_dir):
        recs = sorted((json.loads(p.read_text()) for p in (run_dir / "trials").glob("*.json")),
                      key=lambda r: r["trial_id"])
        return [(r["trial_id"], r["bracket"], r["round"], r["parent"], r["hyperparameters"]) for r in recs]

    assert sequence(other.run_dir) == sequence(result.run_dir)


def test_hypermodel_builds_with_default_and_fixed_hyperparameters():
    data = load_digits(0)
    space = load_space("small")
    hm = ResNetHyperModel(space, data)
    model = hm.build(kt.HyperParameters())
    assert model.output_shape == (None, 10)
    assert model.layers[1].name == "normalize"  # takes raw 0-16 pixel values
    hp = kt.HyperParameters()
    hp.Fixed("depth", 6)
    hp.Fixed("block", "bottleneck")
    hp.Fixed("optimizer", "adam")
    model = hm.build(hp)
    spec, cfg = hm.resolve(hp)
    assert spec.depth == 6 and spec.block == "bottleneck" and cfg.optimizer == "adam"
    assert any(layer.name.endswith("_conv3") for layer in model.layers)
    assert type(model.optimizer).__name__ == "Adam"
    # Hyperband's epochs / initial_epoch pass through fit.
    history = hm.fit(hp, model, epochs=2, initial_epoch=1)
    assert history.epoch == [1]
    assert np.isfinite(history.history["val_loss"][0])
    with pytest.raises(TypeError, match="own data"):
        hm.fit(hp, model, x=np.zeros((1, 8, 8, 1)))


def run_cli(*args, env=None, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "tuning.search", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd or ROOT, timeout=timeout)


def test_cli_help_and_list_spaces():
    out = run_cli("--help")
    assert out.returncode == 0
    for opt in ("--space", "--dataset", "--max-epochs", "--factor", "--iterations", "--results-dir", "--name",
                "--seed", "--overwrite", "--verbose", "--list-spaces"):
        assert opt in out.stdout
    out = run_cli("--list-spaces")
    assert out.returncode == 0
    names = [line.split()[0] for line in out.stdout.strip().splitlines()]
    assert {"small", "cifar", "imagenet"} <= set(names)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--space", "nope"], "unknown space 'nope'"),
        (["--max-epochs", "0"], "max_epochs = 0"),
        (["--factor", "1"], "factor = 1"),
        (["--seed", "-3"], "seed = -3"),
        (["--space", "imagenet"], "no default dataset"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    out = run_cli(*args, "--results-dir", str(tmp_path / "r"))
    assert out.returncode == 2
    assert needle in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_offline_keras_dataset_that_is_not_cached(tmp_path):
    dead = "http://127.0.0.1:9"  # nothing listens there: every download fails at once
    env = {"KERAS_HOME": str(tmp_path / "keras"), "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "http_proxy": dead,
           "https_proxy": dead, "NO_PROXY": "", "no_proxy": ""}
    out = run_cli("--dataset", "cifar10", "--results-dir", str(tmp_path / "r"), env=env)
    assert out.returncode == 2, out.stderr[-2000:]
    err = out.stderr.strip()
    assert len(err.splitlines()) == 1
    assert "cifar10 is not cached" in err
    assert str(tmp_path / "keras" / "datasets") in err and "cifar-10-batches-py-target_archive" in err
    assert not (tmp_path / "r" / "small-cifar10").exists()
