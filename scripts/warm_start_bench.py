"""Does a warm start reach a good model sooner? One seed's search is the earlier run; for each
other seed, a cold search and one warm-started from the earlier run (``--warm-start``) run one
after another, and the table gives the time each took to reach the earlier run's best
validation score (from summary.json's anytime curve, on the run's own clock), and where each ended.

    python scripts/warm_start_bench.py --source-seed 0 --seeds 1 2 --algorithm hyperband

About 4 minutes a search on the small space (1 + 2 x seeds searches).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile


def search(results: pathlib.Path, name: str, seed: int, algorithm: str, space: str, extra=()) -> dict:
    cmd = [sys.executable, "-m", "tuning.search", "--space", space, "--seed", str(seed), "--algorithm", algorithm,
           "--results-dir", str(results), "--name", name, "--quiet", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    run = results / name
    return {"run": run, "summary": json.loads((run / "summary.json").read_text()),
            "best": json.loads((run / "best.json").read_text())}


def time_to(summary: dict, target: float) -> float | None:
    """Run seconds until the best validation score so far first reached `target` (None: never)."""
    return next((t for t, best in summary["anytime"] if best is not None and best >= target - 1e-9), None)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source-seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--algorithm", default="hyperband")
    p.add_argument("--space", default="small")
    p.add_argument("--results", type=pathlib.Path)
    args = p.parse_args()
    results = args.results or pathlib.Path(tempfile.mkdtemp(prefix="warm-start-"))
    source = search(results, f"source-seed{args.source_seed}", args.source_seed, args.algorithm, args.space)
    target = source["summary"]["best_score"]
    print(f"earlier run: seed {args.source_seed}, best {target:.4f} (trial {source['best']['trial_id']}), "
          f"{source['summary']['wall_seconds']:.0f} s; runs in {results}")
    print("| seed | start | time to the earlier best | trials to it | final best val / test | wall |")
    print("|---|---|---|---|---|---|")
    for seed in args.seeds:
        for start, extra in (("cold", ()), ("warm", ("--warm-start", str(source["run"])))):
            r = search(results, f"{start}-seed{seed}", seed, args.algorithm, args.space, extra)
            s = r["summary"]
            t = time_to(s, target)
            n = next((i + 1 for i, (_, best) in enumerate(s["anytime"]) if best is not None and best >= target - 1e-9),
                     None)
            print(f"| {seed} | {start} | {'never' if t is None else f'{t:.0f} s'} | {n or '-'} | "
                  f"{s['best_score']:.4f} / {s['best_test_accuracy']:.4f} | {s['wall_seconds']:.0f} s |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
