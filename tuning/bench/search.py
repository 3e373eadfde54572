"""Benchmarks of whole searches: the search's memory over many trials (`bench_memory`), the size of
a finished run folder (`bench_disk`), and where finished searches' wall time went
(`bench_overheads`)."""

from __future__ import annotations

import pathlib
import statistics
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import UsageError
from ..processes.system import tree_memory_mb
from ..run.opened import open_run
from ..run.records import TrialRecord
from ..search import run_search


def bench_memory(trials: int, results_dir: pathlib.Path, recycle_mb: int) -> dict[str, Any]:
    """RSS of the search (this process and its trial processes) after each finished trial of a
    long digits search (small space, 3-epoch budget)."""
    samples: list[tuple[int, float]] = []
    pss: list[float] = []
    peak, peak_pss = [0.0], [0.0]
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            rss, proportional = tree_memory_mb(pss=True)
            peak[0], peak_pss[0] = max(peak[0], rss), max(peak_pss[0], proportional)
            time.sleep(0.5)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()

    stdout = sys.stdout  # the search redirects sys.stdout while it runs

    def log(line: str) -> None:
        if line.startswith("trial "):
            rss, proportional = tree_memory_mb(pss=True)
            samples.append((len(samples) + 1, rss))
            pss.append(proportional)
            print(f"{line[:60]}... rss {samples[-1][1]:.0f} MB, pss {pss[-1]:.0f} MB", file=stdout, flush=True)

    iterations = -(-trials // 6)  # max_epochs 3, factor 3: 6 trials per Hyperband iteration
    t0 = time.time()
    run_search(space="small", max_epochs=3, factor=3, iterations=iterations, results_dir=str(results_dir),
               name="memory", overwrite=True, recycle_mb=recycle_mb, log=log)
    stop.set()
    by_trial = dict(samples)
    first, n = by_trial[1], min(trials, len(samples))
    out = {
        "trials": n, "rss_mb_after_trial_1": round(first, 1), "rss_mb_after_trial_10": round(by_trial[10], 1),
        f"rss_mb_after_trial_{n}": round(by_trial[n], 1),
        f"growth_mb_trial_1_to_{n}": round(by_trial[n] - first, 1),
        f"growth_mb_trial_10_to_{n}": round(by_trial[n] - by_trial[10], 1),
        "peak_rss_mb": round(peak[0], 1), "seconds": round(time.time() - t0, 1), "recycle_mb": recycle_mb,
        "pss_mb_after_trial_1": round(pss[0], 1), f"pss_mb_after_trial_{n}": round(pss[n - 1], 1),
        "peak_pss_mb": round(peak_pss[0], 1),
        "samples": [(i, round(r, 1)) for i, r in samples], "pss_samples": [round(p, 1) for p in pss],
    }
    print(f"RSS after trial 1: {first:.0f} MB, after trial {n}: {by_trial[n]:.0f} MB "
          f"(growth {by_trial[n] - first:+.0f} MB; from trial 10: {by_trial[n] - by_trial[10]:+.0f} MB); "
          f"peak {peak[0]:.0f} MB; PSS after trial 1: {pss[0]:.0f} MB, after trial {n}: {pss[n - 1]:.0f} MB, "
          f"peak {peak_pss[0]:.0f} MB")
    return out


def folder_size(path: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_disk(run_dir: pathlib.Path) -> dict[str, Any]:
    """Size of a finished run folder and of its parts."""
    parts = {child.name: folder_size(child) if child.is_dir() else child.stat().st_size
             for child in sorted(run_dir.iterdir())}
    total = folder_size(run_dir)
    ckpts = list(run_dir.glob("tuner/trial_*/checkpoint.npz"))
    out = {"run_dir": str(run_dir), "total_mb": round(total / 2**20, 2),
           "parts_mb": {k: round(v / 2**20, 2) for k, v in parts.items()},
           "checkpoints_kept": len(ckpts), "trials": len(list(run_dir.glob("tuner/trial_*")))}
    print(f"{run_dir}: {total / 2**20:.1f} MB ({len(ckpts)} checkpoints kept of {out['trials']} trials)")
    for k, v in parts.items():
        print(f"  {k:<20} {v / 2**20:8.2f} MB")
    return out


OVERHEAD_TOTALS = ("wall_seconds", "training_and_evaluation_seconds", "of_which_first_epoch_tracing_seconds_est",
                   "checkpoint_seconds", "build_seconds", "per_trial_other_seconds", "outside_trials_seconds",
                   "overhead_share")


def trial_overheads(records: Iterable[TrialRecord]) -> list[dict[str, Any]]:
    """Where each trial's own time went: epochs it trained, its seconds, and their parts."""
    rows = []
    for r in records:
        seconds = r.seconds or 0
        rows.append({"trial_id": r.trial_id,
                     "epochs_trained": r.epochs - r.initial_epoch if r.epochs is not None else None,
                     "seconds": seconds, "fit_seconds": r.fit_seconds, "build_seconds": r.build_seconds,
                     "checkpoint_seconds": r.checkpoint_seconds,
                     "other_seconds": round(seconds - r.fit_seconds - r.build_seconds - r.checkpoint_seconds, 3)})
    return rows


def bench_overhead(run_dir: pathlib.Path) -> dict[str, Any]:
    """Where a finished search's wall time went, from its own records: one line per trial, then
    the run's totals."""
    run = open_run(run_dir)
    if run.summary is None:
        raise UsageError(f"{run.run_dir} has no summary.json yet; let the search finish first "
                         "(python -m tuning.search resumes it)")
    summary, recs = run.summary, list(run.records.values())
    wall = summary["wall_seconds"]
    fit = sum(r.fit_seconds for r in recs)
    build = sum(r.build_seconds for r in recs)
    trial = sum(r.seconds or 0 for r in recs)
    test_eval = summary["fit_seconds"] - fit
    ckpt = sum(r.checkpoint_seconds for r in recs)
    # Tracing the training step happens in a trial's first epoch: its excess over the later ones.
    excess = [e[0] - sorted(e[1:])[len(e[1:]) // 2] for r in recs if len(e := r.epoch_seconds) > 1]
    tracing = sum(excess) / len(excess) * len(recs) if excess else 0.0
    totals = {"wall_seconds": wall,
              "training_and_evaluation_seconds": round(fit + test_eval, 1),
              "of_which_first_epoch_tracing_seconds_est": round(tracing, 1),
              "checkpoint_seconds": round(ckpt, 1),
              "build_seconds": round(build, 1),
              "per_trial_other_seconds": round(trial - fit - build - ckpt, 1),
              "outside_trials_seconds": round(wall - trial - test_eval, 1),
              "overhead_share": round(1 - summary["fit_seconds"] / wall, 3)}
    trials = trial_overheads(recs)
    print(f"{run.run_dir}: {len(trials)} trials")
    print(f"  {'trial':<10} {'epochs':>6} {'seconds':>9} {'fit':>9} {'build':>9} {'checkpoint':>10} {'other':>9}")
    for t in trials:
        epochs = "" if t["epochs_trained"] is None else t["epochs_trained"]
        print(f"  {t['trial_id']:<10} {epochs:>6} {t['seconds']:9.2f} {t['fit_seconds']:9.2f} "
              f"{t['build_seconds']:9.2f} {t['checkpoint_seconds']:10.2f} {t['other_seconds']:9.2f}")
    for k, v in totals.items():
        print(f"  {k:<42} {v}")
    return {"run_dir": str(run.run_dir), **totals, "trials": trials}


def bench_overheads(run_dirs: Sequence[pathlib.Path]) -> dict[str, Any]:
    """`bench_overhead` of each run; with several, the median of each total over the runs."""
    runs = [bench_overhead(pathlib.Path(d)) for d in run_dirs]
    out: dict[str, Any] = {"runs": runs}
    if len(runs) > 1:
        out["median"] = {k: round(statistics.median(r[k] for r in runs), 3) for k in OVERHEAD_TOTALS}
        print(f"median over {len(runs)} runs:")
        for k, v in out["median"].items():
            print(f"  {k:<42} {v}")
    return out
