"""Searching for the metric the user needs: the objectives, exact class-averaged metrics, class
weights for imbalanced classes, per-class results, and exports within limits."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tuning.config import OBJECTIVES, SearchConfig
from tuning.errors import UsageError
from tuning.search.session import class_lines

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "run-9c47662" / "tiny.toml"  # 5 trials of 1-2 epochs on 8x8 images


def test_class_averaged_metrics_are_scikit_learns_over_the_whole_split():
    """Accumulated batch by batch, exactly scikit-learn's balanced accuracy and macro F1 of the
    same predictions, with a class that is never true and one that is never predicted."""
    import keras
    from sklearn.metrics import balanced_accuracy_score, f1_score, precision_recall_fscore_support

    from tuning.engine.metrics import class_averaged_metrics, split_results

    rng = np.random.default_rng(0)
    k = 6
    labels = rng.integers(0, k, 333)
    labels[labels == 5] = 4  # class 5 never true
    probs = rng.dirichlet(np.ones(k), 333)
    probs[:, 3] = 0.0  # class 3 never predicted
    probs[labels == 1, 1] += 0.5  # some skill on one class
    balanced, macro_f1 = class_averaged_metrics(k)
    for start in range(0, 333, 50):  # batches, the last one short
        y = np.eye(k)[labels[start:start + 50]]
        balanced.update_state(y, probs[start:start + 50])
        macro_f1.update_state(y, probs[start:start + 50])
    predicted = probs.argmax(axis=1)
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):  # class 5: predicted, never true
        expected = balanced_accuracy_score(labels, predicted)
    assert float(balanced.result()) == pytest.approx(expected, abs=1e-6)
    assert float(macro_f1.result()) == pytest.approx(f1_score(labels, predicted, average="macro", zero_division=0),
                                                     abs=1e-6)
    balanced.reset_state()
    assert float(balanced.result()) == 0.0

    names = [f"c{i}" for i in range(k)]
    results = split_results(labels, probs, names, label_smoothing=0.1)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=range(k),
                                                                     zero_division=0)
    assert [results["per_class"][n]["recall"] for n in names] == pytest.approx(recall)
    assert [results["per_class"][n]["precision"] for n in names] == pytest.approx(precision)
    assert [results["per_class"][n]["support"] for n in names] == support.tolist()
    assert np.trace(results["confusion_matrix"]) == (predicted == labels).sum()
    assert results["balanced_accuracy"] == pytest.approx(expected)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(np.eye(k)[labels], probs)
    assert results["loss"] == pytest.approx(float(loss), rel=1e-5)


def test_objective_names_directions_and_the_space_default(tmp_path):
    assert OBJECTIVES == {"val_accuracy": "max", "val_loss": "min", "val_balanced_accuracy": "max",
                          "val_macro_f1": "max"}
    with pytest.raises(UsageError, match="objective = 'val_f1' is invalid: choose from val_accuracy, val_loss, "
                                         "val_balanced_accuracy, val_macro_f1"):
        SearchConfig(space=str(TINY), objective="val_f1").resolve()
    assert SearchConfig(space=str(TINY)).resolve()[0].objective == "val_accuracy"
    space = tmp_path / "mine.toml"
    space.write_text(TINY.read_text().replace('dataset = "digits"', 'dataset = "digits"\nobjective = "val_macro_f1"'))
    assert SearchConfig(space=str(space)).resolve()[0].objective == "val_macro_f1"
    assert SearchConfig(space=str(space), objective="val_loss").resolve()[0].objective == "val_loss"
    space.write_text(TINY.read_text().replace('dataset = "digits"', 'dataset = "digits"\nobjective = "f1"'))
    with pytest.raises(UsageError, match=r"\[defaults\] objective = 'f1' is invalid"):
        SearchConfig(space=str(space)).resolve()
    with pytest.raises(UsageError, match="class_weight = 'inverse' is invalid"):
        SearchConfig(space=str(TINY), class_weight="inverse").resolve()
    done = subprocess.run([sys.executable, "-m", "tuning.search", "--objective", "val_f1"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "val_balanced_accuracy" in done.stderr and "val_macro_f1" in done.stderr


def test_balanced_class_weights_weigh_each_training_image_by_its_class():
    from sklearn.utils.class_weight import compute_class_weight

    from tuning.data.datasets import load_digits

    data = load_digits(0)
    keep = np.flatnonzero((data.y_train < 3) & ((data.y_train != 2) | (np.arange(len(data.y_train)) % 5 == 0)))
    data.x_train, data.y_train = data.x_train[keep], data.y_train[keep]
    data.class_names = ["0", "1", "2"]
    weights = data.balanced_class_weights()
    assert weights == pytest.approx(compute_class_weight("balanced", classes=np.arange(3), y=data.y_train))
    assert weights[2] > 3 * weights[0]  # the rare class weighs more
    batches, steps = data.training_pipeline("train", 32, seed=0, initial_epoch=0, epochs=1, class_weights=weights)
    seen = [batches[i] for i in range(steps)]
    assert all(len(b) == 3 for b in seen)
    for x, y, w in seen:
        assert w == pytest.approx(weights[y.argmax(axis=1)])
    total = sum(w.sum() for _, _, w in seen)
    assert total == pytest.approx(len(data.y_train), rel=1e-5)  # each class weighs the same in all
    plain, _ = data.training_pipeline("train", 32, seed=0, initial_epoch=0, epochs=1)
    assert len(plain[0]) == 2


def test_imbalanced_classes_are_said_with_what_suits_them():
    counts = {"train": [300, 30, 100], "validation": [100, 10, 30], "test": [100, 10, 30]}
    lines = class_lines(["a", "b", "c"], counts, "val_accuracy", None)
    assert lines[0] == "images per class (train/validation/test): a 300/100/100, b 30/10/10, c 100/30/30"
    assert lines[1].startswith("note: the training classes are imbalanced (largest a 300 images, smallest b 30: 10.0x)")
    assert "--objective val_balanced_accuracy and --class-weight balanced (now: --objective val_accuracy)" in lines[1]
    chosen = class_lines(["a", "b", "c"], counts, "val_macro_f1", "balanced")[1]
    assert chosen.endswith("the large classes: this search counts every class the same (--objective val_macro_f1, "
                           "--class-weight balanced)")
    assert "(now: --objective val_macro_f1)" in class_lines(["a", "b", "c"], counts, "val_macro_f1", None)[1]
    assert len(class_lines(["a", "b"], {k: [10, 29] for k in counts}, "val_accuracy", None)) == 1  # under 3x
    many = class_lines([f"k{i}" for i in range(12)], {k: list(range(10, 22)) for k in counts}, "val_loss", None)
    assert many == ["images per class, 12 classes: train 10 (k0) to 21 (k11); validation 10 (k0) to 21 (k11); "
                    "test 10 (k0) to 21 (k11)"]


def _imbalanced_folder(root: pathlib.Path) -> pathlib.Path:
    """Digits 0 and 1, every image; digit 2, one in five: a 5x imbalance, as 8x8 PNGs."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for label in (0, 1, 2):
        idx = np.flatnonzero(digits.target == label)[::5 if label == 2 else 1]
        (root / f"d{label}").mkdir(parents=True)
        for i in idx:
            Image.fromarray((digits.images[i] * 15.9).astype("uint8"), mode="L").save(root / f"d{label}" / f"{i}.png")
    return root


def _command(*args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TUNING_FAULTS", "KERAS_BACKEND")}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_a_search_for_macro_f1_with_balanced_weights_on_an_imbalanced_folder(tmp_path):
    from tuning.run.opened import open_run

    from .test_tensorboard_log import read_back

    folder = _imbalanced_folder(tmp_path / "images")
    results = tmp_path / "results"
    search = ("tuning.search", "--space", str(TINY), "--dataset", str(folder), "--image-size", "8",
              "--results-dir", str(results), "--name", "imb")
    done = _command(*search, "--objective", "val_macro_f1", "--class-weight", "balanced")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "selecting on val_macro_f1, classes weighted balanced" in done.stdout
    assert "images per class (train/validation/test): d0 106/36/36, d1 109/36/37, d2 22/7/7" in done.stdout
    assert "note: the training classes are imbalanced (largest d1 109 images, smallest d2 22: 5.0x)" in done.stdout
    run_dir = results / "imb"
    info = json.loads((run_dir / "run.json").read_text())
    assert (info["objective"], info["class_weight"]) == ("val_macro_f1", "balanced")

    run = open_run(run_dir)
    for rec in run.completed():  # the score is the objective at the best epoch; every metric is recorded
        assert rec.objective == "val_macro_f1" and rec.score == rec.metrics["val_macro_f1"]
        assert set(rec.metrics) == set(OBJECTIVES) and rec.val_accuracy == rec.metrics["val_accuracy"]
        assert {"macro_f1", "val_macro_f1", "balanced_accuracy", "val_balanced_accuracy"} <= set(rec.history)
    ranked = sorted(run.completed(), key=lambda r: -r.score)
    best = json.loads((run_dir / "best.json").read_text())
    assert best["trial_id"] == ranked[0].trial_id and best["objective"] == "val_macro_f1"
    matrix = np.array(best["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == 80
    assert [best["per_class"][c]["support"] for c in ("d0", "d1", "d2")] == matrix.sum(axis=1).tolist() == [36, 37, 7]
    recall = np.diag(matrix) / matrix.sum(axis=1)
    assert best["test_balanced_accuracy"] == pytest.approx(recall.mean())
    assert best["test_accuracy"] == pytest.approx(np.trace(matrix) / 80, abs=1e-6)
    header = (run_dir / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert header[6:10] == ["val_macro_f1", "val_accuracy", "val_loss", "val_balanced_accuracy"]

    mux, _, experiment, scalars = read_back(run_dir / "tensorboard")
    assert ("", "best_val_macro_f1") in {(m.name.group, m.name.tag) for m in experiment.metric_infos}
    first = ranked[0].run
    assert scalars(first, "best_val_macro_f1")[-1][1] == pytest.approx(max(
        v for r in run.records.values() if r.run == first for v in r.history["val_macro_f1"]))
    assert len(scalars(f"{first}/validation", "epoch_balanced_accuracy")) >= 1
    report = (run_dir / "report" / "report.md").read_text()
    assert "## The best trial's classes on the test split" in report and "| d2 |" in report
    assert (run_dir / "report" / "confusion.png").read_bytes()[:4] == b"\x89PNG"

    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    refused = _command(*search, "--objective", "val_accuracy", "--class-weight", "balanced")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "objective 'val_macro_f1' (now 'val_accuracy')" in refused.stderr
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before

    exported = _command("tuning.export", str(run_dir), "--format", "keras")
    assert exported.returncode == 0, exported.stderr[-3000:]
    card = json.loads((run_dir / "export" / "model_card.json").read_text())
    assert (card["trial_id"], card["objective"], card["class_weight"]) == (best["trial_id"], "val_macro_f1", "balanced")
    assert card["confusion_matrix"] == best["confusion_matrix"]  # the exported file predicts as the searched model
    for name, results in best["per_class"].items():
        assert card["per_class"][name] == pytest.approx(results)
    assert card["test_macro_f1"] == pytest.approx(best["test_macro_f1"])
    assert f"test_macro_f1 {card['test_macro_f1']:.4f}" in exported.stdout.strip().splitlines()[-1]
    assert "## Classes on the test split" in (run_dir / "export" / "MODEL_CARD.md").read_text()


def test_export_within_limits_trains_a_pruned_best_again(finished_run, tmp_path):
    """The best trial within --max-params; its checkpoint pruned, it is trained again from its
    recorded hyperparameters, to the search's own scores (the same seed, data order and epochs)."""
    import shutil

    result, _, _ = finished_run
    run_dir = tmp_path / "copy"
    shutil.copytree(result.run_dir, run_dir, ignore=shutil.ignore_patterns("export", ".lock"))
    from tuning.run.opened import open_run

    run = open_run(run_dir)
    completed = run.completed()
    limit = max(r.params for r in completed) - 1  # the largest configuration is out
    within = [r for r in completed if r.params <= limit]
    assert 0 < len(within) < len(completed)
    chosen = sorted(within, key=lambda r: (-r.score, r.epochs, r.trial_id))[0]
    run.checkpoint(chosen.trial_id).unlink(missing_ok=True)  # as the search prunes it
    exported = _command("tuning.export", str(run_dir), "--max-params", str(limit), "--format", "keras",
                        "--output", str(run_dir / "small"))
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert f"the checkpoint of trial {chosen.trial_id} was pruned by the search; training its configuration again" \
        in exported.stdout
    card = json.loads((run_dir / "small" / "model_card.json").read_text())
    assert card["trial_id"] == chosen.trial_id and card["params"] <= limit and card["limits"] == {"max_params": limit}
    assert card["retrain"]["reason"] == "checkpoint pruned"
    assert card["retrain"]["val_accuracy"] == pytest.approx(chosen.score, abs=1e-3)
    refused = _command("tuning.export", str(run_dir), "--max-params", "10", "--format", "keras",
                       "--output", str(run_dir / "tiny"))
    assert refused.returncode == 2 and "no completed trial" in refused.stderr and "raise the limits" in refused.stderr
    assert not (run_dir / "tiny").exists()
