"""A run's report (``python -m tuning.report results/<name>``): plots and a readable summary.

Writes ``results/<name>/report/``: ``report.md``, ``report.html`` and PNG plots (matplotlib,
non-interactive backend):

- ``curves.png``: validation accuracy against epochs for every configuration, coloured by
  Hyperband bracket, with the rounds' starting epochs marked;
- ``pareto.png``: accuracy against parameters and against FLOPs, Pareto front marked;
- ``hyperparameters.png``: one small panel per tuned hyperparameter against the score;
- ``anytime.png``: the best validation accuracy so far against wall time (`anytime_curve`).

The search writes the report at its end too.

`python -m tuning.report results` (a folder of run folders) compares the finished runs in it
instead (`tuning.report.comparison`).
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..config import fmt_time, maximized
from ..run.files import write_atomic
from ..run.leaderboard import leaderboard_rows
from ..run.opened import Run, open_run
from ..run.records import TrialRecord, best_record
from .curves import algorithm, anytime_curve, time_to_best
from .plots import Curve, pyplot, save_png, step_line, time_unit

SKIP_HPS = {"stem", "layers", "stage_depths"}  # shown elsewhere or derived
# How the report's headings name each objective.
OBJECTIVE_TITLES = {"val_accuracy": "validation accuracy", "val_loss": "validation loss",
                    "val_balanced_accuracy": "validation balanced accuracy", "val_macro_f1": "validation macro F1"}
TOP_ROWS = 10


def configurations(run: Run) -> list[dict[str, Any]]:
    """One entry per configuration (a Hyperband lineage): its trials, score (the run's objective),
    cost, and the objective's curve over its epochs."""
    objective, maximize = run.objective, maximized(run.objective)
    by_run: dict[str, list[TrialRecord]] = {}
    for rec in run.records.values():
        by_run.setdefault(rec.run if rec.run is not None else rec.trial_id, []).append(rec)
    out = []
    for name, recs in sorted(by_run.items()):
        recs.sort(key=lambda r: r.round or 0)
        curve = []
        for r in recs:
            vals = r.history.get(objective, [])
            curve += [(r.initial_epoch + i + 1, v) for i, v in enumerate(vals)]
        scores = [r.score for r in recs if r.score is not None]
        out.append({
            "run": name, "trials": recs, "score": (max if maximize else min)(scores) if scores else None,
            "curve": curve,
            "params": recs[0].params, "flops": recs[0].flops, "bracket": recs[0].bracket or 0,
            "rounds": [(r.round or 0, r.initial_epoch) for r in recs],
            "hyperparameters": recs[0].hyperparameters, "best": best_record(recs),
        })
    return out


def best_configuration(configs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The configuration holding the best trial (`tuning.run.records`' order)."""
    top = best_record(c["best"] for c in configs if c["best"] is not None)
    return next((c for c in configs if c["best"] is top), None) if top is not None else None


def lineage(config: dict[str, Any]) -> str:
    """A configuration's TensorBoard run and, when Hyperband promoted it, its trials in order."""
    ids = [r.trial_id for r in config["trials"]]
    return config["run"] if len(ids) < 2 else f"{config['run']} (trials {' > '.join(ids)})"


def pareto_front(points: Sequence[tuple[float, float]], maximize: bool = True) -> list[int]:
    """Indices of the points no other point beats on both lower cost and a better score (higher,
    or lower where not `maximize`)."""
    sign = 1.0 if maximize else -1.0
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -sign * points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if sign * points[i][1] > best:
            front.append(i)
            best = sign * points[i][1]
    return front


def plot_curves(configs, path: pathlib.Path, title: str, objective: str = "val_accuracy") -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    brackets = sorted({c["bracket"] for c in configs}, reverse=True)
    cmap = plt.get_cmap("viridis", max(2, len(brackets)))
    colors = {b: cmap(i) for i, b in enumerate(brackets)}
    starts = set()
    best = best_configuration(configs)
    for c in configs:
        if not c["curve"]:
            continue
        xs, ys = zip(*c["curve"])
        lw, alpha, z = (2.6, 1.0, 3) if c is best else (1.1, 0.75, 2)
        ax.plot(xs, ys, "-o", color=colors[c["bracket"]], lw=lw, ms=3.5, alpha=alpha, zorder=z)
        starts.update(s for r, s in c["rounds"] if r > 0)
    for s in sorted(starts):
        ax.axvline(s + 0.5, color="0.6", ls="--", lw=0.8, zorder=1)
    for b in brackets:
        ax.plot([], [], "-o", color=colors[b], label=f"bracket {b}")
    if best is not None and best["curve"]:
        ax.plot([], [], "-", color="0.3", lw=2.6, label=f"thick: best, {lineage(best)}")
    if starts:
        ax.plot([], [], "--", color="0.6", lw=0.8, label="a Hyperband round starts")
    ax.set_xlabel("epoch")
    ax.set_ylabel(objective)
    ax.set_title(title)
    if maximized(objective):  # the class-averaged and plain accuracies lie in [0, 1]
        ax.set_ylim(0, 1.02)
    max_epoch = max((x for c in configs for x, _ in c["curve"]), default=1)
    ax.set_xlim(0.5, max_epoch + 0.5)
    ax.set_xticks(range(1, max_epoch + 1) if max_epoch <= 30 else ax.get_xticks())
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if maximized(objective) else "upper right")
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def plot_pareto(configs, path: pathlib.Path, objective: str = "val_accuracy") -> None:
    plt = pyplot()
    scored = [c for c in configs if c["score"] is not None and c["params"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, key, label in ((axes[0], "params", "trainable parameters"),
                           (axes[1], "flops", "multiply-adds per image (FLOPs)")):
        pts = [(c[key], c["score"]) for c in scored]
        front = pareto_front(pts, maximized(objective))
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=28, color="tab:blue", alpha=0.6,
                   label="configuration")
        fx = [pts[i][0] for i in front]
        fy = [pts[i][1] for i in front]
        ax.step(fx, fy, where="post", color="tab:red", lw=1.5)
        ax.scatter(fx, fy, s=60, facecolors="none", edgecolors="tab:red", lw=1.5, label="Pareto front")
        best = best_configuration(scored)
        if best is not None:
            bi = scored.index(best)
            ax.annotate(f"best: trial {best['best'].trial_id}", pts[bi], textcoords="offset points",
                        xytext=(-6, -14), ha="right", fontsize=8)
        ax.set_xscale("log")
        from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 200k, 1M: readable on short log ranges
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label + " (log scale)")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(f"best {objective}")
    axes[0].legend(loc="lower right" if maximized(objective) else "upper right")
    fig.suptitle(f"{objective} against cost: each point is one configuration")
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def tuned_names(configs) -> list[str]:
    names: list[str] = []
    for c in configs:
        for k in c["hyperparameters"]:
            if k not in names and k not in SKIP_HPS:
                names.append(k)
    out = []
    for k in names:
        values = {repr(c["hyperparameters"].get(k)) for c in configs if k in c["hyperparameters"]}
        if len(values) > 1:
            out.append(k)
    return out


def plot_hyperparameters(configs, path: pathlib.Path, objective: str = "val_accuracy") -> list[str]:
    plt = pyplot()
    scored = [c for c in configs if c["score"] is not None]
    names = tuned_names(scored)
    if not names:
        names = ["depth"]
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharey=True)
    rng = np.random.default_rng(0)
    for ax, name in zip(axes.flat, names):
        pairs = [(c["hyperparameters"][name], c["score"]) for c in scored if name in c["hyperparameters"]]
        values = [v for v, _ in pairs]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        distinct = sorted(set(values), key=lambda v: (str(type(v)), v))
        continuous = numeric and any(isinstance(v, float) and not float(v).is_integer() for v in values)
        if numeric and (len(distinct) > 6 or (continuous and len(distinct) > 3)):
            xs = np.array(values, dtype=float)
            ax.scatter(xs, [s for _, s in pairs], s=18, alpha=0.7)
            if xs.min() > 0 and xs.max() / xs.min() > 20:
                ax.set_xscale("log")
        else:
            idx = {v: i for i, v in enumerate(distinct)}
            xs = [idx[v] + rng.uniform(-0.15, 0.15) for v in values]
            ax.scatter(xs, [s for _, s in pairs], s=18, alpha=0.7)
            means = [np.mean([s for v, s in pairs if v == d]) for d in distinct]
            ax.scatter(range(len(distinct)), means, marker="_", s=400, color="tab:red", lw=2)
            ax.set_xticks(range(len(distinct)))
            ax.set_xticklabels([_short(d) for d in distinct], rotation=30 if len(distinct) > 3 else 0,
                               ha="right" if len(distinct) > 3 else "center", fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"best {objective}")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle("Each tuned hyperparameter against the score (red bar: mean per value)", fontsize=11)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
    return names


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    text = str(v)
    return text if len(text) <= 10 else text[:9] + "…"


def shown(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3g}"
    if isinstance(v, int) and abs(v) >= 10000:
        return f"{v:,}"
    return str(v)


def plot_anytime(curve: Curve, path: pathlib.Path, title: str, objective: str = "val_accuracy") -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    unit, label = time_unit(max((t for t, _ in curve), default=0.0))
    step_line(ax, curve, unit, color="tab:blue", lw=2, label="best so far")
    ended = [t / unit for t, _ in curve]
    if ended:
        ax.plot(ended, [0] * len(ended), "|", color="0.5", ms=10, transform=ax.get_xaxis_transform(),
                label="a trial ends")
    rises, prev = [], None
    for t, v in curve:
        if v is not None and v != prev:  # the best so far only ever improves
            rises.append((t / unit, v))
            prev = v
    if rises:
        ax.plot(*zip(*rises), "o", color="tab:blue", ms=4)
    best = time_to_best(curve)
    if best is not None:
        late = best[0] > 0.7 * curve[-1][0]  # label to the left, inside the axes
        ax.annotate(f"best {best[1]:.4f} at {clock(best[0])}", (best[0] / unit, best[1]), textcoords="offset points",
                    xytext=(-6 if late else 6, -14), ha="right" if late else "left", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no trial completed", transform=ax.transAxes, ha="center", color="0.4")
    ax.set_xlabel(label)
    ax.set_ylabel(f"best {objective} so far")
    ax.set_xlim(left=0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if maximized(objective) else "upper right")
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def plot_confusion(best: dict, path: pathlib.Path) -> None:
    """The best trial's confusion matrix on the test split, with its class names; each row (a
    true class) coloured by its share, so that a small class reads as clearly as a large one."""
    plt = pyplot()
    matrix = np.asarray(best["confusion_matrix"], dtype=float)
    names = [str(n) for n in best.get("class_names") or range(len(matrix))]
    k = len(names)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(12.0, 2.5 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center", fontsize=7 if k > 12 else 9,
                            color="white" if shares[i, j] > 0.5 else "black")
        ax.set_xticks(range(k))
        ax.set_xticklabels([_short(n) for n in names], rotation=45 if k > 6 else 0, ha="right" if k > 6 else "center")
        ax.set_yticks(range(k))
        ax.set_yticklabels([_short(n) for n in names])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Trial {best['trial_id']} on the test split: images per true and predicted class")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def clock(seconds: float | None) -> str:
    """Wall seconds as ``H:MM:SS`` (nothing for None)."""
    return "" if seconds is None else fmt_time(seconds)


def _class_markdown(best: dict) -> list[str]:
    """The best trial's per-class results on the test split (a run from before they were
    recorded: nothing)."""
    per_class = best.get("per_class")
    if not per_class:
        return []
    lines = ["## The best trial's classes on the test split", "", "![confusion](confusion.png)", "",
             "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['support']} |"
              for name, r in per_class.items()]
    return lines + [""]


def _anytime_markdown(run: Run, curve: Curve) -> list[str]:
    s = run.summary or {}
    lines = [f"## Best {OBJECTIVE_TITLES[run.objective]} against wall time", "", "![anytime](anytime.png)", "",
             f"Algorithm: {algorithm(run)}. One point per ended trial, in the order they ended "
             f"({'from summary.json' if s.get('anytime') else 'from the trial records'}).", ""]
    best = time_to_best(curve)
    if best is not None:
        lines += [f"Best {best[1]:.4f}, first reached after {best[0]:.0f} s ({clock(best[0])}).", ""]
    workers = s.get("workers")
    if isinstance(workers, dict):
        share = workers.get("busy_share")
        lines += [f"Workers: {workers.get('count', 1)}"
                  + (f", busy {100 * share:.0f}% of the time" if share is not None else "")
                  + (f" (over {workers['wall_seconds']:.0f} s)" if workers.get("wall_seconds") is not None else "")
                  + ".", ""]
        per = workers.get("per_worker") or {}
        if (workers.get("count") or 1) > 1 and per:
            lines += ["| worker | busy (s) | idle (s) | trials |", "|---|---|---|---|"]
            lines += [f"| {name} | {_seconds(w.get('busy_seconds'))} | {_seconds(w.get('idle_seconds'))} | "
                      f"{shown(w.get('trials'))} |" for name, w in per.items()] + [""]
    return lines


def _seconds(v) -> str:
    return "" if v is None else f"{v:.0f}"


def write_report(run_dir: str | os.PathLike, log=None) -> pathlib.Path:
    """Write ``<run_dir>/report/`` and return its path. Raises `UsageError` for a bad run folder."""
    run = open_run(run_dir)
    out = run.folder.report_dir
    out.mkdir(exist_ok=True)
    configs, objective = configurations(run), run.objective
    plot_curves(configs, out / "curves.png", f"{run.name}: {objective} of every configuration", objective)
    plot_pareto(configs, out / "pareto.png", objective)
    tuned = plot_hyperparameters(configs, out / "hyperparameters.png", objective)
    curve = anytime_curve(run)
    plot_anytime(curve, out / "anytime.png", f"{run.name} ({algorithm(run)}): best {objective} so far", objective)
    if (run.best or {}).get("confusion_matrix"):
        plot_confusion(run.best, out / "confusion.png")
    md = _markdown(run, configs, tuned, curve)
    write_atomic(out / "report.md", md)
    html = _html(md, run.name)
    if html:
        write_atomic(out / "report.html", html)
    if log:
        log(f"report: {out / 'report.md'}")
    return out


def _compile_text(run: Run) -> str:
    """Seconds spent tracing and compiling train/test steps (within the training time)."""
    seconds = sum(r.compile_seconds for r in run.records.values())
    how = {r.compile_measure for r in run.records.values()} - {None}
    if not how:
        return "not recorded"
    return f"{seconds:.0f} s, part of the training time ({' and '.join(sorted(how))})"


def of_workers(summary: dict) -> str:
    """With several workers, `fit_share` and `compile_share` are shares of their summed time (wall
    time x workers), not of the wall time: " of the N workers' time" then, else nothing."""
    count = (summary.get("workers") or {}).get("count") or 1
    return "" if count == 1 else f" of the {count} workers' time"


def _budget_text(summary: dict) -> str:
    timed = summary.get("time_budget")
    if not timed:
        return ""
    return (f" ({fmt_time(timed['actual_seconds'])} used, planned ~{fmt_time(timed['planned_seconds'])}; stopped by "
            f"{timed['stopped']})")


def _start_text(start: dict) -> str:
    text = ", ".join(start.get("tried_first") or []) or "no known configuration"
    return text + (f" (left out: {'; '.join(start['left_out'])})" if start.get("left_out") else "")


def _markdown(run: Run, configs, tuned, curve: Curve) -> str:
    s = run.summary or {}
    best = run.best or {}
    info = run.info
    lines = [f"# Search report: {run.name}", ""]
    rows = [
        ("space", info.get("space")), ("dataset", info.get("dataset")), ("seed", info.get("seed")),
        ("Hyperband", f"max_epochs {(info.get('plan') or info).get('max_epochs')}, factor {info.get('factor')}, "
                      + (f"iterations {info.get('iterations')}" if not info.get("time_budget") else
                         f"time budget {fmt_time(info['time_budget'])}" + _budget_text(s))),
        *([("started from", _start_text(info["start"]))] if info.get("start") else []),
        ("trials", f"{len(run.records)} ({len(configs)} configurations)"),
        ("wall time", f"{s.get('wall_seconds', 0):.0f} s" if s else "search not finished"),
        ("time in training", f"{s.get('fit_seconds', 0):.0f} s ({100 * (s.get('fit_share') or 0):.0f}%"
         f"{of_workers(s)})" if s else ""),
        ("time compiling steps", _compile_text(run)),
        ("Keras backend", run.backend),
        ("objective", run.objective + (f", classes weighted {run.class_weight}" if run.class_weight else "")),
        ("best trial", best.get("trial_id", run.best_trial_id())),
        (f"best {OBJECTIVE_TITLES[run.objective]}", shown(best.get("score", best.get("val_accuracy"))
                                                          or best_record(run.completed()).score)),
        ("its test accuracy", shown(best.get("test_accuracy")) or "not evaluated yet"),
        *([(f"its test {m}", shown(best[f"test_{m}"])) for m in ("balanced_accuracy", "macro_f1")
           if best.get(f"test_{m}") is not None]),
        ("its parameters / FLOPs", f"{shown(best.get('params'))} / {shown(best.get('flops'))}" if best else ""),
    ]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows] + [""]
    if best.get("hyperparameters"):
        lines += ["## Best configuration", "", "| hyperparameter | value |", "|---|---|"]
        lines += [f"| {k} | {shown(v)} |" for k, v in best["hyperparameters"].items()] + [""]
    lines += _class_markdown(best)
    title = OBJECTIVE_TITLES[run.objective]
    lines += [f"## {title[0].upper()}{title[1:]} against epochs", "", "![curves](curves.png)", "",
              "One line per configuration; a configuration Hyperband promotes continues its line in the next "
              "round, which starts from the checkpoint of its best epoch so far.", ""]
    lines += _anytime_markdown(run, curve)
    lines += [f"## {title[0].upper()}{title[1:]} against cost", "", "![pareto](pareto.png)", "",
              "## Hyperparameters against the score", "", "![hyperparameters](hyperparameters.png)", "",
              f"Tuned: {', '.join(tuned)}.", "", f"## Leaderboard (top {TOP_ROWS} of {len(run.records)} trials)", ""]
    columns, table = leaderboard_rows(run.records.values())
    shown_cols = ("trial_id", "run", "bracket", "round", "epochs", run.objective, "params", "flops", "seconds")
    cols = [c for c in columns if c in shown_cols] + [c for c in tuned if c in columns][:8]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(shown(r[c]) for c in cols) + " |" for r in table[:TOP_ROWS]]
    lines += ["", "Full table: [../leaderboard.md](../leaderboard.md)", ""]
    return "\n".join(lines)


def _html(md: str, title: str) -> str | None:
    try:
        import markdown
    except ImportError:
        return None
    body = markdown.markdown(md, extensions=["tables"])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
            "img{max-width:100%}</style></head><body>" + body + "</body></html>\n")


