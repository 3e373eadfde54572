"""Fault injection, for tests only: make a chosen trial fail the way real trials do.

Set ``TUNING_FAULTS`` to a JSON object mapping trial ids to a fault, e.g.
``{"0002": "raise", "0003": "nan", "0004": "oom"}``:

- ``raise``: an exception in training (any bug in build or fit);
- ``nan``: the weights turn NaN, so the loss does (``TerminateOnNaN`` stops the trial);
- ``oom``: ``ResourceExhaustedError`` at the trial's sampled batch size only (the retry at half
  the batch size then succeeds); ``oom-always``: at every batch size;
- ``hang@E``: sleep for an hour after epoch E completes (a window to kill the process in);
  ``deaf@E``: the same, but the first Ctrl-C is lost, as Python loses one that lands while it
  runs a finaliser.

Keys that act on the whole search:

- ``"handover": "every-trial"``: a supervised trial process hands over to a fresh one after
  every trial (``--recycle-mb`` measures growth from the end of a process's first trial, so
  even 1 MB hands over after every second trial only);
- ``"crash": "after-trials"``: an unexpected error once every trial has ended (before the best
  trial is evaluated), as a bug there would raise;
- ``"score_step"`` (e.g. ``0.5``): every trial's validation accuracy is rounded to a multiple of
  the step before the search sees it, so that ties are everywhere.
"""

from __future__ import annotations

import json
import os
import time

import keras

ENV = "TUNING_FAULTS"


def _faults() -> dict:
    text = os.environ.get(ENV)
    return json.loads(text) if text else {}


def fault_for(trial_id: str) -> str | None:
    return _faults().get(trial_id)


def crash_point(name: str) -> None:
    if _faults().get("crash") == name:
        raise RuntimeError(f"injected crash at {name}")


def handover_every_trial() -> bool:
    return _faults().get("handover") == "every-trial"


def score_step() -> float | None:
    return _faults().get("score_step")


class RoundScores(keras.callbacks.Callback):
    """Rounds ``val_accuracy`` in the epoch's logs, which every later callback shares."""

    def __init__(self, step: float):
        super().__init__()
        self.step = step

    def on_epoch_end(self, epoch, logs=None):
        if logs and "val_accuracy" in logs:
            logs["val_accuracy"] = round(float(logs["val_accuracy"]) / self.step) * self.step


class FaultInjector(keras.callbacks.Callback):
    def __init__(self, fault: str, batch_size: int, sampled_batch_size: int):
        super().__init__()
        self.fault, self.batch_size, self.sampled = fault, batch_size, sampled_batch_size

    def on_train_batch_begin(self, batch, logs=None):
        if self.fault == "raise":
            raise RuntimeError("injected fault: a bug in this configuration")
        if self.fault == "oom-always" or (self.fault == "oom" and self.batch_size == self.sampled):
            import tensorflow as tf

            raise tf.errors.ResourceExhaustedError(None, None, f"injected OOM at batch size {self.batch_size}")
        if self.fault == "nan" and batch == 0:
            for w in self.model.trainable_weights:
                w.assign(keras.ops.full_like(w, float("nan")))

    def on_epoch_end(self, epoch, logs=None):
        if self.fault and self.fault.startswith(("hang@", "deaf@")) and epoch == int(self.fault.split("@")[1]):
            if self.fault.startswith("deaf@"):
                try:
                    time.sleep(3600)
                except KeyboardInterrupt:
                    pass
            time.sleep(3600)
