"""The one definition of "the best trial", used by every part of the search.

A total order on trials, best first:

1. a completed trial with a finite score before any other;
2. higher validation accuracy;
3. fewer epochs trained (the same score for less compute: cheaper to retrain, and Hyperband
   promoting it further bought nothing);
4. the lower trial id (the earlier trial; ids never change).

It depends on each trial's own recorded values only, never on dict order, on which process
asks, or on the order trials were reloaded in. Checkpoint pruning, promotions, the final pick,
``best.json``, the leaderboard, the report and export all sort with `rank_key`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import TrialRecord


def rank_key(score: float | None, epochs: int | None, trial_id: str, completed: bool = True) -> tuple:
    """Sort key, smallest first = best. Scores are validation accuracies (higher is better)."""
    scored = completed and score is not None and math.isfinite(score)
    return (not scored, -score if scored else 0.0, epochs if epochs is not None else math.inf, str(trial_id))


def record_key(record: TrialRecord) -> tuple:
    """`rank_key` of a `TrialRecord` (a record without a status counts as completed)."""
    return rank_key(record.val_accuracy, record.epochs, record.trial_id, record.status in (None, "COMPLETED"))


def trial_key(trial) -> tuple:
    """`rank_key` of a keras-tuner `Trial` (Hyperband's ``tuner/epochs`` is its epoch count)."""
    return rank_key(trial.score, trial.hyperparameters.values.get("tuner/epochs"), trial.trial_id,
                    str(trial.status) == "COMPLETED")


def best_record(records: Iterable[TrialRecord]) -> TrialRecord | None:
    """The best completed record, or None when none completed with a score."""
    ranked = sorted(records, key=record_key)
    return ranked[0] if ranked and not record_key(ranked[0])[0] else None
