"""Figures of a search run for docs/BENCHMARKS.md: wall time, trials, best accuracy, training
and compile shares of wall time, and the GPU utilisation sampled while it ran.

    python scripts/gpu_figures.py RUN_DIR [UTIL_CSV] [--json OUT]

Works on a finished run (summary.json) and on one stopped part-way (trial records and
state.json): the figures are then over the trials done, up to the end of the last one. UTIL_CSV holds lines of
``nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def utilisation(path: str | None) -> dict:
    if not path or not pathlib.Path(path).exists():
        return {}
    util, mem = [], []
    for line in pathlib.Path(path).read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            util.append(float(parts[1]))
            mem.append(float(parts[2]))
        except (IndexError, ValueError):
            continue
    if not util:
        return {}
    busy = [u for u in util if u > 0]
    return {"gpu_util_mean": round(statistics.fmean(util), 1), "gpu_util_median": statistics.median(util),
            "gpu_busy_share": round(len(busy) / len(util), 3), "gpu_memory_max_mb": max(mem), "samples": len(util)}


def _wall_to_last_trial(state: dict, records: dict) -> float:
    """A run cut part-way: its sessions' wall time up to the end of its last finished trial (the
    trial cut off is in no record, so it would count as time not training)."""
    import datetime

    sessions = state.get("sessions", [])
    ends = [r.started + r.seconds for r in records.values() if r.started and r.seconds]
    if len(sessions) != 1 or not ends:
        return sum(s.get("wall_seconds", 0) for s in sessions)
    began = datetime.datetime.strptime(sessions[0]["started"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
    return max(ends) - began


def figures(run_dir: pathlib.Path) -> dict:
    from tuning.run.folder import RunFolder

    folder = RunFolder(run_dir)
    records = folder.records()
    state = folder.read("state.json") or {}
    summary = folder.read("summary.json") or {}
    wall = summary.get("wall_seconds") or _wall_to_last_trial(state, records)
    fit = sum(r.fit_seconds for r in records.values())
    compiled = sum(r.compile_seconds for r in records.values())
    scores = [r.val_accuracy for r in records.values() if r.val_accuracy is not None]
    info = folder.read("run.json") or {}
    return {
        "run": str(run_dir), "finished": bool(summary), "backend": info.get("backend"),
        "trials": len(records), "planned_trials": summary.get("planned_trials"),
        "wall_seconds": round(wall, 1), "trials_per_hour": round(3600 * len(records) / wall, 1) if wall else None,
        "training_share": round(fit / wall, 3) if wall else None,
        "compile_seconds": round(compiled, 1), "compile_share": round(compiled / wall, 3) if wall else None,
        "best_val_accuracy": max(scores) if scores else None,
        "best_test_accuracy": summary.get("best_test_accuracy"),
        "devices": summary.get("devices"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("util_csv", nargs="?")
    p.add_argument("--json")
    args = p.parse_args()
    out = {**figures(pathlib.Path(args.run_dir)), **utilisation(args.util_csv)}
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        pathlib.Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
