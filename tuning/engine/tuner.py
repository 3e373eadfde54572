"""keras-tuner's Hyperband, adapted for long unattended searches.

- No invalid trials: the oracle redraws configurations that cannot be built or are over the
  cost limits, before they become trials.
- One TensorBoard run per configuration; a leaderboard row and a progress line per trial.
- Resume: every epoch of a running trial leaves a checkpoint (weights, optimiser, random
  state, schedule counters); a killed search re-runs the interrupted trial from its last
  completed epoch, on the same data order, so it ends with the trials an uninterrupted run has.
  keras-tuner's own state files are written atomically.
- Failure isolation: NaN loss, out of memory (retried once at half the batch size) or any
  exception fails that trial only, with its reason; the search stops only when failures are
  systematic (the same error again and again).
- Disk: a checkpoint is deleted as soon as Hyperband can no longer promote its trial (unless
  it is the best so far).
"""


from __future__ import annotations

import math
import os
import pathlib
import time
import zlib
from collections.abc import Callable

import keras
import keras_tuner as kt

from ..config import DEFAULT_OBJECTIVE, OBJECTIVES
from ..errors import DataError
from ..faults import fault_for, kill_point, score_step
from ..observe.progress import Reporter, progress_callbacks
from ..observe.tensorboard import TrialLogger, tensorboard_callback, write_status
from ..run.files import write_json
from ..run.folder import CHECKPOINT_NAME, RunFolder
from ..run.records import TrialRecord
from ..runtime import is_out_of_memory
from .algorithms import make_oracle, oracle_seed
from .callbacks import (
    CompileTimer,
    EpochTimer,
    FaultInjector,
    ResumeCheckpoint,
    ResumeState,
    RoundScores,
    TimedSaveBestEpoch,
    clear_resume,
    read_resume,
)
from .checkpoints import load_variables
from .hypermodel import ResNetHyperModel
from .kt_internals import TunerCallback
from .oracle import FINISHED, last_line


class BadImageStop(DataError, kt.errors.FatalError):
    """An unreadable image of a streamed folder without ``--skip-bad-images``: the search stops
    (keras-tuner lets a `FatalError` through) and says which image, as bad input."""


class ResNetTuner(kt.Hyperband):
    """Hyperband, BOHB or ASHA over a `ResNetHyperModel`.

    Args:
        hypermodel: the hypermodel (its sampler checks validity).
        results_dir: ``results/<name>``; keras-tuner's own state goes to its ``tuner/`` subfolder.
        algorithm: one of `tuning.config.ALGORITHMS`.
        objective: what the oracle ranks by, one of `tuning.config.OBJECTIVES` (with its direction).
        max_epochs, factor, iterations: the budget (Hyperband's; ASHA trains as many epochs).
        seed: seeds the oracle (the sequence of trials) and each trial's initial weights.
        on_trial_done: called with (tuner, trial, record) after each trial, for results/progress.
        progress: where a running trial's progress goes (`tuning.observe.progress`); None: nowhere.
        overwrite: start afresh instead of resuming.
    """

    def __init__(self, hypermodel: ResNetHyperModel, results_dir: pathlib.Path, *, max_epochs: int, factor: int,
                 iterations: int, seed: int, algorithm: str = "hyperband", objective: str = DEFAULT_OBJECTIVE,
                 on_trial_done: Callable | None = None,
                 progress: Reporter | None = None, overwrite: bool = False, **kwargs):
        oracle = make_oracle(
            algorithm, objective=kt.Objective(objective, OBJECTIVES[objective]), max_epochs=max_epochs, factor=factor,
            hyperband_iterations=iterations, seed=oracle_seed(seed), check=hypermodel.sampler.check,
        )
        self.results_dir = pathlib.Path(results_dir)
        self.folder = RunFolder(self.results_dir)
        self.logdir = self.results_dir / "tensorboard"
        self.seed = seed
        self.on_trial_done = on_trial_done
        self.progress = progress
        self.records: dict[str, TrialRecord] = {}
        self.planned = oracle.planned_trials()  # a worker's oracle becomes a client that cannot say
        self._resume_weights: pathlib.Path | None = None
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, directory=str(self.results_dir),
                          project_name="tuner", overwrite=overwrite, **kwargs)

    # keras-tuner builds the model several times to discover conditional hyperparameters;
    # the space is data, so declaring it is enough.
    def _populate_initial_space(self):
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self.oracle.update_space(hp)

    # Our own TensorBoard layout replaces keras-tuner's one-folder-per-trial patching.
    def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
        return

    # keras-tuner's loop asks again at once when the oracle answers "idle" (another worker's
    # trial must finish before the next promotion): wait a second between such requests.
    def pre_create_trial(self):
        if getattr(self, "_waiting", False):
            time.sleep(1.0)
        self._waiting = True

    def on_trial_begin(self, trial):
        self._waiting = False
        super().on_trial_begin(trial)

    def save(self):
        if not self._is_worker():
            self.oracle.save()
        write_json(self._get_tuner_fname(), self.get_state())

    def run_name(self, trial_id: str) -> str:
        """A configuration's TensorBoard run: named after the trial that first sampled it."""
        root, values = trial_id, None
        while True:
            values = self.oracle.get_trial(root).hyperparameters.values  # works through a worker's client too
            parent = values.get("tuner/trial_id")
            if parent is None:
                return f"trial_{root}"
            root = parent

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters.values
        spec, cfg, cost = self.hypermodel.sampler.resolve(values)
        record = self._new_record(trial, spec, cost)
        trial_dir = pathlib.Path(self.get_trial_dir(trial.trial_id))
        resume = read_resume(trial_dir)
        state = resume or ResumeState()
        self._resume_weights = None
        if resume is not None:  # an interrupted trial: continue after its last completed epoch
            self._resume_weights = trial_dir / resume.weights
            record.resumed_from_epoch = resume.epoch + 1
            if resume.epoch + 1 >= record.epochs:  # killed after its last epoch, before it was recorded
                return {self.oracle.objective.name: resume.best}
        start = record.initial_epoch if resume is None else resume.epoch + 1
        self._seed_run(record.run)
        checkpoint = TimedSaveBestEpoch(self.oracle.objective, self._get_checkpoint_fname(trial.trial_id), record,
                                        resume=state)
        best_before = self.oracle.get_trial(record.parent).score if record.parent is not None else None
        if resume is not None and resume.best is not None:
            checkpoint.best_value = resume.best
            if best_before is None or self.oracle.objective.better_than(resume.best, best_before):
                best_before = resume.best
        fault = fault_for(trial.trial_id)
        base_callbacks = list(kwargs.pop("callbacks", []))

        def attempt(batch_size: int):
            callbacks = [EpochTimer(record), CompileTimer(record, self.logdir / record.run), *base_callbacks,
                         *self._logging_callbacks(record, cost, resume, best_before),
                         ResumeCheckpoint(trial_dir, state, self.oracle.objective, record),
                         TunerCallback(self, trial), checkpoint]
            if fault:
                callbacks.append(FaultInjector(fault, batch_size, cfg.batch_size))
            if score_step():  # first, so that every other callback sees the rounded score
                callbacks.insert(0, RoundScores(score_step()))
            with progress_callbacks(self.progress, trial.trial_id, epochs=record.epochs, initial_epoch=start,
                                    batch_size=batch_size * self.hypermodel.replicas) as shown:
                return self._build_and_fit_model(trial, *args, callbacks=[*callbacks, *shown], epochs=record.epochs,
                                                 initial_epoch=start, batch_size=batch_size, resume_state=state,
                                                 **kwargs)

        try:
            history = self._fit_halving_on_oom(attempt, cfg.batch_size, record)
        except Exception:
            images = self.hypermodel.data.images
            if images is not None and images.fatal is not None:  # however the backend wrapped it
                raise BadImageStop(str(images.fatal)) from None
            raise
        losses = history.history.get("loss", [])
        if any(not math.isfinite(v) for v in losses) or len(losses) < record.epochs - start:
            raise kt.errors.FailedTrialError(f"the loss became NaN in epoch {start + len(losses)} "
                                             f"(learning rate {cfg.learning_rate:.3g}); stopped by TerminateOnNaN")
        return history

    def _new_record(self, trial, spec, cost) -> TrialRecord:
        values = trial.hyperparameters.values
        record = TrialRecord(
            trial.trial_id, run=self.run_name(trial.trial_id), parent=values.get("tuner/trial_id"),
            bracket=int(values.get("tuner/bracket", 0)), round=int(values.get("tuner/round", 0)),
            initial_epoch=int(values.get("tuner/initial_epoch", 0)), epochs=int(values.get("tuner/epochs", 1)),
            params=cost.params, flops=cost.flops, spec=spec.to_dict(),
            values={k: v for k, v in values.items() if not k.startswith("tuner/")},  # keras-tuner's names
            hyperparameters=self.hypermodel.sampler.describe(values), started=time.time(), worker=self.tuner_id)
        self.records[trial.trial_id] = record
        return record

    def _logging_callbacks(self, record: TrialRecord, cost, resume, best_before) -> list:
        """The configuration's TensorBoard run: Keras' scalars and our HParams/status logger."""
        logdir = self.logdir / record.run
        return [tensorboard_callback(logdir),
                TrialLogger(logdir, record.run, {**record.hyperparameters, "bracket": record.bracket}, cost.params,
                            cost.flops, record.bracket, record.round,
                            first_round=record.parent is None and resume is None, best_so_far=best_before,
                            objective=self.oracle.objective.name)]

    @staticmethod
    def _fit_halving_on_oom(attempt, batch_size: int, record: TrialRecord):
        """`attempt(batch_size)`; out of memory: once more at half the batch size."""
        try:
            return attempt(batch_size)
        except Exception as e:
            if not is_out_of_memory(e) or batch_size < 2:
                raise
        record.oom_retry_batch_size = batch_size // 2
        keras.backend.clear_session()
        try:
            return attempt(batch_size // 2)
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            raise kt.errors.FailedTrialError(f"out of memory at batch size {batch_size} and again at "
                                             f"{batch_size // 2}: {error_line(e)[:120]}") from None

    def _seed_run(self, run: str) -> None:
        """Same configuration, same initial weights, whatever order the trials run in."""
        keras.utils.set_random_seed(configuration_seed(self.seed, run))

    def recreate_checkpoint(self, trial) -> float | None:
        """Train a finished trial's configuration again from scratch, for its epochs, and write its
        best-epoch checkpoint (for a best trial whose checkpoint is missing). Returns the best
        value of the run's objective in the new training."""
        hp = trial.hyperparameters.copy()
        hp.values = {k: v for k, v in trial.hyperparameters.values.items() if k != "tuner/trial_id"}
        keras.backend.clear_session(free_memory=False)
        self._seed_run(self.run_name(trial.trial_id))
        self._resume_weights = None
        model = kt.Tuner._build_hypermodel(self, hp)  # no parent: from scratch
        save = TimedSaveBestEpoch(self.oracle.objective, self._get_checkpoint_fname(trial.trial_id), None)
        self.hypermodel.fit(hp, model, epochs=int(hp.values.get("tuner/epochs", 1)), initial_epoch=0, callbacks=[save])
        best = save.best_value
        return float(best) if best is not None and math.isfinite(best) else None

    def load_model(self, trial):
        """The trial's best-epoch model (keras-tuner's `get_best_models` calls this)."""
        model = kt.Tuner._build_hypermodel(self, trial.hyperparameters)
        load_variables(model, self._get_checkpoint_fname(trial.trial_id))
        return model

    def _get_checkpoint_fname(self, trial_id):
        return os.path.join(self.get_trial_dir(trial_id), CHECKPOINT_NAME)

    def _build_hypermodel(self, hp):
        model = kt.Tuner._build_hypermodel(self, hp)
        parent = hp.values.get("tuner/trial_id")
        if parent is not None:  # a promoted trial starts from its parent's best epoch
            load_variables(model, self._get_checkpoint_fname(parent))
        if self._resume_weights is not None:  # an interrupted trial, from its last completed epoch
            load_variables(model, self._resume_weights)
        return model

    def _try_build(self, hp):
        t0 = time.perf_counter()
        # Without a collection pass: that costs ~0.5 s a trial, Python collects on its own, and what
        # TensorFlow keeps per model is bounded by handing over to a fresh trial process.
        keras.backend.clear_session(free_memory=False)
        model = self._build_hypermodel(hp)
        self._build_seconds = time.perf_counter() - t0
        return model

    def _build_and_fit_model(self, trial, *args, **kwargs):
        record = self.records[trial.trial_id]
        self._build_seconds = 0.0
        before0 = record.checkpoint_seconds
        t0 = time.perf_counter()
        try:
            results = super()._build_and_fit_model(trial, *args, **kwargs)
        finally:
            record.build_seconds = round(record.build_seconds + self._build_seconds, 3)
            # Training and validation only: checkpoint writes during fit are overhead.
            record.fit_seconds = round(record.fit_seconds + time.perf_counter() - t0 - self._build_seconds
                                       - (record.checkpoint_seconds - before0), 3)
        history = getattr(results, "history", {})
        record.history = {k: [float(x) for x in v] for k, v in history.items()}
        return results

    def on_trial_end(self, trial):
        # The record first: a kill between the oracle's saving the trial as ended (after which a
        # resumed search never runs it again) and the record's save must not lose the record.
        record = self.records.setdefault(trial.trial_id, TrialRecord(trial.trial_id))
        record.seconds = round(time.time() - (record.started or time.time()), 3)
        self.folder.save_ending(record)
        try:
            super().on_trial_end(trial)  # the oracle records the trial (and may declare systematic failure)
            kill_point(f"ended@{trial.trial_id}")
        finally:
            self._after_trial(trial, record)

    def recover_ended(self) -> list[str]:
        """Records of trials killed between the oracle's saving their end and their record's save
        (`on_trial_end`): completed from the oracle's view of the trial and saved. Copies of trials
        the oracle has not seen end are dropped (those trials run again or resume). Needs the
        oracle itself (standalone or chief). Returns the ids of the records saved."""
        saved, ending = [], self.folder.ending_records()
        records = self.folder.records() if ending else {}
        for trial_id, record in ending.items():
            trial = self.oracle.trials.get(trial_id)
            saved_already = trial_id in records and records[trial_id].status in FINISHED  # killed as it was dropped
            if trial is None or trial.status not in FINISHED or saved_already:
                self.folder.drop_ending(trial_id)
                continue
            self._close_record(record, trial, trial)
            self.folder.save_record(record)
            saved.append(trial_id)
        return saved

    def _close_record(self, record: TrialRecord, ended, trial) -> None:
        """An ended trial's record: status, score, best step and the validation metrics at that step
        from the oracle's copy `ended`; its resume files removed and its error kept (and shown in
        TensorBoard) as `trial` says."""
        objective = self.oracle.objective.name
        record.status, record.score, record.best_step = ended.status, ended.score, ended.best_step
        record.objective, record.metrics = objective, best_epoch_metrics(ended)
        record.val_accuracy = ended.score if objective == "val_accuracy" else record.metrics.get("val_accuracy")
        if trial.status in FINISHED:
            clear_resume(pathlib.Path(self.get_trial_dir(trial.trial_id)))
        if trial.message and trial.status != "COMPLETED":
            record.error = last_line(trial.message)
            if record.run:
                write_status(self.logdir / record.run, f"trial {trial.trial_id} {trial.status}: {record.error}")

    def _after_trial(self, trial, record: TrialRecord):
        # The oracle's view for the result: a worker's own copy has no score.
        self._close_record(record, self.oracle.get_trial(trial.trial_id), trial)
        if self.on_trial_done:
            self.on_trial_done(self, trial, record)


def error_line(error: BaseException) -> str:
    """The first line of an error's message (TensorFlow's errors keep it in `.message`)."""
    text = str(getattr(error, "message", None) or error)
    return text.splitlines()[0] if text else type(error).__name__


def best_epoch_metrics(trial) -> dict[str, float]:
    """Every validation metric of a keras-tuner `Trial` at its best step, as the oracle recorded
    them (every epoch's logs are reported to it); {} before it has a best step."""
    out = {}
    for name, history in sorted(trial.metrics.metrics.items()):
        if name.startswith("val_"):
            out.update({name: float(obs.mean()) for obs in history.get_history() if obs.step == trial.best_step})
    return out


def configuration_seed(seed: int, run: str) -> int:
    """The random seed a configuration trains with in a search of `seed` (`run`: its TensorBoard run
    name): the same whatever order the trials run in."""
    return (seed * 1_000_003 + zlib.crc32(run.encode())) % 2**31
