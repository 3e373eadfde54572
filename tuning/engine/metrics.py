"""The metrics every trial computes besides loss and accuracy, and a split's per-class results.

`class_averaged_metrics` are Keras metrics that add each batch's predictions to a confusion
matrix and compute, at the end of the epoch, the balanced accuracy (the mean recall of the
classes present) and the macro F1 (the mean F1 of the classes present in the labels or the
predictions) from it: exact over the whole split, as scikit-learn's `balanced_accuracy_score` and
`f1_score(average="macro")` compute them on the same predictions, not averaged over batches.
Keras logs them as ``balanced_accuracy`` / ``macro_f1`` (training) and ``val_balanced_accuracy`` /
``val_macro_f1`` (validation).

`split_results` scores a split's predictions with scikit-learn: every objective's value, and
per-class precision, recall, F1 and support with the confusion matrix.

Importing this module does not import Keras.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

CLASS_AVERAGED = ("balanced_accuracy", "macro_f1")


@functools.cache
def _metric_class() -> type:
    """The Keras metric behind `class_averaged_metrics` (made on first use: Keras is imported then)."""
    import keras
    from keras import ops

    class ClassAveraged(keras.metrics.Metric):
        """A class-averaged metric of a confusion matrix accumulated over the epoch (`kind`: one of
        `CLASS_AVERAGED`). Sample weights are not applied: every image counts once."""

        def __init__(self, kind: str, num_classes: int, name: str | None = None, **kwargs):
            super().__init__(name=name or kind, **kwargs)
            if kind not in CLASS_AVERAGED:
                raise ValueError(f"kind={kind!r} is invalid: expected one of {CLASS_AVERAGED}")
            self.kind, self.num_classes = kind, int(num_classes)
            self.confusion = self.add_variable(shape=(self.num_classes, self.num_classes), initializer="zeros",
                                               dtype="float32", name="confusion")

        def update_state(self, y_true, y_pred, sample_weight=None):
            k = self.num_classes
            true = ops.one_hot(ops.argmax(y_true, axis=-1), k, dtype="float32")
            predicted = ops.one_hot(ops.argmax(y_pred, axis=-1), k, dtype="float32")
            self.confusion.assign_add(ops.matmul(ops.transpose(true), predicted))

        def result(self):
            c = ops.convert_to_tensor(self.confusion)
            hits, true, predicted = ops.diagonal(c), ops.sum(c, axis=1), ops.sum(c, axis=0)
            if self.kind == "balanced_accuracy":
                present, per_class = true > 0, ops.divide_no_nan(hits, true)
            else:  # F1 = 2 tp / (2 tp + fp + fn) = 2 tp / (true + predicted)
                present, per_class = true + predicted > 0, ops.divide_no_nan(2.0 * hits, true + predicted)
            present = ops.cast(present, "float32")
            return ops.sum(per_class * present) / ops.maximum(ops.sum(present), 1.0)

        def reset_state(self):
            self.confusion.assign(ops.zeros((self.num_classes, self.num_classes), dtype="float32"))

        def get_config(self):
            return {**super().get_config(), "kind": self.kind, "num_classes": self.num_classes}

    return ClassAveraged


def class_averaged_metrics(num_classes: int) -> list:
    """The Keras metrics ``balanced_accuracy`` and ``macro_f1`` for `num_classes` classes."""
    return [_metric_class()(kind, num_classes) for kind in CLASS_AVERAGED]


def predict_split(model, pipeline) -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities, labels) of `model` over an evaluation pipeline (`tuning.data`'s: a
    streamed folder's images are read batch by batch, never all at once)."""
    probs, labels = [], []
    for i in range(pipeline.num_batches):
        x, y = pipeline[i][:2]
        probs.append(np.asarray(model.predict_on_batch(x)))
        labels.append(np.argmax(y, axis=1))
    return np.concatenate(probs), np.concatenate(labels)


def split_results(labels: Sequence[int], probabilities: np.ndarray, class_names: Sequence[str],
                  label_smoothing: float | None = None) -> dict[str, Any]:
    """A split scored from its predictions: ``accuracy``, ``balanced_accuracy``, ``macro_f1``, with
    `label_smoothing` also ``loss`` (the categorical cross-entropy a trial trains with),
    ``per_class`` (class name -> precision, recall, F1, support) and ``confusion_matrix`` (rows:
    true classes, columns: predicted, in the order of `class_names`)."""
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    y_true = np.asarray(labels, dtype="int64")
    y_pred = np.argmax(np.asarray(probabilities), axis=1)
    every = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=every, zero_division=0)
    with warnings.catch_warnings():  # a class predicted but absent from the split counts as scikit-learn says
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true", UserWarning)
        balanced = float(balanced_accuracy_score(y_true, y_pred))
    out: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": balanced,
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
    }
    if label_smoothing is not None:
        k = len(class_names)
        target = np.eye(k)[y_true] * (1 - label_smoothing) + label_smoothing / k
        p = np.asarray(probabilities, dtype="float64")
        p = np.clip(p / p.sum(axis=1, keepdims=True), 1e-7, 1 - 1e-7)  # as Keras' categorical cross-entropy
        out["loss"] = float(-np.mean(np.sum(target * np.log(p), axis=1)))
    out["per_class"] = {str(name): {"precision": float(precision[i]), "recall": float(recall[i]),
                                    "f1": float(f1[i]), "support": int(support[i])}
                        for i, name in enumerate(class_names)}
    out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=every).tolist()
    return out
