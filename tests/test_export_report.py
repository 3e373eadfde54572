"""Export (model.keras, SavedModel, TFLite, model card) and the report, from a finished search."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

FRESH = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, keras, tensorflow as tf
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    export, seed = sys.argv[1], int(sys.argv[2])
    # Rebuild the recorded test split from the card's recipe, without this project.
    d = load_digits()
    x, y = d.images[..., None].astype("float32"), d.target
    _, x_test, _, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
    model = keras.saving.load_model(os.path.join(export, "model.keras"), safe_mode=True)
    probs = model.predict(x_test, verbose=0)
    served = tf.saved_model.load(os.path.join(export, "savedmodel"))
    signature = served.signatures["serving_default"]
    out = list(signature(image=tf.constant(x_test)).values())[0].numpy()
    mine = [m for m in sys.modules if m.split(".")[0] in ("resnet", "tuning", "search_spaces")]
    np.save(os.path.join(sys.argv[3], "probs.npy"), probs)
    print(json.dumps({"accuracy": float(np.mean(probs.argmax(1) == y_test)), "project_modules": mine,
                      "served_max_diff": float(np.abs(out - probs).max())}))
    """
)


def run_module(module, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


@pytest.fixture(scope="module")
def run_copy(finished_run, tmp_path_factory):
    """A private copy of the finished run, so export tests may write into it."""
    result, _, _ = finished_run
    dst = tmp_path_factory.mktemp("exportrun") / result.run_dir.name
    shutil.copytree(result.run_dir, dst)
    return dst


def test_export_loads_in_fresh_process_and_scores_the_card(run_copy, tmp_path):
    from tuning.export import export

    res = export(run_copy, formats=("keras", "savedmodel", "tflite"), command="test", log=lambda s: None)
    out = res.output
    assert out == run_copy / "export"
    for name in ("model.keras", "savedmodel/saved_model.pb", "model.tflite", "model_card.json", "MODEL_CARD.md"):
        assert (out / name).exists(), name
    card = json.loads((out / "model_card.json").read_text())
    best = json.loads((run_copy / "best.json").read_text())
    assert card["trial_id"] == best["trial_id"]
    for key in ("spec", "hyperparameters", "params", "flops", "input", "class_names", "val_accuracy",
                "test_accuracy", "dataset", "split_seed", "split", "versions", "created", "command"):
        assert key in card, key
    assert card["input"]["shape"] == [None, 8, 8, 1] and card["input"]["dtype"] == "float32"
    assert card["input"]["value_range"] == [0.0, 16.0]
    assert card["class_names"] == [str(i) for i in range(10)]
    assert card["test_accuracy"] == pytest.approx(best["test_accuracy"], abs=1e-6)  # predicts as in the search

    script = tmp_path / "fresh.py"
    script.write_text(FRESH)
    proc = subprocess.run([sys.executable, str(script), str(out), str(card["split_seed"]), str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["project_modules"] == []
    assert info["accuracy"] == card["test_accuracy"]  # exactly the card's figure
    assert info["served_max_diff"] < 1e-5              # the SavedModel serves raw images

    # The same predictions in this process, and through TFLite.
    import keras
    import tensorflow as tf

    from tuning.data.datasets import load_digits

    data = load_digits(card["split_seed"])
    model = keras.saving.load_model(out / "model.keras", safe_mode=True)
    here = model.predict(data.x_test, verbose=0)
    np.testing.assert_array_equal(np.load(tmp_path / "probs.npy"), here)
    interp = tf.lite.Interpreter(model_path=str(out / "model.tflite"))
    interp.allocate_tensors()
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.set_tensor(inp["index"], data.x_test[:1])
    interp.invoke()
    np.testing.assert_allclose(interp.get_tensor(outp["index"]), here[:1], atol=1e-5)


def test_export_cli_other_trial_overwrite_and_retrain(run_copy):
    from tuning.run.folder import RunFolder

    folder = RunFolder(run_copy)
    records = folder.records().values()
    best = folder.read("best.json")
    # The search keeps only the checkpoints Hyperband may still use, and the best one.
    kept = [r.trial_id for r in records if (run_copy / "tuner" / f"trial_{r.trial_id}" / "checkpoint.npz").exists()]
    assert kept == [best["trial_id"]]
    other = next(r.trial_id for r in records if r.trial_id != best["trial_id"])
    target = run_copy / "export_other"
    proc = run_module("tuning.export", str(run_copy), "--trial", other, "--output", str(target))
    assert proc.returncode == 2 and "--retrain" in proc.stderr and not target.exists()
    proc = run_module("tuning.export", str(run_copy), "--trial", other, "--retrain", "--output", str(target))
    assert proc.returncode == 0, proc.stderr[-2000:]
    card = json.loads((target / "model_card.json").read_text())
    assert card["trial_id"] == other and "tuning.export" in card["command"]
    assert card["retrain"]["epochs"] == 2 and card["retrain"]["data"] == "train + validation"
    assert card["test_accuracy_before_retrain"] is None
    assert (target / "savedmodel").is_dir() and not (target / "model.tflite").exists()

    # An existing export is replaced only with --overwrite.
    before = (target / "model_card.json").read_text()
    proc = run_module("tuning.export", str(run_copy), "--output", str(target), "--retrain")
    assert proc.returncode == 2 and "--overwrite" in proc.stderr
    assert (target / "model_card.json").read_text() == before
    proc = run_module("tuning.export", str(run_copy), "--output", str(target), "--retrain", "--overwrite",
                      "--format", "keras")
    assert proc.returncode == 0, proc.stderr[-2000:]
    card = json.loads((target / "model_card.json").read_text())
    assert card["trial_id"] == best["trial_id"]
    assert card["test_accuracy_before_retrain"] == pytest.approx(best["test_accuracy"], abs=1e-6)
    assert 0 <= card["test_accuracy"] <= 1
    assert not (target / "savedmodel").exists()
    assert not list(run_copy.glob(".export_other*"))  # no temporary folders left behind


def test_export_bad_input(run_copy, tmp_path):
    cases = []
    proc = run_module("tuning.export", str(tmp_path / "missing"))
    cases.append((proc, "does not exist"))
    empty = tmp_path / "empty-run"
    empty.mkdir()
    (empty / "run.json").write_text(json.dumps({"space": "small", "dataset": "digits"}))
    cases.append((run_module("tuning.export", str(empty)), "no completed trial"))
    cases.append((run_module("tuning.export", str(run_copy), "--trial", "9999"), "unknown trial id '9999'"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cases.append((run_module("tuning.export", str(run_copy), "--output", str(blocker / "export")),
                  "not writable"))
    for proc, needle in cases:
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert "Traceback" not in proc.stderr
    assert list(empty.iterdir()) == [empty / "run.json"]
    assert blocker.read_text() == "not a folder"


def test_report_files_are_valid_pngs(run_copy):
    from PIL import Image

    proc = run_module("tuning.report", str(run_copy))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = run_copy / "report"
    for name in ("curves.png", "pareto.png", "hyperparameters.png"):
        with Image.open(out / name) as img:
            assert img.format == "PNG"
            assert img.size[0] >= 600 and img.size[1] >= 400
    md = (out / "report.md").read_text()
    for needle in ("# Search report", "![curves](curves.png)", "![pareto](pareto.png)",
                   "![hyperparameters](hyperparameters.png)", "## Leaderboard", "best validation accuracy"):
        assert needle in md
    assert (out / "report.html").read_text().startswith("<!doctype html>")


def test_pareto_front():
    from tuning.report.single import pareto_front

    pts = [(10, 0.5), (5, 0.6), (20, 0.9), (7, 0.55), (30, 0.8)]
    assert sorted(pareto_front(pts)) == [1, 2]
    losses = [(10, 0.5), (5, 0.6), (20, 0.2), (7, 0.55), (30, 0.3)]  # an objective to minimise
    assert sorted(pareto_front(losses, maximize=False)) == [0, 1, 2, 3]  # all but the costly 0.3


def test_report_bad_input(tmp_path):
    proc = run_module("tuning.report", str(tmp_path / "nothing"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr
