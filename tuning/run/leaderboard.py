"""The leaderboard: one row per trial, best first (`tuning.run.records`' order), as
``leaderboard.csv`` and ``leaderboard.md``."""

from __future__ import annotations

import csv
import io
import pathlib
from collections.abc import Iterable
from typing import Any

from ..config import DEFAULT_OBJECTIVE, OBJECTIVES
from .files import write_atomic
from .records import TrialRecord, record_key

FIXED_COLUMNS = ("trial_id", "run", "bracket", "round", "status", "epochs")
COST_COLUMNS = ("params", "flops", "seconds")


def objective_of(records: Iterable[TrialRecord]) -> str:
    """The objective the records were ranked by (a run's records share one)."""
    return next((r.objective for r in records if r.objective), DEFAULT_OBJECTIVE)


def leaderboard_rows(records: Iterable[TrialRecord]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of the leaderboard, best first (`tuning.run.records`' order): the trial, the
    run's objective, every other validation metric recorded (at each trial's best epoch), cost,
    the hyperparameters and the error of a failed trial."""
    recs = sorted(records, key=record_key)
    objective = objective_of(recs)
    metric_cols = [objective, *(m for m in OBJECTIVES if m != objective and any(
        m in r.metrics or (m == "val_accuracy" and r.val_accuracy is not None) for r in recs))]
    hp_cols: list[str] = []
    for rec in recs:
        for k in rec.hyperparameters:
            if k not in hp_cols:
                hp_cols.append(k)
    columns = [*FIXED_COLUMNS, *metric_cols, *COST_COLUMNS, *hp_cols, "error"]
    rows = []
    for rec in recs:
        row = {c: getattr(rec, c) for c in FIXED_COLUMNS}
        row.update({m: rec.metrics.get(m) for m in metric_cols})
        row.update({"val_accuracy": rec.val_accuracy} if "val_accuracy" in metric_cols else {})
        row[objective] = rec.score
        row.update({c: getattr(rec, c) for c in COST_COLUMNS})
        row.update({c: rec.hyperparameters.get(c) for c in hp_cols})
        row["error"] = rec.error if rec.error is not None else ""
        rows.append(row)
    return columns, rows


def write_leaderboard(run_dir: pathlib.Path, records: Iterable[TrialRecord]) -> None:
    """``leaderboard.csv`` and ``leaderboard.md`` in `run_dir`: one row per trial, best first."""
    columns, rows = leaderboard_rows(records)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    write_atomic(run_dir / "leaderboard.csv", buf.getvalue())
    md_cols = [c for c in columns if c != "error" or any(r["error"] for r in rows)]
    lines = ["| " + " | ".join(md_cols) + " |", "|" + "---|" * len(md_cols)]
    for row in rows:
        lines.append("| " + " | ".join(cell(row[c]).replace("|", "/") for c in md_cols) + " |")
    write_atomic(run_dir / "leaderboard.md", f"# Leaderboard\n\nOne row per trial, best {columns[len(FIXED_COLUMNS)]} "
                 "first. `epochs` counts every epoch the configuration has trained, earlier rounds included.\n\n"
                 + "\n".join(lines) + "\n")


def cell(v: Any) -> str:
    """A value as the leaderboard's markdown shows it."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3g}"
    return str(v)
