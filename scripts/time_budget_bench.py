"""Does a time-budgeted search keep to its budget? Runs ``python -m tuning.search --space small
--time-budget B --algorithm A`` for each budget and algorithm, each in a fresh results folder, and
prints one table row per run: the budget, the plan, the whole command's wall time, the trials, the
longest trial, and whether it held (ended within the budget plus the longest single trial, and
used at least 80% of the budget).

    python scripts/time_budget_bench.py --budgets 60 120 300 --algorithms hyperband asha bohb

About the sum of the budgets plus a few seconds a run. Exits 1 if a run did not hold.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time


def run_one(budget: int, algorithm: str, seed: int, results: pathlib.Path, space: str, read: bool = False) -> dict:
    name = f"{algorithm}-{budget}s-seed{seed}"
    cmd = [sys.executable, "-m", "tuning.search", "--space", space, "--time-budget", f"{budget}s", "--algorithm",
           algorithm, "--seed", str(seed), "--results-dir", str(results), "--name", name, "--quiet"]
    run = results / name
    if read:  # an earlier run of this script: its command's wall time is the one it wrote down
        wall = json.loads((run / "command_seconds.json").read_text())["seconds"]
    else:
        t0 = time.time()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.time() - t0
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        (run / "command_seconds.json").write_text(json.dumps({"seconds": wall}) + "\n")
    summary = json.loads((run / "summary.json").read_text())
    best = json.loads((run / "best.json").read_text())
    seconds = [json.loads(p.read_text()).get("seconds") or 0.0 for p in (run / "trials").glob("*.json")]
    timed = summary["time_budget"]
    # When the planned iterations' trials had all ended (Hyperband and BOHB: their number is fixed).
    from tuning.engine.budget import hyperband_trials

    planned = len(hyperband_trials(timed["max_epochs"], summary["hyperband"]["factor"])) * timed["planned_iterations"]
    ends = summary["anytime"]
    done_at = ends[planned - 1][0] if algorithm != "asha" and 0 < planned <= len(ends) else None
    return {"planned_trials": planned if algorithm != "asha" else None, "planned_done_at": done_at,
            "algorithm": algorithm, "budget": budget, "seed": seed, "wall": round(wall, 1),
            "planned": timed["planned_seconds"], "planned_iterations": timed["planned_iterations"],
            "max_epochs": timed["max_epochs"], "calibration": timed["calibration_seconds"],
            "run_wall": timed["actual_seconds"], "trials": summary["trials"], "longest_trial": round(max(seconds), 1),
            "best_val": round(best["val_accuracy"], 4), "best_test": round(best["test_accuracy"], 4),
            "within": wall <= budget + max(seconds), "used": round(wall / budget, 3),
            "stopped": timed["stopped"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budgets", type=int, nargs="+", default=[60, 120, 300])
    p.add_argument("--algorithms", nargs="+", default=["hyperband", "asha", "bohb"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--space", default="small")
    p.add_argument("--results", type=pathlib.Path, help="results folder (default: a temporary one)")
    p.add_argument("--json", type=pathlib.Path, help="also write the rows here")
    p.add_argument("--read", action="store_true", help="read the runs already in --results instead of running them")
    args = p.parse_args()
    results = args.results or pathlib.Path(tempfile.mkdtemp(prefix="time-budget-"))
    print("| algorithm | budget | plan: iterations x max_epochs, ~seconds | calibration | planned trials ended at | "
          "wall (command) | trials | longest trial | best val / test | used | within budget + longest trial |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows, ok = [], True
    for budget in args.budgets:
        for algorithm in args.algorithms:
            r = run_one(budget, algorithm, args.seed, results, args.space, args.read)
            rows.append(r)
            held = r["within"] and r["used"] >= 0.8
            ok &= held
            plan = f"{r['planned_iterations']} x {r['max_epochs']}, ~{r['planned']:.0f} s"
            done_at = ("-" if r["planned_trials"] is None else "not reached" if r["planned_done_at"] is None
                       else f"{r['planned_done_at']:.0f} s ({r['planned_trials']} trials)")
            print(f"| {algorithm} | {budget} s | {plan} | "
                  f"{r['calibration']:.1f} s | {done_at} | {r['wall']:.1f} s | {r['trials']} | "
                  f"{r['longest_trial']:.1f} s | "
                  f"{r['best_val']:.4f} / {r['best_test']:.4f} | {100 * r['used']:.0f}% | "
                  f"{'yes' if r['within'] else 'NO'} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
