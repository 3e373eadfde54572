"""What a search writes under ``results/<name>/``.

- ``run.json``: what the run is (space, dataset, seed, budget); a resumed run must match it.
- ``trials/<id>.json``: one record per finished trial (our own, next to keras-tuner's state).
- ``leaderboard.csv`` / ``leaderboard.md``: one row per trial, best first.
- ``best.json``: the best trial, its spec and its test accuracy (evaluated once).
- ``summary.json``: trials, wall and fit seconds, best accuracies, dataset, seed, versions.
- ``tuner/``: keras-tuner's own state (oracle, trials, checkpoints), so the run can resume.
- ``tensorboard/``: one run per configuration plus the HParams experiment.

Every file is written to a temporary name and renamed, so none is ever half-written.
"""

from __future__ import annotations

import csv
import io
import json
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

from .ranking import record_key
from .runtime import write_atomic, write_json

FIXED_COLUMNS = ("trial_id", "run", "bracket", "round", "status", "epochs", "val_accuracy", "params", "flops",
                 "seconds")


def load_records(run_dir: pathlib.Path) -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((run_dir / "trials").glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a record is only ever replaced atomically; skip anything unreadable
        out[rec["trial_id"]] = rec
    return out


def save_record(run_dir: pathlib.Path, record: Mapping[str, Any]) -> None:
    write_json(run_dir / "trials" / f"{record['trial_id']}.json", dict(record))


def leaderboard_rows(records: Iterable[Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of the leaderboard, best first (`tuning.ranking`'s order)."""
    recs = sorted(records, key=record_key)
    hp_cols: list[str] = []
    for rec in recs:
        for k in rec.get("hyperparameters", {}):
            if k not in hp_cols:
                hp_cols.append(k)
    columns = [*FIXED_COLUMNS, *hp_cols, "error"]
    rows = []
    for rec in recs:
        row = {c: rec.get(c) for c in FIXED_COLUMNS}
        row.update({c: rec.get("hyperparameters", {}).get(c) for c in hp_cols})
        row["error"] = rec.get("error", "")
        rows.append(row)
    return columns, rows


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3g}"
    return str(v)


def write_leaderboard(run_dir: pathlib.Path, records: Iterable[Mapping[str, Any]]) -> None:
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
        lines.append("| " + " | ".join(_fmt(row[c]).replace("|", "/") for c in md_cols) + " |")
    write_atomic(run_dir / "leaderboard.md", "# Leaderboard\n\nOne row per trial, best validation accuracy "
                 "first. `epochs` counts every epoch the configuration has trained, earlier rounds included.\n\n"
                 + "\n".join(lines) + "\n")


def write_best(run_dir: pathlib.Path, best: Mapping[str, Any]) -> None:
    write_json(run_dir / "best.json", dict(best))


def write_summary(run_dir: pathlib.Path, summary: Mapping[str, Any]) -> None:
    write_json(run_dir / "summary.json", dict(summary))
