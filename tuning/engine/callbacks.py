"""Callbacks of a trial (epoch timer, resume checkpoint, timed best-epoch checkpoint) and the
resume state they share."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time

import keras
import keras_tuner as kt

from ..faults import kill_self
from ..observe.tensorboard import write_scalars
from ..run.files import write_json
from ..run.records import TrialRecord
from ..runtime import compile_clock, out_of_memory
from .checkpoints import save_variables
from .kt_internals import SaveBestEpoch


@dataclasses.dataclass
class ResumeState:
    """``resume.json`` of a running trial: what its next run needs to continue after its last
    completed epoch. Shared by the resume checkpoint, the best-epoch checkpoint and the plateau
    schedule of one trial."""

    epoch: int | None = None       # the last completed epoch
    weights: str | None = None     # its checkpoint, in the trial's folder
    best: float | None = None      # the best objective value so far
    plateau: dict | None = None    # ReduceLROnPlateau's counters: wait, best, cooldown

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict) -> ResumeState:
        return cls(**{f.name: data.get(f.name) for f in dataclasses.fields(cls)})


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch (the first includes tracing the training step) into `record`."""

    def __init__(self, record: TrialRecord):
        super().__init__()
        self.record = record

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.record.epoch_seconds.append(round(time.perf_counter() - self._t0, 3))


class CompileTimer(keras.callbacks.Callback):
    """Seconds a fit spends tracing and compiling its train and test steps, added to `record`
    and written to the configuration's TensorBoard run (``compile_seconds``).

    On JAX they are measured: the durations JAX reports for tracing, lowering and compiling (or
    loading a step from the persistent compilation cache) during the fit. On TensorFlow they
    are estimated: the first training (and validation) batch's time over the median of the
    next ones.
    """

    SAMPLES = 8

    def __init__(self, record: TrialRecord, logdir: pathlib.Path | None = None):
        super().__init__()
        self.record, self.logdir, self.clock = record, logdir, compile_clock
        self._times: dict[str, list[float]] = {"train": [], "test": []}
        self._t0 = 0.0

    def on_train_begin(self, logs=None):
        self._start, self._first_epoch = self.clock.seconds, None

    def on_epoch_begin(self, epoch, logs=None):
        self._first_epoch = epoch if self._first_epoch is None else self._first_epoch

    def _begin(self, batch, logs=None):
        self._t0 = time.perf_counter()

    def _end(self, kind: str):
        times = self._times[kind]
        if len(times) < self.SAMPLES:
            times.append(time.perf_counter() - self._t0)

    on_train_batch_begin = on_test_batch_begin = _begin

    def on_train_batch_end(self, batch, logs=None):
        self._end("train")

    def on_test_batch_end(self, batch, logs=None):
        self._end("test")

    def seconds(self) -> float:
        if self.clock.exact:
            return self.clock.seconds - self._start
        extra = 0.0
        for times in self._times.values():
            if len(times) >= 2:
                rest = sorted(times[1:])
                extra += max(0.0, times[0] - rest[len(rest) // 2])
            elif times:
                extra += times[0]
        return extra

    def on_train_end(self, logs=None):
        seconds = self.seconds()
        self.record.compile_seconds = round(self.record.compile_seconds + seconds, 3)
        self.record.compile_measure = "measured" if self.clock.exact else "estimated"
        if self.logdir is not None:
            write_scalars(self.logdir, {"compile_seconds": seconds}, step=self._first_epoch or 0)


def _add_checkpoint_time(record: TrialRecord | None, t0: float) -> None:
    if record is not None:
        record.checkpoint_seconds = round(record.checkpoint_seconds + time.perf_counter() - t0, 3)


class ResumeCheckpoint(keras.callbacks.Callback):
    """After every epoch: weights + optimiser + random state, and the epoch and counters."""

    def __init__(self, trial_dir: pathlib.Path, state: ResumeState, objective: kt.Objective, record: TrialRecord):
        super().__init__()
        self.trial_dir, self.state, self.objective = pathlib.Path(trial_dir), state, objective
        self.record = record

    def on_epoch_end(self, epoch, logs=None):
        t0 = time.perf_counter()
        self._save(epoch, logs)
        _add_checkpoint_time(self.record, t0)

    def _save(self, epoch, logs):
        logs = logs or {}
        if self.objective.has_value(logs):
            value = self.objective.get_value(logs)
            if self.state.best is None or self.objective.better_than(value, self.state.best):
                self.state.best = float(value)
        name = f"resume-{epoch}.npz"
        save_variables(self.model, self.trial_dir / name)
        old = self.state.weights
        self.state.epoch, self.state.weights = epoch, name
        write_json(self.trial_dir / "resume.json", self.state.to_dict())  # the switch to the new file is atomic
        if old and old != name:
            (self.trial_dir / old).unlink(missing_ok=True)


class TimedSaveBestEpoch(SaveBestEpoch):
    """keras-tuner's best-epoch checkpoint, with the time it takes added to `record`.

    When this epoch's resume checkpoint (the same variables) was just written, the best-epoch
    checkpoint becomes a hard link to it instead of a second copy.
    """

    def __init__(self, objective, filepath, record: TrialRecord | None, resume: ResumeState | None = None):
        super().__init__(objective, filepath)
        self.record, self.resume = record, resume  # `resume`: the ResumeCheckpoint's state
        self._epoch = None

    def on_epoch_end(self, epoch, logs=None):
        self._epoch = epoch
        super().on_epoch_end(epoch, logs)

    def _save_model(self):
        t0 = time.perf_counter()
        if not self._link_resume_checkpoint():
            save_variables(self.model, self.filepath)  # with the optimiser: a promoted trial continues it
        _add_checkpoint_time(self.record, t0)

    def _link_resume_checkpoint(self) -> bool:
        if self.resume is None or self.resume.epoch != self._epoch:
            return False
        target = pathlib.Path(self.filepath)
        source = target.parent / self.resume.weights  # both live in the trial's folder
        tmp = target.with_name(f".{target.name}.link")
        try:
            tmp.unlink(missing_ok=True)
            os.link(source, tmp)
            os.replace(tmp, target)
        except OSError:  # no hard links on this filesystem: write a copy
            tmp.unlink(missing_ok=True)
            return False
        return True


def clear_resume(trial_dir: pathlib.Path) -> None:
    for p in trial_dir.glob("resume*"):
        p.unlink(missing_ok=True)


def read_resume(trial_dir: pathlib.Path) -> ResumeState | None:
    """The trial's resume state, if it has a usable one."""
    try:
        state = ResumeState.from_dict(json.loads((trial_dir / "resume.json").read_text()))
    except (OSError, json.JSONDecodeError, TypeError, AttributeError):
        return None
    if state.epoch is None or not state.weights or not (trial_dir / state.weights).is_file():
        return None
    return state


# ----- test-only faults (`tuning.faults` says which) ---------------------------------------------
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
        if self.fault == "killed" and batch == 0:
            kill_self()
        if self.fault == "raise":
            raise RuntimeError("injected fault: a bug in this configuration")
        if self.fault == "oom-always" or (self.fault == "oom" and self.batch_size == self.sampled):
            raise out_of_memory(f"injected OOM at batch size {self.batch_size}")
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
