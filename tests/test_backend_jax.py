"""The search on the JAX backend in an environment where TensorFlow cannot be imported: search,
TensorBoard, kill -9 and resume, report and export; and how the backend is chosen and checked."""

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from .conftest import without_tensorflow
from .test_reliability import ROOT, sequence, wait_for
from .test_search import read_tensorboard


def jax_cli(env, *args, module="tuning.search", **kw):
    """`python -m module args` in the TensorFlow-less JAX environment `env`."""
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def jax_run_cli(env, *args, module="tuning.search", timeout=600):
    proc = jax_cli(env, *args, module=module)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def jax_env(tmp_path_factory):
    env = without_tensorflow(tmp_path_factory.mktemp("no_tf"))
    env.pop("TUNING_FAULTS", None)
    return env


@pytest.fixture(scope="module")
def jax_run(jax_env, tiny_space, tmp_path_factory):
    """(run folder, stdout) of a finished tiny search on JAX without TensorFlow, its stdout a pipe,
    showing the progress of every epoch."""
    results = tmp_path_factory.mktemp("jax_results")
    code, out, err = jax_run_cli({**jax_env, "TUNING_PROGRESS_AFTER": "0"}, "--space", tiny_space, "--results-dir",
                                 str(results), "--backend", "jax")
    assert code == 0, err[-3000:]
    return results / "tiny-digits", out


def test_search_on_jax_without_tensorflow(jax_run):
    run, out = jax_run
    assert "5 trials on CPU, jax" in out and "on jax)" in out
    records = {p.stem: json.loads(p.read_text()) for p in (run / "trials").glob("*.json")}
    assert len(records) == 5 and all(r["status"] == "COMPLETED" for r in records.values())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["backend"] == "jax" and summary["devices"]["backend"] == "jax"
    assert json.loads((run / "run.json").read_text())["backend"] == "jax"
    assert summary["versions"]["jax"] != "not installed"
    # Compile time is measured per trial, and a promoted configuration loads its compiled steps
    # from the run's persistent compilation cache instead of compiling them again.
    assert all(r["compile_measure"] == "measured" and 0 < r["compile_seconds"] <= r["fit_seconds"]
               for r in records.values())
    assert 0 < summary["compile_seconds"] and 0 < summary["compile_share"] < 1
    promoted = [r for r in records.values() if r["parent"]]
    assert promoted and all(r["compile_seconds"] < records[r["parent"]]["compile_seconds"] for r in promoted)
    assert any((run / "compile_cache").iterdir())
    # TensorBoard: HParams of every configuration, per-epoch curves, compile seconds.
    _, sessions, experiment, scalars = read_tensorboard(run / "tensorboard")
    assert set(sessions) == {r["run"] for r in records.values()}
    assert {"depth", "optimizer", "learning_rate", "batch_size"} <= {h.name for h in experiment.hparam_infos}
    epochs = {}  # a configuration's run holds the epochs of all its rounds
    for r in records.values():
        epochs[r["run"]] = max(epochs.get(r["run"], 0), r["epochs"])
        assert sessions[r["run"]]["depth"] == r["hyperparameters"]["depth"]
        assert scalars(r["run"], "compile_seconds")
    for name, n in epochs.items():
        assert [s for s, _ in scalars(f"{name}/validation", "epoch_accuracy")] == list(range(n))
    report = (run / "report" / "report.md").read_text()
    assert "| Keras backend | jax |" in report and "measured" in report
    # Progress inside trials, off a terminal: one plain line per epoch trained, numbered as Hyperband
    # counts them (a promoted trial goes on from its parent's epochs), and no event line.
    shown = re.findall(r"^  trial (\d{4}) epoch (\d+)/(\d+): [\d,]+ images/s, trial ~[\d:]+ left, search ~[\d:]+ "
                       r"left$", out, re.M)
    trained = [(r["trial_id"], str(e), str(r["epochs"])) for r in records.values()
               for e in range(r["initial_epoch"] + 1, r["epochs"] + 1)]
    assert sorted(shown) == sorted(trained) and any(r["initial_epoch"] for r in records.values())
    assert "\x1e" not in out


def test_kill_9_and_resume_on_jax_matches_uninterrupted(jax_run, jax_env, tiny_space, tmp_path):
    uninterrupted, _ = jax_run
    results = tmp_path / "results"
    args = ["--space", tiny_space, "--results-dir", str(results), "--backend", "jax"]
    run = results / "tiny-digits"
    first = jax_cli({**jax_env, "TUNING_FAULTS": json.dumps({"0003": "hang@0"})}, *args)
    wait_for(run / "tuner" / "trial_0003" / "resume.json", first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    code, out, err = jax_run_cli(jax_env, *args)
    assert code == 0, err[-3000:]
    assert "resuming" in out
    assert json.loads((run / "trials" / "0003.json").read_text())["resumed_from_epoch"] == 1
    assert sequence(run) == sequence(uninterrupted)
    scores = {p.stem: json.loads(p.read_text())["val_accuracy"] for p in (run / "trials").glob("*.json")}
    expected = {p.stem: json.loads(p.read_text())["val_accuracy"] for p in (uninterrupted / "trials").glob("*.json")}
    assert scores == pytest.approx(expected, abs=1e-6)
    # TensorFlow asked for where it cannot be imported: one line, exit 2.
    code, _, err = jax_run_cli({**jax_env, "KERAS_BACKEND": "tensorflow"}, *args[:-2])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "the tensorflow backend is not installed here" in err


def test_export_on_jax_without_tensorflow(jax_run, jax_env, tmp_path):
    run, _ = jax_run
    out = tmp_path / "export"
    code, stdout, err = jax_run_cli(jax_env, str(run), "--output", str(out), module="tuning.export")
    assert code == 0, err[-3000:]
    assert "no SavedModel" in stdout
    card = json.loads((out / "model_card.json").read_text())
    assert card["backend"] == card["export_backend"] == "jax" and set(card["files"]) == {"keras"}
    assert not (out / "savedmodel").exists()
    # TensorFlow's formats, asked for by name, are refused in one line, and nothing is written.
    refused = tmp_path / "refused"
    code, _, err = jax_run_cli(jax_env, str(run), "--output", str(refused), "--format", "savedmodel",
                               module="tuning.export")
    assert code == 2 and "needs TensorFlow" in err and len(err.strip().splitlines()) == 1
    assert not refused.exists()
    # The .keras file from JAX loads and predicts on TensorFlow, in a fresh process.
    script = ("import json, sys, keras, numpy as np\n"
              "from tuning.data.datasets import load_digits\n"
              "m = keras.saving.load_model(sys.argv[1], safe_mode=True)\n"
              "d = load_digits(0)\n"
              "print(json.dumps([keras.backend.backend(), float(np.mean(np.argmax(m.predict(d.x_test, verbose=0), 1)"
              " == d.y_test))]))\n")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", script, str(out / "model.keras")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    backend, accuracy = json.loads(done.stdout.strip().splitlines()[-1])
    assert backend == "tensorflow" and accuracy == pytest.approx(card["test_accuracy"], abs=0.01)


def test_data_parallel_on_two_jax_devices(jax_env, tiny_space, tmp_path):
    env = {**jax_env, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    code, out, err = jax_run_cli(env, "--space", tiny_space, "--results-dir", str(tmp_path), "--max-epochs", "1",
                                 "--strategy", "data-parallel", "--recycle-mb", "0")
    assert code == 0, err[-3000:]
    assert "data-parallel over 2 replica(s)" in out
    summary = json.loads((tmp_path / "tiny-digits" / "summary.json").read_text())
    assert summary["replicas"] == 2 and summary["completed_trials"] == summary["trials"] == 1
    code, _, err = jax_run_cli(env, "--space", tiny_space, "--results-dir", str(tmp_path / "x"), "--strategy",
                               "mirrored", "--backend", "jax")
    assert code == 2 and "use --strategy data-parallel" in err and not (tmp_path / "x").exists()


def test_an_objective_and_class_weights_on_jax(jax_env, tiny_space, tmp_path):
    """Per-image class weights through the pipeline and the class-averaged metrics, on JAX."""
    code, out, err = jax_run_cli(jax_env, "--space", tiny_space, "--results-dir", str(tmp_path), "--max-epochs", "1",
                                 "--objective", "val_loss", "--class-weight", "balanced", "--recycle-mb", "0")
    assert code == 0, err[-3000:]
    assert "selecting on val_loss, classes weighted balanced" in out
    run = tmp_path / "tiny-digits"
    (record,) = [json.loads(p.read_text()) for p in (run / "trials").glob("*.json")]
    assert record["objective"] == "val_loss" and record["score"] == record["metrics"]["val_loss"]
    assert 0 < record["metrics"]["val_balanced_accuracy"] <= 1 and 0 < record["metrics"]["val_macro_f1"] <= 1
    best = json.loads((run / "best.json").read_text())
    assert best["objective"] == "val_loss" and best["test_loss"] > 0 and len(best["per_class"]) == 10


def test_chief_and_two_workers_on_jax(jax_env, tiny_space, tmp_path):
    code, out, err = jax_run_cli(jax_env, "--space", tiny_space, "--results-dir", str(tmp_path), "--workers", "2",
                                 "--backend", "jax")
    assert code == 0, (out + err)[-3000:]
    assert "[worker0] worker on CPU, jax" in out and "[worker1] worker on CPU, jax" in out
    summary = json.loads((tmp_path / "tiny-digits" / "summary.json").read_text())
    assert summary["backend"] == "jax" and summary["completed_trials"] == summary["trials"] == 5


def test_a_run_resumes_only_on_its_backend(finished_run, tiny_space):
    _, _, results = finished_run  # searched on TensorFlow
    before = {p: p.stat().st_mtime_ns for p in (results / "tiny-digits").rglob("*") if p.is_file()}
    done = subprocess.run([sys.executable, "-m", "tuning.search", "--space", tiny_space, "--results-dir",
                           str(results), "--backend", "jax"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "backend 'tensorflow' (now 'jax')" in done.stderr
    assert {p: p.stat().st_mtime_ns for p in (results / "tiny-digits").rglob("*") if p.is_file()} == before


def test_backend_choice_follows_keras(monkeypatch, tmp_path):
    from tuning import runtime as backend
    from tuning.config import SearchConfig
    from tuning.errors import UsageError

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert backend.configured() == "tensorflow"
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "jax"}))
    assert backend.configured() == "jax"
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert backend.configured() == "tensorflow"
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    with pytest.raises(UsageError, match="'torch' is not supported: choose tensorflow or jax"):
        SearchConfig(results_dir=str(tmp_path)).resolve()
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert SearchConfig(results_dir=str(tmp_path)).resolve()[0].backend == "tensorflow"
    assert SearchConfig(results_dir=str(tmp_path), backend="jax").resolve()[0].backend == "jax"
    monkeypatch.setattr(backend, "installed", lambda name: name != "jax")
    with pytest.raises(UsageError, match=r"jax backend is not installed here; install it with pip install "):
        SearchConfig(results_dir=str(tmp_path), backend="jax").resolve()
