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

import json
import math
import os
import pathlib
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import keras
import keras_tuner as kt
from keras_tuner.src import config as kt_config
from keras_tuner.src.engine import tuner_utils
from keras_tuner.src.tuners.hyperband import HyperbandOracle

from .checkpoints import CHECKPOINT_NAME, load_variables, save_variables
from .errors import SystematicFailure
from .faults import FaultInjector, RoundScores, fault_for, score_step
from .hypermodel import ResNetHyperModel
from .ranking import trial_key
from .runtime import write_json
from .tensorboard_log import TrialLogger, tensorboard_callback, write_status

MAX_DRAWS = 1000
SAME_ERROR_LIMIT = 3      # at least this many failures in a row with one error (see `systematic_failure`)
# Failures that belong to their configuration: recorded and scored as failed, never a reason to stop.
CONFIGURATION_FAILURES = ("the loss became NaN", "out of memory at batch size")


def keras_tuner_debug(on: bool) -> None:
    """keras-tuner's DEBUG flag (it prints every failed trial's traceback when on). This module is
    the only one that touches keras-tuner's private modules."""
    kt_config.DEBUG = on


def _last_line(message: str) -> str:
    """The last line of a traceback: the exception's type and message."""
    last = message.strip().splitlines()[-1] if message and message.strip() else "unknown error"
    return last.replace("keras_tuner.src.errors.FailedTrialError: ", "")[:300]


def _error_key(message: str) -> str:
    """What makes two failures "the same": the last line without trial-specific numbers."""
    return "".join(ch for ch in _last_line(message) if not ch.isdigit())


class ResNetOracle(HyperbandOracle):
    """Hyperband whose random draws are only ever valid configurations, and which knows which
    trials' checkpoints can still be promoted.

    `check(values)` returns None for a point that can be built within the cost limits, else the
    reason; rejected draws are drawn again from the same seeded stream, so they never become
    trials (and never count towards consecutive failures).
    """

    def __init__(self, *args, check: Callable[[Mapping[str, Any]], str | None] | None = None, **kwargs):
        self.check = check
        self.rejected = 0
        self.lineage: dict[str, dict[str, Any]] = {}   # trial id -> {"bracket_run", "round"}
        self.bracket_runs: dict[str, dict[str, Any]] = {}  # first trial id -> {"bracket", "rounds"}
        self.streak_from = 0  # failures ended before this index of end_order no longer count
        super().__init__(*args, **kwargs)

    def _random_values(self):
        for _ in range(MAX_DRAWS):
            values = super()._random_values()
            if values is None or self.check is None or self.check(values) is None:
                return values
            self.rejected += 1
        return None

    def populate_space(self, trial_id):
        """Hyperband's next trial: fill the open round 0s, promote, or open the next bracket.

        Unlike keras-tuner's own version, a failed trial counts as finished (with no score): a
        round whose trials all finished promotes its best completed ones, so one failure does
        not stall the whole bracket. A promotion slot with no completed candidate stays empty.
        """
        self._remove_completed_brackets()
        for bracket in self._brackets:
            b, rounds = bracket["bracket_num"], bracket["rounds"]
            if len(rounds[0]) < self._get_size(b, 0):
                return self._random_trial(trial_id, bracket)
            for r in range(1, len(rounds)):
                response = self._promote(trial_id, bracket, r)
                if response is not None:
                    return response
        if self._current_bracket == 0 and self._current_iteration + 1 == self.hyperband_iterations:
            return {"status": "IDLE"} if self.ongoing_trials else {"status": "STOPPED"}
        self._increment_bracket_num()
        self._start_new_bracket()
        return self._random_trial(trial_id, self._brackets[-1])

    def _promote(self, trial_id, bracket, r):
        """Promote the best finished trial of round r-1 into round r, as keras-tuner does (once
        more than ``size(r-1) - size(r)`` of the waiting trials have finished), or None."""
        b, rounds = bracket["bracket_num"], bracket["rounds"]
        size, past_size = self._get_size(b, r), self._get_size(b, r - 1)
        if len(rounds[r]) >= size:
            return None
        taken = {info["past_id"] for info in rounds[r]}
        waiting = [self.trials[info["id"]] for info in rounds[r - 1]
                   if info["id"] is not None and info["id"] not in taken]
        finished = [t for t in waiting if t.status in ("COMPLETED", "FAILED", "INVALID")]
        if len(finished) <= past_size - size:
            return None
        scored = [t for t in finished if t.status == "COMPLETED" and t.score is not None]
        if not scored:
            if len(finished) == len(waiting):  # every candidate failed: close the round's open slots
                rounds[r].extend({"past_id": None, "id": None} for _ in range(size - len(rounds[r])))
            return None
        best = min(scored, key=trial_key)  # ties: the one order every part of the search uses
        values = best.hyperparameters.values.copy()
        values.update({"tuner/trial_id": best.trial_id, "tuner/epochs": self._get_epochs(b, r),
                       "tuner/initial_epoch": self._get_epochs(b, r - 1), "tuner/bracket": b, "tuner/round": r})
        rounds[r].append({"past_id": best.trial_id, "id": trial_id})
        self._record_lineage(trial_id, values)
        return {"status": "RUNNING", "values": values}

    def _random_trial(self, trial_id, bracket):
        response = super()._random_trial(trial_id, bracket)
        if response.get("status") == "RUNNING":
            self._record_lineage(trial_id, response["values"], bracket["rounds"][0][0]["id"])
        return response

    def _record_lineage(self, trial_id, values, first_id=None):
        parent = values.get("tuner/trial_id")
        run = self.lineage[parent]["bracket_run"] if parent is not None else first_id
        round_num = int(values["tuner/round"])
        self.lineage[trial_id] = {"bracket_run": run, "round": round_num}
        entry = self.bracket_runs.setdefault(run, {"bracket": int(values["tuner/bracket"]), "rounds": {}})
        entry["rounds"].setdefault(str(round_num), []).append(trial_id)

    def get_best_trials(self, num_trials=1):
        """The best trials in `tuning.ranking`'s total order (keras-tuner's own sort leaves ties in
        dict order, which depends on the order trials were reloaded from disk)."""
        return sorted(self.trials.values(), key=trial_key)[:num_trials]

    def dead_checkpoints(self) -> set[str]:
        """Finished trials whose checkpoint Hyperband will never load again."""
        dead = set()
        for entry in self.bracket_runs.values():
            b, rounds = entry["bracket"], entry["rounds"]
            for r in range(b + 1):
                ids = rounds.get(str(r), [])
                if r == b:  # the bracket's last round: nothing left to promote to
                    dead.update(ids)
                    continue
                nxt = rounds.get(str(r + 1), [])
                children = {self.trials[c].hyperparameters.values.get("tuner/trial_id"): c for c in nxt}
                if len(nxt) == self._get_size(b, r + 1):
                    dead.update(i for i in ids if i not in children)  # passed over for good
                # A parent is no longer needed once its promoted child has finished.
                dead.update(p for p, c in children.items() if self.trials[c].status in ("COMPLETED", "FAILED"))
        dead.update(t for t, trial in self.trials.items() if trial.status in ("FAILED", "INVALID"))
        finished = {t for t, trial in self.trials.items() if trial.status in ("COMPLETED", "FAILED", "INVALID")}
        best = self.get_best_trials(1)
        return (dead & finished) - ({best[0].trial_id} if best else set())

    def planned_trials(self) -> list[tuple[int, int, int, int]]:
        """(bracket, round, epochs, initial_epoch) of every trial a complete search runs."""
        out = []
        iterations = self.hyperband_iterations if math.isfinite(self.hyperband_iterations) else 1
        for _ in range(int(iterations)):
            for b in reversed(range(self._get_num_brackets())):
                for r in range(self._get_num_rounds(b)):
                    epochs = self._get_epochs(b, r)
                    start = self._get_epochs(b, r - 1) if r else 0
                    out += [(b, r, epochs, start)] * self._get_size(b, r)
        return out

    def get_state(self):
        state = super().get_state()
        state.update({"rejected": self.rejected, "lineage": self.lineage, "bracket_runs": self.bracket_runs,
                      "streak_from": self.streak_from})
        return state

    def set_state(self, state):
        super().set_state(state)
        self.rejected = state.get("rejected", 0)
        self.lineage = state.get("lineage", {})
        self.bracket_runs = state.get("bracket_runs", {})
        self.streak_from = state.get("streak_from", 0)

    def end_trial(self, trial):
        self._stop_reason = None
        try:
            super().end_trial(trial)
        finally:  # here, so that in distributed tuning the chief prunes for every worker
            # keras-tuner saves before it takes the trial off the running list: save again, or a
            # process killed now would run the ended trial once more when the search resumes.
            self.save()
            for dead in self.dead_checkpoints():
                pathlib.Path(self._get_trial_dir(dead), CHECKPOINT_NAME).unlink(missing_ok=True)
        if self._stop_reason:  # raised only now, once the trial's end is saved
            raise SystematicFailure(self._stop_reason)

    # keras-tuner writes these files in place; a kill mid-write would corrupt them.
    def save(self):
        write_json(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        write_json(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"), trial.get_state())

    def forget_failures(self) -> None:
        """A new session of the search (the user ran the command again): failures so far no
        longer count towards a systematic stop, so a search stopped for a cause that has been
        fixed goes on."""
        self.streak_from = len(self.end_order)

    def _check_consecutive_failures(self):
        """Stop only on systematic failure, with a one-line reason (raised by `end_trial`)."""
        self._stop_reason = systematic_failure([self.trials[t] for t in self.end_order[self.streak_from:]],
                                               self.hyperparameters)


def is_configuration_failure(message: str | None) -> bool:
    """NaN loss, or out of memory at the smallest batch size: a result for that configuration."""
    return any(phrase in _last_line(message or "") for phrase in CONFIGURATION_FAILURES)


def _tuned(hp) -> bool:
    """Whether a hyperparameter can take more than one value."""
    if isinstance(hp, kt.engine.hyperparameters.Fixed):
        return False
    if isinstance(hp, kt.engine.hyperparameters.Choice):
        return len(hp.values) > 1
    if hasattr(hp, "min_value"):
        return hp.min_value != hp.max_value
    return True  # Boolean


def systematic_failure(ended, hyperparameters) -> str | None:
    """The reason to stop, or None.

    `ended`: trials in the order they ended. The failures at the end of it count, skipping
    configuration failures (NaN, out of memory), which neither count nor break the run of
    failures. It is systematic when at least `SAME_ERROR_LIMIT` of them failed with the same
    error and their configurations differ in every tuned value they share: then no value
    explains the failure. (Three failures of one bottleneck-only bug are not systematic; the
    search goes on, and stops once failures span both block types.)
    """
    streak = []
    for trial in reversed(ended):
        if trial.status != "FAILED":
            break
        if not is_configuration_failure(trial.message):
            streak.append(trial)
    if len(streak) < SAME_ERROR_LIMIT:
        return None
    key = _error_key(streak[0].message)
    same = []
    for trial in streak:
        if _error_key(trial.message) != key:
            break
        same.append(trial)
    if len(same) < SAME_ERROR_LIMIT:
        return None
    for hp in hyperparameters.space:
        if not _tuned(hp):
            continue
        seen = [t.hyperparameters.values[hp.name] for t in same if hp.name in t.hyperparameters.values]
        if len(seen) >= 2 and len(set(map(str, seen))) == 1:
            return None  # every failure shares this value: it may be the cause
    return (f"the last {len(same)} trials all failed with the same error, in configurations that differ in "
            f"every tuned value: {_last_line(same[0].message)}")


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch (the first includes tracing the training step) into `record`."""

    def __init__(self, record: dict):
        super().__init__()
        self.record = record

    def __deepcopy__(self, memo):  # keras-tuner deep-copies callbacks; keep writing to the same record
        return EpochTimer(self.record)

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.record.setdefault("epoch_seconds", []).append(round(time.perf_counter() - self._t0, 3))


def _add_checkpoint_time(record: dict, t0: float) -> None:
    record["checkpoint_seconds"] = round(record.get("checkpoint_seconds", 0.0) + time.perf_counter() - t0, 3)


class ResumeCheckpoint(keras.callbacks.Callback):
    """After every epoch: weights + optimiser + random state, and the epoch and counters."""

    def __init__(self, trial_dir: pathlib.Path, state: dict, objective: kt.Objective, record: dict):
        super().__init__()
        self.trial_dir, self.state, self.objective = pathlib.Path(trial_dir), state, objective
        self.record = record

    def __deepcopy__(self, memo):  # keep sharing `state` with the schedule's callback
        return ResumeCheckpoint(self.trial_dir, self.state, self.objective, self.record)

    def on_epoch_end(self, epoch, logs=None):
        t0 = time.perf_counter()
        self._save(epoch, logs)
        _add_checkpoint_time(self.record, t0)

    def _save(self, epoch, logs):
        logs = logs or {}
        if self.objective.has_value(logs):
            value = self.objective.get_value(logs)
            best = self.state.get("best")
            if best is None or self.objective.better_than(value, best):
                self.state["best"] = float(value)
        name = f"resume-{epoch}.npz"
        save_variables(self.model, self.trial_dir / name)
        old = self.state.get("weights")
        self.state.update({"epoch": epoch, "weights": name})
        write_json(self.trial_dir / "resume.json", self.state)  # the switch to the new file is atomic
        if old and old != name:
            (self.trial_dir / old).unlink(missing_ok=True)


class TimedSaveBestEpoch(tuner_utils.SaveBestEpoch):
    """keras-tuner's best-epoch checkpoint, with the time it takes added to `record`.

    When this epoch's resume checkpoint (the same variables) was just written, the best-epoch
    checkpoint becomes a hard link to it instead of a second copy.
    """

    def __init__(self, objective, filepath, record: dict, resume: dict | None = None):
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
        if self.resume is None or self.resume.get("epoch") != self._epoch:
            return False
        target = pathlib.Path(self.filepath)
        source = target.parent / self.resume["weights"]  # both live in the trial's folder
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


class ResNetTuner(kt.Hyperband):
    """Hyperband over a `ResNetHyperModel`.

    Args:
        hypermodel: the hypermodel (its sampler checks validity).
        results_dir: ``results/<name>``; keras-tuner's own state goes to its ``tuner/`` subfolder.
        max_epochs, factor, iterations: the Hyperband budget.
        seed: seeds the oracle (the sequence of trials) and each trial's initial weights.
        on_trial_done: called with (tuner, trial, record) after each trial, for results/progress.
        overwrite: start afresh instead of resuming.
    """

    def __init__(self, hypermodel: ResNetHyperModel, results_dir: pathlib.Path, *, max_epochs: int, factor: int,
                 iterations: int, seed: int, on_trial_done: Callable | None = None, overwrite: bool = False,
                 **kwargs):
        oracle = ResNetOracle(
            objective=kt.Objective("val_accuracy", "max"), max_epochs=max_epochs, factor=factor,
            # keras-tuner treats seed 0 as "no seed" (`seed or random.randint(...)`), hence the + 1.
            hyperband_iterations=iterations, seed=seed + 1, check=hypermodel.sampler.check,
        )
        self.results_dir = pathlib.Path(results_dir)
        self.logdir = self.results_dir / "tensorboard"
        self.seed = seed
        self.on_trial_done = on_trial_done
        self.records: dict[str, dict[str, Any]] = {}
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
        hp = trial.hyperparameters
        values = hp.values
        sampler = self.hypermodel.sampler
        spec, cfg, cost = sampler.resolve(values)
        run = self.run_name(trial.trial_id)
        parent = values.get("tuner/trial_id")
        bracket, round_num = int(values.get("tuner/bracket", 0)), int(values.get("tuner/round", 0))
        epochs, initial_epoch = int(values.get("tuner/epochs", 1)), int(values.get("tuner/initial_epoch", 0))
        trial_dir = pathlib.Path(self.get_trial_dir(trial.trial_id))
        resume = _read_resume(trial_dir)
        record = {
            "trial_id": trial.trial_id, "run": run, "parent": parent, "bracket": bracket, "round": round_num,
            "initial_epoch": initial_epoch, "epochs": epochs,
            "params": cost.params, "flops": cost.flops, "spec": spec.to_dict(),
            "values": {k: v for k, v in values.items() if not k.startswith("tuner/")},  # keras-tuner's names
            "hyperparameters": sampler.describe(values), "started": time.time(),
        }
        self.records[trial.trial_id] = record
        state: dict[str, Any] = {}
        self._resume_weights = None
        if resume is not None:  # an interrupted trial: continue after its last completed epoch
            state = resume
            self._resume_weights = trial_dir / resume["weights"]
            record["resumed_from_epoch"] = resume["epoch"] + 1
            if resume["epoch"] + 1 >= epochs:  # killed after its last epoch, before it was recorded
                return {"val_accuracy": resume["best"]}
        start = initial_epoch if resume is None else resume["epoch"] + 1
        self._seed_run(run)

        checkpoint = TimedSaveBestEpoch(self.oracle.objective, self._get_checkpoint_fname(trial.trial_id), record,
                                        resume=state)
        best_before = self.oracle.get_trial(parent).score if parent is not None else None
        if resume is not None and resume.get("best") is not None:
            checkpoint.best_value = resume["best"]
            best_before = max(best_before or 0.0, resume["best"])
        fault = fault_for(trial.trial_id)
        base_callbacks = list(kwargs.pop("callbacks", []))

        def attempt(batch_size: int):
            callbacks = [EpochTimer(record), *base_callbacks, tensorboard_callback(self.logdir / run),
                         TrialLogger(self.logdir / run, run, {**record["hyperparameters"], "bracket": bracket},
                                     cost.params, cost.flops, bracket, round_num,
                                     first_round=parent is None and resume is None, best_so_far=best_before),
                         ResumeCheckpoint(trial_dir, state, self.oracle.objective, record),
                         tuner_utils.TunerCallback(self, trial), checkpoint]
            if fault:
                callbacks.append(FaultInjector(fault, batch_size, cfg.batch_size))
            if score_step():  # first, so that every other callback sees the rounded score
                callbacks.insert(0, RoundScores(score_step()))
            return self._build_and_fit_model(trial, *args, callbacks=callbacks, epochs=epochs, initial_epoch=start,
                                             batch_size=batch_size, resume_state=state, **kwargs)

        import tensorflow as tf

        try:
            try:
                history = attempt(cfg.batch_size)
            except tf.errors.ResourceExhaustedError:
                if cfg.batch_size < 2:
                    raise
                record["oom_retry_batch_size"] = cfg.batch_size // 2
                keras.backend.clear_session()
                history = attempt(cfg.batch_size // 2)
        except tf.errors.ResourceExhaustedError as e:
            raise kt.errors.FailedTrialError(
                f"out of memory at batch size {cfg.batch_size} and again at {cfg.batch_size // 2}: "
                f"{str(e.message).splitlines()[0][:120]}") from None
        losses = history.history.get("loss", [])
        if any(not math.isfinite(v) for v in losses) or len(losses) < epochs - start:
            raise kt.errors.FailedTrialError(f"the loss became NaN in epoch {start + len(losses)} "
                                             f"(learning rate {cfg.learning_rate:.3g}); stopped by TerminateOnNaN")
        return history

    def _seed_run(self, run: str) -> None:
        """Same configuration, same initial weights, whatever order the trials run in."""
        keras.utils.set_random_seed((self.seed * 1_000_003 + zlib.crc32(run.encode())) % 2**31)

    def recreate_checkpoint(self, trial) -> float | None:
        """Train a finished trial's configuration again from scratch, for its epochs, and write its
        best-epoch checkpoint (for a best trial whose checkpoint is missing). Returns the best
        validation accuracy of the new training."""
        hp = trial.hyperparameters.copy()
        hp.values = {k: v for k, v in trial.hyperparameters.values.items() if k != "tuner/trial_id"}
        keras.backend.clear_session(free_memory=False)
        self._seed_run(self.run_name(trial.trial_id))
        self._resume_weights = None
        model = kt.Tuner._build_hypermodel(self, hp)  # no parent: from scratch
        save = TimedSaveBestEpoch(self.oracle.objective, self._get_checkpoint_fname(trial.trial_id), {})
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
        before0 = record.get("checkpoint_seconds", 0.0)
        t0 = time.perf_counter()
        try:
            results = super()._build_and_fit_model(trial, *args, **kwargs)
        finally:
            record["build_seconds"] = round(record.get("build_seconds", 0.0) + self._build_seconds, 3)
            # Training and validation only: checkpoint writes during fit are overhead.
            record["fit_seconds"] = round(record.get("fit_seconds", 0.0) + time.perf_counter() - t0
                                          - self._build_seconds - (record.get("checkpoint_seconds", 0.0) - before0), 3)
        history = getattr(results, "history", {})
        record["history"] = {k: [float(x) for x in v] for k, v in history.items()}
        return results

    def on_trial_end(self, trial):
        try:
            super().on_trial_end(trial)  # the oracle records the trial (and may declare systematic failure)
        finally:
            self._after_trial(trial)

    def _after_trial(self, trial):
        record = self.records.setdefault(trial.trial_id, {"trial_id": trial.trial_id})
        record["seconds"] = round(time.time() - record.get("started", time.time()), 3)
        ended = self.oracle.get_trial(trial.trial_id)  # the oracle's view: a worker's own copy has no score
        record["status"] = ended.status
        record["val_accuracy"] = ended.score
        record["best_step"] = ended.best_step
        trial_dir = pathlib.Path(self.get_trial_dir(trial.trial_id))
        if trial.status in ("COMPLETED", "FAILED", "INVALID"):
            clear_resume(trial_dir)
        if trial.message and trial.status != "COMPLETED":
            record["error"] = _last_line(trial.message)
            if "run" in record:
                write_status(self.logdir / record["run"], f"trial {trial.trial_id} {trial.status}: {record['error']}")
        if self.on_trial_done:
            self.on_trial_done(self, trial, record)


def _read_resume(trial_dir: pathlib.Path) -> dict[str, Any] | None:
    path = trial_dir / "resume.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not (trial_dir / state.get("weights", "")).is_file():
        return None
    return state
