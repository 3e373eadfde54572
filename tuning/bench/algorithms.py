"""``python -m tuning.bench algorithms``: Hyperband, BOHB and ASHA on a surrogate benchmark.

Each algorithm's own oracle is replayed against a surrogate of real learning curves
(`tuning.bench.simulate`) for many seeds, with the same budget (``max_epochs``, ``factor``,
``iterations``), in simulated time, with 1 and with several simulated workers. For every seed
and worker count it measures, against that seed's Hyperband run:

- the time each algorithm needs to reach Hyperband's final best score (validation accuracy, or
  loss with ``--objective val_loss``);
- its final best; the workers' busy share (time running trials / workers x wall time).

It prints a table, writes every run's figures as JSON (``--out``) and plots the anytime curves,
median and quartiles per algorithm (``--plot``). With ``--algorithms ... bohb-perfect`` it also
replays BOHB with the surrogate as its model (`tuning.bench.simulate.perfect_model_bohb`).
"""

from __future__ import annotations

import math
import multiprocessing
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from search_spaces import Sampler, load_space

from ..config import ALGORITHMS, OBJECTIVES
from ..data.datasets import load_data
from ..engine.algorithms import NAMES
from ..report.curves import algorithm_bands
from ..report.plots import pyplot, save_png
from .simulate import CANDIDATES, PERFECT, Surrogate, read_curves, simulate, surrogate_error, time_to_reach

LABELS = {**NAMES, PERFECT: "BOHB, perfect model"}

TARGETS = (0.98, 0.985, 0.99)  # fixed accuracies whose median time to reach is reported too
CURVES = pathlib.Path(__file__).resolve().parents[2] / "docs" / "figures" / "curves-small-digits.jsonl"

_STATE: dict[str, Any] = {}  # each pool process's surrogate and sampler, made once


def surrogate_setup(curves: str, space_name: str, seed: int, metric: str = "val_accuracy") -> dict[str, Any]:
    """The space, its sampler and the surrogate of `metric` fitted on the recorded `curves`."""
    import keras_tuner as kt

    space = load_space(space_name)
    recorded = read_curves(curves)
    data = load_data(space.dataset, seed=0)  # the input shape and classes the curves were recorded on
    sampler = Sampler(space, data.net_input_shape, data.num_classes)
    hp = kt.HyperParameters()
    sampler.declare(hp)
    return {"space": space, "sampler": sampler, "surrogate": Surrogate(recorded, hp.space, seed=seed, metric=metric)}


def _setup(curves: str, space_name: str, seed: int, metric: str) -> None:
    _STATE.update(surrogate_setup(curves, space_name, seed, metric))


def _one(job: tuple[str, int, int, int, int, int, int]) -> dict[str, Any]:
    algorithm, seed, workers, max_epochs, factor, iterations, candidates = job
    out = simulate(algorithm, _STATE["surrogate"], _STATE["sampler"], seed=seed, workers=workers,
                   max_epochs=max_epochs, factor=factor, iterations=iterations, candidates=candidates)
    return {"algorithm": algorithm, "seed": seed, "workers": workers, **out}


def run_benchmark(*, seeds: int, workers: Sequence[int], space: str = "small", curves: str | pathlib.Path = CURVES,
                  max_epochs: int | None = None, factor: int | None = None, iterations: int = 3, jobs: int = 1,
                  algorithms: Sequence[str] = ALGORITHMS, candidates: int = CANDIDATES,
                  check_surrogate: bool = True, objective: str = "val_accuracy") -> dict[str, Any]:
    """Every algorithm for seeds ``0..seeds-1`` and each worker count, ranking by `objective` (a
    metric the recorded curves hold: ``val_accuracy`` or ``val_loss``); returns the runs, the
    summary per worker count (see `summarize`) and, with `check_surrogate`, the surrogate's
    cross-validated error (`tuning.bench.simulate.surrogate_error`). `algorithms` may include
    `tuning.bench.simulate.PERFECT`, whose model takes the best of `candidates` configurations."""
    sp = load_space(space)
    max_epochs, factor = max_epochs or sp.max_epochs, factor or sp.factor
    jobs_list = [(a, s, w, max_epochs, factor, iterations, candidates)
                 for w in workers for s in range(seeds) for a in algorithms]
    args = (str(curves), space, 0, objective)
    if jobs > 1:
        with multiprocessing.get_context("spawn").Pool(jobs, initializer=_setup, initargs=args) as pool:
            runs = pool.map(_one, jobs_list, chunksize=4)
    else:
        _setup(*args)
        runs = [_one(j) for j in jobs_list]
    surrogate = None
    if check_surrogate:
        import keras_tuner as kt

        if "sampler" not in _STATE:  # the runs were made in other processes
            _setup(*args)
        hp = kt.HyperParameters()
        _STATE["sampler"].declare(hp)
        surrogate = surrogate_error(read_curves(curves), hp.space, metric=objective)
    maximize = OBJECTIVES[objective] == "max"
    return {"space": space, "curves": str(curves), "objective": objective, "seeds": seeds, "max_epochs": max_epochs,
            "factor": factor,
            "iterations": iterations, "surrogate": surrogate, "runs": runs,
            **({"candidates": candidates} if PERFECT in algorithms else {}),
            "summary": {str(w): summarize([r for r in runs if r["workers"] == w], TARGETS if maximize else (),
                                          maximize) for w in workers}}


def summarize(runs: Sequence[dict[str, Any]], targets: Sequence[float] = TARGETS,
              maximize: bool = True) -> dict[str, dict[str, Any]]:
    """Per algorithm: medians over seeds of the final best, of the time to reach the same seed's
    Hyperband final best (inf when never reached), its ratio to Hyperband's, the share of seeds
    that reach it, the busy share, trials and epochs; and the median time to reach each of the
    fixed `targets`. `maximize`: whether a higher score is better (the objective's direction)."""
    sign = 1.0 if maximize else -1.0
    hb = {r["seed"]: r for r in runs if r["algorithm"] == "hyperband"}
    out = {}
    for name in dict.fromkeys(r["algorithm"] for r in runs):
        mine = [r for r in runs if r["algorithm"] == name and r["seed"] in hb]
        times = np.array([time_to_reach(r["anytime"], hb[r["seed"]]["best"], maximize) for r in mine])
        hb_times = np.array([time_to_reach(hb[r["seed"]]["anytime"], hb[r["seed"]]["best"], maximize) for r in mine])
        median = float(np.median(times))
        out[name] = {
            "final_best": float(np.median([r["best"] for r in mine])),
            "time_to_hyperband_best": median,
            "hyperband_time": float(np.median(hb_times)),
            "ratio_of_medians": median / float(np.median(hb_times)),
            "reached": float(np.mean(np.isfinite(times))),
            "better_final": float(np.mean([sign * r["best"] > sign * hb[r["seed"]]["best"] + 1e-12 for r in mine])),
            "busy_share": float(np.median([r["busy_share"] for r in mine])),
            "wall": float(np.median([r["wall"] for r in mine])),
            "trials": float(np.median([r["trials"] for r in mine])),
            "epochs": float(np.median([r["epochs"] for r in mine])),
            "model_draws": float(np.median([r["model_draws"] for r in mine])),
            "model_from": _median_or_none([r.get("model_from") for r in mine]),
            "model_potential": _median_or_none([r.get("model_potential") for r in mine]),
            "random_potential": _median_or_none([r.get("random_potential") for r in mine]),
            "time_to": {str(t): float(np.median([time_to_reach(r["anytime"], t, maximize) for r in mine]))
                        for t in targets},
        }
    return out


def _median_or_none(values: Sequence[float | None]) -> float | None:
    """The median of the values that are not None (None if all are)."""
    known = [v for v in values if v is not None]
    return float(np.median(known)) if known else None


def strict_json(obj: Any) -> Any:
    """`obj` with every infinite or NaN float (a time "never" reached, a ratio to it) as None, so
    that ``json.dumps(..., allow_nan=False)`` writes standard JSON (null) that any reader takes."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def table(result: dict[str, Any]) -> str:
    """The summary as a markdown table."""
    def secs(t: float) -> str:
        return "never" if math.isinf(t) else f"{t:.0f} s"

    targets = list(next(iter(next(iter(result["summary"].values())).values()))["time_to"])
    head = ["workers", "algorithm", "median final best", "median time to Hyperband's final best",
            "ratio to Hyperband's", "seeds reaching it", "seeds ending better", "busy share", "wall", "trials",
            "epochs", *(f"median time to {t}" for t in targets)]
    rows = ["| " + " | ".join(head) + " |", "|---:|---|" + "---:|" * (len(head) - 2)]
    for w, per in result["summary"].items():
        for name, s in per.items():
            ratio = "-" if math.isinf(s["ratio_of_medians"]) else f"{s['ratio_of_medians']:.2f}"
            cells = [w, LABELS[name], f"{s['final_best']:.4f}", secs(s["time_to_hyperband_best"]), ratio,
                     f"{100 * s['reached']:.0f}%", f"{100 * s['better_final']:.0f}%", f"{100 * s['busy_share']:.1f}%",
                     f"{s['wall']:.0f} s", f"{s['trials']:.0f}", f"{s['epochs']:.0f}",
                     *(secs(s["time_to"][t]) for t in targets)]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot(result: dict[str, Any], path: pathlib.Path) -> None:
    """Anytime curves: median and interquartile band per algorithm, one panel per worker count."""
    plt = pyplot()
    counts = list(result["summary"])
    fig, axes = plt.subplots(1, len(counts), figsize=(6.5 * len(counts), 4.5), squeeze=False)
    for ax, w in zip(axes[0], counts):
        runs = [r for r in result["runs"] if str(r["workers"]) == w]
        end = max(r["wall"] for r in runs)
        times = np.linspace(0, end, 400)
        curves = {}
        for r in runs:
            curves.setdefault(r["algorithm"], []).append([(t, v) for t, v in r["anytime"]])
        for name, (med, lo, hi) in algorithm_bands(curves, times).items():
            line, = ax.plot(times / 60, med, label=f"{LABELS[name]} (median of {len(curves[name])})")
            ax.fill_between(times / 60, lo, hi, color=line.get_color(), alpha=0.2)
        finals = [r["best"] for r in runs]
        if result.get("objective", "val_accuracy") == "val_accuracy":
            ax.set_ylim(np.percentile(finals, 5) - 0.02, max(finals) + 0.003)
        ax.set_xlabel("simulated wall time (minutes)")
        ax.set_ylabel(f"best {result.get('objective', 'val_accuracy')} so far")
        ax.set_title(f"{w} worker(s): median and interquartile range")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
