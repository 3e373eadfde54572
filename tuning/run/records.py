"""A trial's record (``trials/<id>.json``) and the one definition of "the best trial".

The order on trials, best first, used by every part of the search (checkpoint pruning,
promotions, the final pick, ``best.json``, the leaderboard, the report and export):

1. a completed trial with a finite score before any other;
2. a better score: the run's objective at the trial's best epoch (higher, or lower for
   ``val_loss``);
3. fewer epochs trained (the same score for less compute: cheaper to retrain, and Hyperband
   promoting it further bought nothing);
4. the lower trial id (the earlier trial; ids never change).

It depends on each trial's own recorded values only, never on dict order, on which process
asks, or on the order trials were reloaded in.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import field
from typing import Any

from ..config import maximized

# The order of a trial file's keys: the order in which a trial fills them in.
FILE_ORDER = ("trial_id", "run", "parent", "bracket", "round", "initial_epoch", "epochs", "params", "flops", "spec",
               "values", "hyperparameters", "started", "resumed_from_epoch", "epoch_seconds", "checkpoint_seconds",
               "oom_retry_batch_size", "build_seconds", "compile_seconds", "compile_measure", "fit_seconds",
               "history", "worker", "seconds", "status",
               "objective", "score", "val_accuracy", "metrics", "best_step", "error")
# Keys today's trial files carry even when null, and the field that says they apply: a trial that
# ran names its parent (null in a first round); an ended trial its score and best step (null if it failed).
NULL_KEPT = {"parent": "run", "val_accuracy": "status", "best_step": "status", "score": "objective"}


@dataclasses.dataclass
class TrialRecord:
    """One ``trials/<id>.json``; the engine fills it while the trial runs."""

    trial_id: str
    run: str | None = None                   # the configuration's TensorBoard run (trial_<first trial>)
    parent: str | None = None                # the trial Hyperband promoted this one from
    bracket: int | None = None
    round: int | None = None
    initial_epoch: int = 0
    epochs: int | None = None                # every epoch of the configuration, earlier rounds included
    params: int | None = None
    flops: int | None = None
    spec: dict | None = None
    values: dict | None = None               # keras-tuner's names
    hyperparameters: dict = field(default_factory=dict)
    started: float | None = None
    worker: str | None = None                # keras-tuner's tuner id of the process that ran it
    status: str | None = None
    objective: str | None = None             # what the run selects on (None: a record from before objectives)
    score: float | None = None               # the objective at the trial's best epoch: what ranks it
    val_accuracy: float | None = None        # validation accuracy at that epoch
    metrics: dict = field(default_factory=dict)  # every validation metric at that epoch
    best_step: int | None = None
    seconds: float | None = None
    fit_seconds: float = 0.0
    build_seconds: float = 0.0
    compile_seconds: float = 0.0             # part of fit_seconds: tracing and compiling the train/test steps
    compile_measure: str | None = None       # "measured" (JAX's compile events) or "estimated" (first batches)
    checkpoint_seconds: float = 0.0
    epoch_seconds: list = field(default_factory=list)
    history: dict = field(default_factory=dict)
    resumed_from_epoch: int | None = None
    oom_retry_batch_size: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON of the file, keys in the order a trial fills them in. Keys whose value is None
        are left out, except those the files have always carried (``parent`` of a trial that ran,
        ``val_accuracy`` and ``best_step`` of one that ended, ``score`` of one ranked by an objective).
        A record from before objectives keeps its shape: its score is its val_accuracy, not a key."""
        out = dataclasses.asdict(self)
        if self.objective is None:
            out["score"] = None
        out["metrics"] = out["metrics"] or None
        keys = sorted(out, key=lambda k: FILE_ORDER.index(k) if k in FILE_ORDER else len(FILE_ORDER))
        return {k: out[k] for k in keys
                if out[k] is not None or (k in NULL_KEPT and out[NULL_KEPT[k]] is not None)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialRecord:
        """A record from a trial file's JSON, of any version: unknown keys are ignored, a null
        where the field has a default takes the default."""
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            value = d[f.name]
            if value is None and (f.default is not None or f.default_factory is not dataclasses.MISSING):
                continue
            kwargs[f.name] = value
        return cls(**kwargs)

    def __post_init__(self):
        if self.objective is None and self.score is None:  # from before objectives: it ranked by val_accuracy
            self.score = self.val_accuracy

    @property
    def completed(self) -> bool:
        return self.status == "COMPLETED" and self.score is not None

    @property
    def maximized(self) -> bool:
        """Whether a higher score is better (the run's objective's direction)."""
        return maximized(self.objective)


def rank_key(score: float | None, epochs: int | None, trial_id: str, completed: bool = True,
             maximize: bool = True) -> tuple:
    """Sort key, smallest first = best; `maximize`: a higher score is better."""
    scored = completed and score is not None and math.isfinite(score)
    value = (-score if maximize else score) if scored else 0.0
    return (not scored, value, epochs if epochs is not None else math.inf, str(trial_id))


def record_key(record: TrialRecord) -> tuple:
    """`rank_key` of a `TrialRecord` (a record without a status counts as completed)."""
    return rank_key(record.score, record.epochs, record.trial_id, record.status in (None, "COMPLETED"),
                    record.maximized)


def trial_key(trial, maximize: bool = True) -> tuple:
    """`rank_key` of a keras-tuner `Trial` (Hyperband's ``tuner/epochs`` is its epoch count)."""
    return rank_key(trial.score, trial.hyperparameters.values.get("tuner/epochs"), trial.trial_id,
                    str(trial.status) == "COMPLETED", maximize)


def better(a: float, b: float | None, maximize: bool) -> bool:
    """Whether score `a` beats `b` (anything beats None)."""
    return b is None or (a > b if maximize else a < b)


def best_record(records: Iterable[TrialRecord]) -> TrialRecord | None:
    """The best completed record, or None when none completed with a score."""
    ranked = sorted(records, key=record_key)
    return ranked[0] if ranked and not record_key(ranked[0])[0] else None


def best_so_far(records: Iterable[TrialRecord], clock) -> list[tuple[float, float | None]]:
    """(``clock(end time)``, best score so far or None) after every ended trial (one with
    ``started`` and ``seconds``), in the order they ended."""
    ended = sorted((r for r in records if r.started is not None and r.seconds is not None),
                   key=lambda r: (r.started + r.seconds, r.trial_id))
    best, out = None, []
    for r in ended:
        if r.completed and better(r.score, best, r.maximized):
            best = float(r.score)
        out.append((clock(r.started + r.seconds), best))
    return out
