"""TensorBoard logging: one run per configuration, promoted rounds on the same step axis.

Layout under ``results/<name>/tensorboard/``:

- the experiment's HParams config (every tuned hyperparameter with its domain, and the metrics);
- ``trial_<id>/`` per configuration, named after the trial that first sampled it. Keras'
  TensorBoard callback writes per-epoch loss, accuracy and learning rate to ``train/`` and
  ``validation/``; the run itself holds the HParams session (hyperparameters, bracket),
  ``params`` and ``flops`` scalars, and per epoch ``best_val_accuracy`` (what Hyperband ranks
  by) and ``hyperband/round`` / ``hyperband/bracket``. When Hyperband
  promotes the configuration, its next trial trains from ``initial_epoch`` into the same run,
  so the curve continues instead of starting a new one.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import keras

METRICS = (
    # (tag, group, display name)
    ("best_val_accuracy", None, "best val_accuracy"),
    ("epoch_accuracy", "validation", "val_accuracy"),
    ("epoch_loss", "validation", "val_loss"),
    ("epoch_accuracy", "train", "accuracy"),
    ("params", None, "parameters"),
    ("flops", None, "FLOPs (multiply-adds per image)"),
)
DERIVED = ("depth", "downsample_at", "stage_depths", "layers", "bracket")


def _domain(hp_api, hps: list) -> Any:
    """One HParams domain covering every registration of a (possibly conditional) hyperparameter."""
    kinds = {type(h).__name__ for h in hps}
    if kinds <= {"Float"}:
        return hp_api.RealInterval(float(min(h.min_value for h in hps)), float(max(h.max_value for h in hps)))
    if kinds <= {"Int"}:
        return hp_api.IntInterval(int(min(h.min_value for h in hps)), int(max(h.max_value for h in hps)))
    values: list = []
    for h in hps:
        vals = [h.value] if type(h).__name__ == "Fixed" else (
            [False, True] if type(h).__name__ == "Boolean" else list(getattr(h, "values", [])))
        for v in vals:
            if v not in values:
                values.append(v)
    if not values or len(values) > 200 or len({type(v) for v in values}) != 1:
        return None
    return hp_api.Discrete(values)


def write_experiment_config(logdir: pathlib.Path, space_hps: Iterable, aliases: Mapping[str, str]) -> None:
    """Declare the HParams experiment (columns and metrics) once, at the log root.

    `aliases` maps keras-tuner names to canonical ones (one column per canonical name).
    """
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp_api

    by_name: dict[str, list] = {}
    for h in space_hps:
        by_name.setdefault(aliases.get(h.name, h.name), []).append(h)
    hparams = [hp_api.HParam(name, _domain(hp_api, hps)) for name, hps in by_name.items()]
    hparams += [hp_api.HParam(name) for name in DERIVED if name not in by_name]
    metrics = [hp_api.Metric(tag, group=group, display_name=display) for tag, group, display in METRICS]
    logdir.mkdir(parents=True, exist_ok=True)
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        hp_api.hparams_config(hparams=hparams, metrics=metrics)
    writer.close()


class TrialLogger(keras.callbacks.Callback):
    """Writes a configuration's HParams session and Hyperband bookkeeping into its run.

    Args:
        run_dir: the configuration's run folder.
        run_name: its name (the HParams session id).
        hparams: hyperparameter values to record (first round only).
        params, flops: cost of the network.
        bracket, round_num: Hyperband position of this trial.
        first_round: whether this trial starts the run (writes the HParams session).
        best_so_far: the best validation accuracy of the configuration's earlier rounds.
    """

    def __init__(self, run_dir: pathlib.Path, run_name: str, hparams: Mapping[str, Any], params: int, flops: int,
                 bracket: int, round_num: int, first_round: bool, best_so_far: float | None = None):
        super().__init__()
        self.run_dir, self.run_name = pathlib.Path(run_dir), run_name
        self.hparams = {k: v for k, v in hparams.items() if isinstance(v, (bool, int, float, str))}
        self.n_params, self.n_flops = params, flops
        self.bracket, self.round_num, self.first_round = bracket, round_num, first_round
        self.best = best_so_far
        self._writer = None

    def on_train_begin(self, logs=None):
        import tensorflow as tf
        from tensorboard.plugins.hparams import api as hp_api

        self._writer = tf.summary.create_file_writer(str(self.run_dir))
        if self.first_round:
            with self._writer.as_default():
                hp_api.hparams(self.hparams, trial_id=self.run_name)
                tf.summary.scalar("params", float(self.n_params), step=0)
                tf.summary.scalar("flops", float(self.n_flops), step=0)
                tf.summary.text("hyperparameters", _markdown_table(self.hparams), step=0)
            self._writer.flush()

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        acc = (logs or {}).get("val_accuracy")
        if acc is not None:
            self.best = max(self.best if self.best is not None else float("-inf"), float(acc))
        with self._writer.as_default():
            if self.best is not None:
                tf.summary.scalar("best_val_accuracy", self.best, step=epoch)
            tf.summary.scalar("hyperband/round", float(self.round_num), step=epoch)
            tf.summary.scalar("hyperband/bracket", float(self.bracket), step=epoch)
        self._writer.flush()

    def on_train_end(self, logs=None):
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _markdown_table(values: Mapping[str, Any]) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in values.items())
    return f"| hyperparameter | value |\n|---|---|\n{rows}"


def tensorboard_callback(run_dir: pathlib.Path) -> keras.callbacks.TensorBoard:
    """Per-epoch scalars only: no graph, no profiler, no histograms (fast and small)."""
    return keras.callbacks.TensorBoard(log_dir=str(run_dir), histogram_freq=0, write_graph=False,
                                       write_images=False, update_freq="epoch", profile_batch=0)


def write_status(run_dir: pathlib.Path, text: str) -> None:
    """Record why a trial failed in its configuration's run (TensorBoard's Text tab)."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        tf.summary.text("status", text, step=0)
        tf.summary.scalar("failed", 1.0, step=0)
    writer.close()
