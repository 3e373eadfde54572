"""TensorBoard logging: one run per configuration, promoted rounds on the same step axis.

Layout under ``results/<name>/tensorboard/``:

- the experiment's HParams config (every tuned hyperparameter with its domain, and the metrics);
- ``trial_<id>/`` per configuration, named after the trial that first sampled it.
  `tensorboard_callback` writes per-epoch loss, accuracy and learning rate to ``train/`` and
  ``validation/`` (the tags Keras' TensorBoard callback uses); the run itself holds the HParams
  session (hyperparameters, bracket), ``params`` and ``flops`` scalars, and per epoch
  ``best_<objective>`` (what Hyperband ranks by, e.g. ``best_val_accuracy``) and
  ``hyperband/round`` / ``hyperband/bracket``.
  When Hyperband promotes the configuration, its next trial trains from ``initial_epoch`` into
  the same run, so the curve continues instead of starting a new one.

Every writer makes its own ``events.out.tfevents.*`` file (TensorBoard merges the files of a
folder), so several processes can write into one run over time. The files are written with
TensorBoard's protos and record format, without TensorFlow: this module never imports it
(TensorBoard's ``EventFileWriter`` would, through ``tf.io.gfile``, whenever it is installed).
"""

from __future__ import annotations

import itertools
import os
import pathlib
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any

import keras
import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.summary.writer.record_writer import RecordWriter
from tensorboard.util import tensor_util

from ..config import maximized
from ..run.records import better

METRICS = (
    # (tag, group, display name); the best of the run's objective comes first (`metric_infos`)
    ("epoch_accuracy", "validation", "val_accuracy"),
    ("epoch_loss", "validation", "val_loss"),
    ("epoch_balanced_accuracy", "validation", "val_balanced_accuracy"),
    ("epoch_macro_f1", "validation", "val_macro_f1"),
    ("epoch_accuracy", "train", "accuracy"),
    ("params", None, "parameters"),
    ("flops", None, "FLOPs (multiply-adds per image)"),
)
DERIVED = ("depth", "downsample_at", "stage_depths", "layers", "bracket")

_FILE_IDS = itertools.count()
_DISCRETE_TYPES = {int: api_pb2.DATA_TYPE_FLOAT64, float: api_pb2.DATA_TYPE_FLOAT64,
                   bool: api_pb2.DATA_TYPE_BOOL, str: api_pb2.DATA_TYPE_STRING}


class _EventWriter:
    """A new ``events.out.tfevents.*`` file in `logdir` (named as TensorBoard's own writer names it)."""

    def __init__(self, logdir: pathlib.Path | str):
        logdir = pathlib.Path(logdir)
        logdir.mkdir(parents=True, exist_ok=True)
        while True:
            name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_FILE_IDS)}"
            try:
                file = open(logdir / name, "xb")
                break
            except FileExistsError:
                continue
        self.path = logdir / name
        self._records = RecordWriter(file)
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
        self.flush()

    def _write(self, event: event_pb2.Event) -> None:
        self._records.write(event.SerializeToString())

    def add(self, values: Iterable[summary_pb2.Summary.Value], step: int) -> None:
        self._write(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values)))

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """TF2-style scalar summaries (a float32 tensor each), as ``tf.summary.scalar`` writes them."""
        meta = scalar_metadata.create_summary_metadata(display_name=None, description=None)
        self.add([summary_pb2.Summary.Value(tag=tag, metadata=meta,
                                            tensor=tensor_util.make_tensor_proto(np.float32(value)))
                  for tag, value in values.items()], step)

    def text(self, tag: str, text: str, step: int) -> None:
        """A string tensor for the Text tab, as ``tf.summary.text`` writes it."""
        meta = text_metadata.create_summary_metadata(display_name=None, description=None)
        self.add([summary_pb2.Summary.Value(tag=tag, metadata=meta, tensor=tensor_util.make_tensor_proto(text))], step)

    def hparams(self, tag: str, data: plugin_data_pb2.HParamsPluginData) -> None:
        """HParams plugin data with an empty tensor at step 0, as ``hp.hparams``/``hp.hparams_config`` write it."""
        meta = hparams_metadata.create_summary_metadata(data)
        self.add([summary_pb2.Summary.Value(tag=tag, metadata=meta, tensor=hparams_metadata.NULL_TENSOR)], 0)

    def flush(self) -> None:
        self._records.flush()

    def close(self) -> None:
        if not self._records.closed:
            self._records.close()


def _hparam_info(name: str, hps: list) -> api_pb2.HParamInfo:
    """A column with one domain covering every registration of a (possibly conditional) hyperparameter."""
    info = api_pb2.HParamInfo(name=name)
    kinds = {type(h).__name__ for h in hps}
    if hps and kinds <= {"Float"}:
        info.type = api_pb2.DATA_TYPE_FLOAT64
        info.domain_interval.min_value = float(min(h.min_value for h in hps))
        info.domain_interval.max_value = float(max(h.max_value for h in hps))
        return info
    if hps and kinds <= {"Int"}:
        info.type = api_pb2.DATA_TYPE_FLOAT64  # what hp.IntInterval writes: the plugin has no int type
        info.domain_interval.min_value = int(min(h.min_value for h in hps))
        info.domain_interval.max_value = int(max(h.max_value for h in hps))
        return info
    values: list = []
    for h in hps:
        vals = [h.value] if type(h).__name__ == "Fixed" else (
            [False, True] if type(h).__name__ == "Boolean" else list(getattr(h, "values", [])))
        for v in vals:
            if v not in values:
                values.append(v)
    types = {type(v) for v in values}
    if not values or len(values) > 200 or len(types) != 1 or not types <= _DISCRETE_TYPES.keys():
        return info  # no domain: the column still shows, unfiltered
    info.type = _DISCRETE_TYPES[types.pop()]
    info.domain_discrete.extend(sorted(values))
    return info


def write_experiment_config(logdir: pathlib.Path, space_hps: Iterable, aliases: Mapping[str, str],
                            objective: str = "val_accuracy") -> None:
    """Declare the HParams experiment (columns and metrics) once, at the log root.

    `aliases` maps keras-tuner names to canonical ones (one column per canonical name); the first
    metric is the best of the run's `objective` so far (``best_<objective>``).
    """
    by_name: dict[str, list] = {}
    for h in space_hps:
        by_name.setdefault(aliases.get(h.name, h.name), []).append(h)
    infos = [_hparam_info(name, hps) for name, hps in by_name.items()]
    infos += [api_pb2.HParamInfo(name=name) for name in DERIVED if name not in by_name]
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(group=group, tag=tag), display_name=display)
               for tag, group, display in ((f"best_{objective}", None, f"best {objective}"), *METRICS)]
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics)
    writer = _EventWriter(logdir)
    writer.hparams(hparams_metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment))
    writer.close()


def _session_start(hparams: Mapping[str, Any], group_name: str) -> plugin_data_pb2.HParamsPluginData:
    """What ``hp.hparams(hparams, trial_id=group_name)`` records."""
    info = plugin_data_pb2.SessionStartInfo(group_name=group_name, start_time_secs=time.time())
    for name in sorted(hparams):
        value = hparams[name]
        if isinstance(value, bool):
            info.hparams[name].bool_value = value
        elif isinstance(value, (int, float)):
            info.hparams[name].number_value = value
        else:
            info.hparams[name].string_value = str(value)
    return plugin_data_pb2.HParamsPluginData(session_start_info=info)


class TrialLogger(keras.callbacks.Callback):
    """Writes a configuration's HParams session and Hyperband bookkeeping into its run.

    Args:
        run_dir: the configuration's run folder.
        run_name: its name (the HParams session id).
        hparams: hyperparameter values to record (first round only).
        params, flops: cost of the network.
        bracket, round_num: Hyperband position of this trial.
        first_round: whether this trial starts the run (writes the HParams session).
        best_so_far: the best value of the objective in the configuration's earlier rounds.
        objective: the run's objective (its best so far is the scalar ``best_<objective>``).
    """

    def __init__(self, run_dir: pathlib.Path, run_name: str, hparams: Mapping[str, Any], params: int, flops: int,
                 bracket: int, round_num: int, first_round: bool, best_so_far: float | None = None,
                 objective: str = "val_accuracy"):
        super().__init__()
        self.run_dir, self.run_name = pathlib.Path(run_dir), run_name
        self.hparams = {k: v for k, v in hparams.items() if isinstance(v, (bool, int, float, str))}
        self.n_params, self.n_flops = params, flops
        self.bracket, self.round_num, self.first_round = bracket, round_num, first_round
        self.best, self.objective = best_so_far, objective
        self.maximize = maximized(objective)
        self._writer: _EventWriter | None = None

    def on_train_begin(self, logs=None):
        self._writer = _EventWriter(self.run_dir)
        if self.first_round:
            self._writer.hparams(hparams_metadata.SESSION_START_INFO_TAG, _session_start(self.hparams, self.run_name))
            self._writer.scalars({"params": float(self.n_params), "flops": float(self.n_flops)}, step=0)
            self._writer.text("hyperparameters", _markdown_table(self.hparams), step=0)
            self._writer.flush()

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.objective)
        if value is not None and better(value, self.best, self.maximize):
            self.best = float(value)
        values = {} if self.best is None else {f"best_{self.objective}": self.best}
        values.update({"hyperband/round": float(self.round_num), "hyperband/bracket": float(self.bracket)})
        self._writer.scalars(values, step=epoch)
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


class _EpochScalars(keras.callbacks.Callback):
    """Per-epoch scalars under the tags Keras' TensorBoard callback uses, without TensorFlow."""

    def __init__(self, run_dir: pathlib.Path):
        super().__init__()
        self.run_dir = pathlib.Path(run_dir)
        self._writers: dict[str, _EventWriter] = {}

    def _learning_rates(self) -> dict[str, float]:
        """The optimizer's current learning rate (schedules evaluated), as Keras' callback reads it."""
        optimizer = getattr(self.model, "optimizer", None)
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer

        def rate(opt) -> float:
            return float(keras.ops.convert_to_numpy(opt.learning_rate))

        if hasattr(optimizer, "optimizers"):
            return {f"learning_rate_{opt.name}": rate(opt) for opt in optimizer.optimizers}
        if isinstance(optimizer, keras.optimizers.Optimizer):
            return {"learning_rate": rate(optimizer)}
        return {}

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        train.update(self._learning_rates())
        val = {k[len("val_"):]: v for k, v in logs.items() if k.startswith("val_")}
        for folder, values in (("train", train), ("validation", val)):
            if values:
                if folder not in self._writers:
                    self._writers[folder] = _EventWriter(self.run_dir / folder)
                self._writers[folder].scalars({f"epoch_{k}": float(v) for k, v in values.items()}, step=epoch)
                self._writers[folder].flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def tensorboard_callback(run_dir: pathlib.Path) -> keras.callbacks.Callback:
    """Per-epoch scalars only (``epoch_<metric>`` and ``epoch_learning_rate`` in ``train/``,
    ``epoch_<metric>`` in ``validation/``) at step = the epoch index; no graph, profiler or histograms."""
    return _EpochScalars(run_dir)


def write_scalars(run_dir: pathlib.Path, values: Mapping[str, float], step: int) -> None:
    """Append scalars at `step` to a run (a new event file in `run_dir`)."""
    writer = _EventWriter(run_dir)
    writer.scalars({tag: float(v) for tag, v in values.items()}, step=step)
    writer.close()


def write_status(run_dir: pathlib.Path, text: str) -> None:
    """Record why a trial failed in its configuration's run (TensorBoard's Text tab)."""
    writer = _EventWriter(run_dir)
    writer.text("status", text, step=0)
    writer.scalars({"failed": 1.0}, step=0)
    writer.close()
