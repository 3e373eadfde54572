"""Several finished runs side by side: ``comparison.md`` and ``comparison.png`` in their results
folder (their anytime curves overlaid, and per algorithm the median and interquartile range)."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import numpy as np

from ..run.files import write_atomic
from ..run.opened import Run, finished_runs
from ..run.records import best_record
from .curves import algorithm, algorithm_bands, anytime_curve, time_to_best
from .plots import Curve, pyplot, save_png, step_line, time_unit
from .single import clock, shown


def _label(run: Run) -> str:
    seed = (run.summary or {}).get("seed", run.info.get("seed"))
    return f"{run.name} ({algorithm(run)}, seed {seed})"


def plot_comparison(runs: Sequence[Run], curves: Sequence[Curve], path: pathlib.Path) -> bool:
    """Every run's curve overlaid and, when two runs share an algorithm, a panel of each algorithm's median and
    interquartile band. Returns whether that panel was drawn."""
    plt = pyplot()
    algos = sorted({algorithm(r) for r in runs})
    by_algo: dict[str, list[Curve]] = {a: [c for r, c in zip(runs, curves) if algorithm(r) == a] for a in algos}
    end = max((c[-1][0] for c in curves if c), default=0.0)
    times = np.linspace(0.0, end, 400)
    bands = algorithm_bands(by_algo, times)
    fig, axes = plt.subplots(1, 2 if bands else 1, figsize=(13, 5) if bands else (8, 5), squeeze=False,
                             sharey=True)
    unit, label = time_unit(end)
    colors = {a: plt.get_cmap("tab10")(i % 10) for i, a in enumerate(algos)}
    styles = ("-", "--", ":", "-.")
    seen: dict[str, int] = {}
    ax = axes[0, 0]
    for run, curve in zip(runs, curves):
        a = algorithm(run)
        n = seen[a] = seen.get(a, -1) + 1
        step_line(ax, curve, unit, color=colors[a], ls=styles[n % len(styles)], lw=1.6, label=_label(run))
    ax.set_title("Each run: best validation accuracy so far")
    if bands:
        bx = axes[0, 1]
        for a, (med, lo, hi) in bands.items():
            bx.step(times / unit, med, where="post", color=colors[a], lw=2, label=f"{a}: median of {len(by_algo[a])}")
            bx.fill_between(times / unit, lo, hi, step="post", color=colors[a], alpha=0.2, lw=0)
        bx.plot([], [], color="0.5", lw=6, alpha=0.3, label="interquartile range")
        bx.set_title("Per algorithm: median and interquartile range")
    for a in axes.flat:
        a.set_xlabel(label)
        a.set_xlim(left=0)
        a.grid(alpha=0.3)
        a.legend(loc="lower right", fontsize=8)
    axes[0, 0].set_ylabel("best validation accuracy so far")
    finals = [v for c in curves for _, v in c[-1:] if v is not None]
    if finals:  # where the runs differ: their final bests, not their first trials
        low = max(min(v for c in curves for _, v in c if v is not None), min(finals) - 0.05)
        axes[0, 0].set_ylim(low, max(finals) + 0.2 * (max(finals) - low) / 5 + 0.002)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
    return bool(bands)


def write_comparison(results_dir: str | os.PathLike, log=None) -> pathlib.Path | None:
    """Compare the finished runs under `results_dir`: write ``comparison.png`` and ``comparison.md`` there and
    return the latter's path; None (nothing written) when there are fewer than 2."""
    runs = finished_runs(results_dir, log)
    if len(runs) < 2:
        return None
    root = pathlib.Path(results_dir)
    curves = [anytime_curve(r) for r in runs]
    banded = plot_comparison(runs, curves, root / "comparison.png")
    lines = [f"# Comparison of {len(runs)} runs", "", "![comparison](comparison.png)", "",
             "Each run's best score (its objective) so far against wall time, one point per ended trial."
             + (" Right: per algorithm with at least 2 runs, the median and interquartile range over a common "
                "time grid (a run that ended earlier keeps its final best; drawn once every run of the algorithm "
                "has a completed trial)." if banded else ""), "",
             "| run | algorithm | objective | seed | trials | wall time | best score | best test_accuracy "
             "| time to the best | busy share |", "|---|---|---|---|---|---|---|---|---|---|"]
    for run, curve in zip(runs, curves):
        s = run.summary or {}
        reached = time_to_best(curve)
        top = best_record(run.completed())
        best_val = s.get("best_score", s.get("best_val_accuracy", top.score if top else None))
        share = (s.get("workers") or {}).get("busy_share")
        cells = [run.name, algorithm(run), run.objective, s.get("seed", run.info.get("seed")),
                 s.get("trials", len(run.records)),
                 clock(s.get("wall_seconds")), shown(best_val),
                 shown(s.get("best_test_accuracy", (run.best or {}).get("test_accuracy"))),
                 clock(reached[0]) if reached else "", "" if share is None else f"{100 * share:.0f}%"]
        lines.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    md = root / "comparison.md"
    write_atomic(md, "\n".join(lines) + "\n")
    if log:
        log(f"comparison: {md}")
    return md
