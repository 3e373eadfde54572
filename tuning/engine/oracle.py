"""keras-tuner's Hyperband oracle, adapted for long unattended searches.

- No invalid trials: configurations that cannot be built or are over the cost limits are
  redrawn before they become trials.
- One order for "the best trial" (`tuning.run.records`), whatever the load order.
- Disk: a checkpoint is deleted as soon as Hyperband can no longer promote its trial (unless
  it is the best so far).
- Failures: the search stops only when failures are systematic (the same error again and
  again, in configurations that differ in every tuned value).
"""

from __future__ import annotations

import copy
import math
import os
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import keras_tuner as kt

from ..errors import SystematicFailure
from ..run.files import write_json
from ..run.folder import CHECKPOINT_NAME
from ..run.records import trial_key
from .kt_internals import HyperbandOracle

MAX_DRAWS = 1000
FINISHED = ("COMPLETED", "FAILED", "INVALID")  # trial statuses after its end
SAME_ERROR_LIMIT = 3      # at least this many failures in a row with one error (see `systematic_failure`)
# Failures that belong to their configuration: recorded and scored as failed, never a reason to stop.
CONFIGURATION_FAILURES = ("the loss became NaN", "out of memory at batch size")


def last_line(message: str) -> str:
    """The last line of a traceback: the exception's type and message."""
    last = message.strip().splitlines()[-1] if message and message.strip() else "unknown error"
    return last.replace("keras_tuner.src.errors.FailedTrialError: ", "")[:300]


def _error_key(message: str) -> str:
    """What makes two failures "the same": the last line without trial-specific numbers."""
    return "".join(ch for ch in last_line(message) if not ch.isdigit())


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
        self.budget_stop: str | None = None  # why the time budget stopped the search (`populate_space`)
        self.seeded: list[dict] = []  # known configurations, drawn before any random one (`_seeded_values`)
        self.seeded_used = 0
        super().__init__(*args, **kwargs)

    def _seeded_values(self) -> dict | None:
        """The next known configuration not tried yet (`seeded`: ``--try``, ``[[try]]``, a warm
        start's), or None once they are all drawn."""
        while self.seeded_used < len(self.seeded):
            values = self.seeded[self.seeded_used]
            self.seeded_used += 1
            if not self._duplicate(values):
                return dict(values)
        return None

    def first_round_size(self) -> int:
        """Trials in the first round of the search's first (most exploratory) bracket."""
        return self._get_size(self._get_num_brackets() - 1, 0)

    def _random_values(self):
        seeded = self._seeded_values()
        if seeded is not None:
            return seeded
        for _ in range(MAX_DRAWS):
            values = super()._random_values()
            if values is None or self.check is None or self.check(values) is None:
                return values
            self.rejected += 1
        return None

    # What choosing a trial changes, put back when the deadline refuses the trial (`populate_space`).
    UNDO = ("_brackets", "_current_bracket", "_current_iteration", "_seed_state", "lineage", "bracket_runs",
            "rejected", "seeded_used")
    deadline = None  # a `tuning.engine.budget.Deadline` when the search has a time budget
    planned_iterations = None  # the time budget's plan, when no number of iterations is set

    def populate_space(self, trial_id):
        """The next trial (`next_trial`); with a time budget, none if it is predicted to end past
        the deadline: the search stops, and the oracle is left as if it had not been asked, so
        that a larger budget later goes on with that very trial."""
        if self.deadline is None:
            return self.next_trial(trial_id)
        saved = {name: copy.deepcopy(getattr(self, name)) for name in self.UNDO if hasattr(self, name)}
        response = self.next_trial(trial_id)
        if response.get("status") == "RUNNING":
            reason = self.deadline.refuse(response["values"])
            if reason is not None:
                for name, value in saved.items():
                    setattr(self, name, value)
                self.budget_stop = reason
                return {"status": "STOPPED"}
        return response

    def next_trial(self, trial_id):
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
        if self._current_bracket == 0 and self._current_iteration + 1 >= self.hyperband_iterations:
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
        finished = [t for t in waiting if t.status in FINISHED]
        # A slot of round r-1 closed because every candidate for it failed counts as finished:
        # otherwise its last finished trials could never be promoted (nor their checkpoints freed).
        closed = sum(info["id"] is None for info in rounds[r - 1])
        if len(finished) + closed <= past_size - size:
            return None
        scored = [t for t in finished if t.status == "COMPLETED" and t.score is not None]
        if not scored:
            if len(finished) == len(waiting):  # every candidate failed: close the round's open slots
                rounds[r].extend({"past_id": None, "id": None} for _ in range(size - len(rounds[r])))
            return None
        best = min(scored, key=self.rank)  # ties: the one order every part of the search uses
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

    def iterations_begun(self) -> int:
        """Hyperband iterations begun so far (the last one may be unfinished)."""
        return self._current_iteration + 1 if self.trials else 0

    def get_best_trials(self, num_trials=1):
        """The best trials in `tuning.run.records`' total order (keras-tuner's own sort leaves ties in
        dict order, which depends on the order trials were reloaded from disk)."""
        return sorted(self.trials.values(), key=self.rank)[:num_trials]

    @property
    def maximize(self) -> bool:
        """Whether a higher score is better (the objective's direction)."""
        return self.objective.direction == "max"

    def rank(self, trial) -> tuple:
        """`tuning.run.records.trial_key` under this search's objective: smallest first = best."""
        return trial_key(trial, self.maximize)

    def dead_checkpoints(self) -> set[str]:
        """Finished trials whose checkpoint Hyperband will never load again. Every trial of a
        bracket that creates no more trials (keras-tuner's test: its last round is filled) is
        dead, even where an earlier round kept an open slot because a later round ran ahead."""
        dead = set()
        open_runs = {bracket["rounds"][0][0]["id"] for bracket in self._brackets
                     if bracket["rounds"][0] and len(bracket["rounds"][-1]) != self._get_size(
                         bracket["bracket_num"], len(bracket["rounds"]) - 1)}
        for run, entry in self.bracket_runs.items():
            b, rounds = entry["bracket"], entry["rounds"]
            if run not in open_runs:
                dead.update(i for ids in rounds.values() for i in ids)
                continue
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
        return self.deletable(dead)

    def deletable(self, dead: set[str]) -> set[str]:
        """Of the trials in `dead`, those whose checkpoint may be deleted: finished ones, but never
        the best trial, nor the parent of a trial that has not finished (which loads its parent's
        checkpoint when it starts, and again if it restarts before its first epoch ends)."""
        finished = {t for t, trial in self.trials.items() if trial.status in FINISHED}
        needed = {trial.hyperparameters.values.get("tuner/trial_id") for trial in self.trials.values()
                  if trial.status not in FINISHED}
        best = self.get_best_trials(1)
        return (dead & finished) - needed - ({best[0].trial_id} if best else set())

    def planned_trials(self) -> list[tuple[int, int, int, int]]:
        """(bracket, round, epochs, initial_epoch) of every trial a complete search runs."""
        out = []
        iterations = (self.hyperband_iterations if math.isfinite(self.hyperband_iterations)
                      else self.planned_iterations or 1)
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
                      "streak_from": self.streak_from, "seeded": self.seeded, "seeded_used": self.seeded_used})
        return state

    def set_state(self, state):
        iterations = self.hyperband_iterations  # this session's budget: a larger one extends the run
        super().set_state(state)
        self.hyperband_iterations = iterations
        self.rejected = state.get("rejected", 0)
        self.lineage = state.get("lineage", {})
        self.bracket_runs = state.get("bracket_runs", {})
        self.streak_from = state.get("streak_from", 0)
        self.seeded = state.get("seeded", [])
        self.seeded_used = state.get("seeded_used", 0)

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
    return any(phrase in last_line(message or "") for phrase in CONFIGURATION_FAILURES)


def is_tuned(hp) -> bool:
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
        if not is_tuned(hp):
            continue
        seen = [t.hyperparameters.values[hp.name] for t in same if hp.name in t.hyperparameters.values]
        if len(seen) >= 2 and len(set(map(str, seen))) == 1:
            return None  # every failure shares this value: it may be the cause
    return (f"the last {len(same)} trials all failed with the same error, in configurations that differ in "
            f"every tuned value: {last_line(same[0].message)}")

