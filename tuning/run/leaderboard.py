"""The leaderboard: one row per trial, best first (`tuning.run.records`' order), as
``leaderboard.csv`` and ``leaderboard.md``."""

from __future__ import annotations

import csv
import io
import pathlib
from collections.abc import Iterable
from typing import Any

from .files import write_atomic
from .records import TrialRecord, record_key

FIXED_COLUMNS = ("trial_id", "run", "bracket", "round", "status", "epochs", "val_accuracy", "params", "flops",
                 "seconds")


def leaderboard_rows(records: Iterable[TrialRecord]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of the leaderboard, best first (`tuning.run.records`' order)."""
    recs = sorted(records, key=record_key)
    hp_cols: list[str] = []
    for rec in recs:
        for k in rec.hyperparameters:
            if k not in hp_cols:
                hp_cols.append(k)
    columns = [*FIXED_COLUMNS, *hp_cols, "error"]
    rows = []
    for rec in recs:
        row = {c: getattr(rec, c) for c in FIXED_COLUMNS}
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
    write_atomic(run_dir / "leaderboard.md", "# Leaderboard\n\nOne row per trial, best validation accuracy "
                 "first. `epochs` counts every epoch the configuration has trained, earlier rounds included.\n\n"
                 + "\n".join(lines) + "\n")


def cell(v: Any) -> str:
    """A value as the leaderboard's markdown shows it."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3g}"
    return str(v)
