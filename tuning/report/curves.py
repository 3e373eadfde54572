"""The best validation accuracy so far against wall time (the anytime curve) of a run, and the
maths on such curves that the report, the comparison and the benchmarks share."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..run.opened import Run
from ..run.records import best_so_far
from .plots import Curve


def algorithm(run: Run) -> str:
    """The run's search algorithm, ``"hyperband"``, ``"bohb"`` or ``"asha"`` (older runs: Hyperband)."""
    s = run.summary or {}
    return s.get("algorithm") or run.info.get("algorithm") or (run.info.get("config") or {}).get("algorithm") \
        or "hyperband"


def anytime_curve(run: Run) -> Curve:
    """The best score (the run's objective) so far, None until a trial completed, against the run's wall
    seconds, one point per ended trial in the order they ended: summary.json's ``anytime``, or else from the
    trial records."""
    points = (run.summary or {}).get("anytime")
    if points:
        return [(float(t), None if v is None else float(v)) for t, v in points]
    return curve_from_records(run.records.values())


def curve_from_records(records) -> Curve:
    """`anytime_curve` from trial records: each ends at ``started + seconds``, counted from the earliest start;
    the best is the best score of the completed trials so far. Gaps between sessions count as time."""
    records = list(records)
    starts = [r.started for r in records if r.started is not None]
    if not starts:
        return []
    origin = min(starts)
    return best_so_far(records, lambda end: float(end - origin))


def time_to_best(curve: Curve) -> tuple[float, float] | None:
    """(seconds, score): when the curve first reached its final best; None if no trial completed."""
    scored = [(t, v) for t, v in curve if v is not None]
    if not scored:
        return None
    final = scored[-1][1]  # the best so far only ever improves, whichever way the objective goes
    return next((t, v) for t, v in scored if v == final)


def best_at(curve: Curve, times: Sequence[float]) -> np.ndarray:
    """The curve's best so far at each time: NaN before its first completed trial, its last value after its end."""
    ts = np.array([t for t, _ in curve], dtype=float)
    vs = np.array([np.nan] + [np.nan if v is None else v for _, v in curve], dtype=float)
    return vs[np.searchsorted(ts, np.asarray(times, dtype=float), side="right")]  # index 0: before any trial ended


def algorithm_bands(curves: dict[str, list[Curve]], times: Sequence[float]) -> dict[str, tuple[np.ndarray, ...]]:
    """(median, 25th, 75th percentile) of the best so far at `times`, per algorithm that has at least 2 runs;
    NaN until every run of the algorithm has a completed trial."""
    out = {}
    for name, runs in curves.items():
        if len(runs) < 2:
            continue
        values = np.stack([best_at(c, times) for c in runs])
        full = ~np.isnan(values).any(axis=0)
        q = np.full((3, len(times)), np.nan)
        if full.any():
            q[:, full] = np.percentile(values[:, full], [50, 25, 75], axis=0)
        out[name] = (q[0], q[1], q[2])
    return out
