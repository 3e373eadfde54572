"""The end of a search: the best trial's test accuracy, summary.json, leaderboard, report."""

from __future__ import annotations

import dataclasses
import pathlib
import shlex
import time
from typing import Any

from ..config import fmt_time
from ..data.images import stop_on_bad_image
from ..engine.metrics import predict_split, split_results
from ..errors import SystematicFailure
from ..report import of_workers, write_comparison, write_report
from ..run.folder import RunFolder
from ..run.leaderboard import leaderboard_rows
from ..run.sessions import anytime_points
from ..runtime import versions


@dataclasses.dataclass
class SearchResult:
    """What a search produced. `best` and `summary` are the contents of best.json / summary.json."""

    name: str
    run_dir: pathlib.Path
    best: dict[str, Any]
    summary: dict[str, Any]
    leaderboard: list[dict[str, Any]]
    tensorboard_command: str


def tensorboard_command(run_dir: pathlib.Path) -> str:
    return f"tensorboard --logdir {shlex.quote(str(run_dir / 'tensorboard'))}"


def result_from_disk(folder: RunFolder) -> SearchResult:
    """The result of a finished search, read back from its folder (as a supervisor does)."""
    _, rows = leaderboard_rows(folder.records().values())
    return SearchResult(folder.name, folder.path, folder.read("best.json", strict=True),
                        folder.read("summary.json", strict=True), rows, tensorboard_command(folder.path))


def finish_run(ctx, tuner, replicas: int) -> SearchResult:
    """best.json, summary.json, the leaderboard and the report of a search whose trials are done."""
    folder, log = ctx.folder, ctx.log
    if ctx.role == "chief":  # a worker killed as its trial ended (a standalone session recovered at its start)
        tuner.recover_ended()
    records = folder.records()
    best_trials = tuner.oracle.get_best_trials(1)
    if not best_trials or best_trials[0].status != "COMPLETED" or best_trials[0].score is None:
        raise SystematicFailure(f"no trial completed: all {len(records)} failed (their reasons are in "
                                f"{folder.path / 'leaderboard.md'})")
    best = best_trial(tuner, best_trials[0], records, ctx.data, folder, log)
    ctx.sessions.save()
    folder.write("summary.json", _summary(ctx, tuner, records, best, replicas))
    folder.write_leaderboard(records.values())
    compared = None
    for write, path in ((write_report, folder.path), (write_comparison, folder.path.parent)):
        try:
            done = write(path)  # the comparison: the results folder's runs, when it holds several
            compared = done if write is write_comparison else compared
        except Exception as e:  # the search's results stand without the plots
            log(f"warning: {path / 'report' if write is write_report else path / 'comparison.md'} could not be "
                f"written ({type(e).__name__}: {e}); try python -m tuning.report {path}")
    ctx.sessions.save()  # the wall time includes the report
    summary = _summary(ctx, tuner, records, best, replicas)
    folder.write("summary.json", summary)
    tb_cmd = tensorboard_command(folder.path)
    if "time_budget" in summary:
        timed = summary["time_budget"]
        log(f"stopped by {timed['stopped']}; {fmt_time(timed['actual_seconds'])} of the "
            f"{fmt_time(timed['budget_seconds'])} budget used (planned ~{fmt_time(timed['planned_seconds'])})")
    log(f"best: trial {best['trial_id']} {_scores_text(best)} ({best['params']:,} parameters); {len(records)} "
        "trials in "
        f"{fmt_time(summary['wall_seconds'])} ({100 * summary['fit_share']:.0f}%{of_workers(summary) or ' of it'} "
        "training, "
        f"{100 * summary['compile_share']:.0f}% compiling steps, on {summary['backend']})")
    if summary.get("image_cache"):
        cache = summary["image_cache"]
        log(f"image cache: {cache['bytes'] / 2**20:,.0f} MB for {cache['images']} of {cache['of']} images in "
            f"{cache['path']} (an export reads it; delete it to free the space)")
    if summary.get("unreadable_images"):
        bad = summary["unreadable_images"]
        log(f"note: left out {len(bad)} unreadable image(s), first {bad[0]} (all in "
            f"{folder.path / 'data' / 'unreadable_images.txt'})")
    workers = summary["workers"]
    if workers["count"] > 1:
        log(f"workers: {workers['count']}, busy {100 * workers['busy_share']:.0f}% of the wall time (running trials)")
    log(f"results: {folder.path}/leaderboard.md, best.json, summary.json, report/report.md")
    if compared is not None:
        log(f"runs in {folder.path.parent} compared: {compared} (python -m tuning.report {folder.path.parent})")
    log(f"view the trials: {tb_cmd}")
    _, rows = leaderboard_rows(records.values())
    return SearchResult(folder.name, folder.path, best, summary, rows, tb_cmd)


def _scores_text(best: dict) -> str:
    """The best trial's score and its test split's, e.g. ``val_accuracy 0.9861 test_accuracy 0.9889`` (with
    another objective, its test value and the test accuracy)."""
    objective = best.get("objective", "val_accuracy")
    test = objective.replace("val_", "test_", 1)
    text = f"{objective} {best.get('score', best['val_accuracy']):.4f} {test} {best[test]:.4f}"
    return text if test == "test_accuracy" else f"{text} test_accuracy {best['test_accuracy']:.4f}"


def _summary(ctx, tuner, records, best: dict, replicas: int) -> dict[str, Any]:
    cfg, data = ctx.config, ctx.data
    fit_seconds = sum(r.fit_seconds for r in records.values()) + best.get("test_eval_seconds", 0.0)
    compile_seconds = sum(r.compile_seconds for r in records.values())
    wall = ctx.sessions.previous_wall + ctx.sessions.current["wall_seconds"]
    workers = worker_time(records.values(), wall)
    capacity = wall * max(1, workers["count"])  # the training processes' seconds: wall time x workers
    return {
        "name": cfg.name, "space": ctx.space.name, "dataset": data.name, "seed": cfg.seed,
        "trials": len(records), "planned_trials": len(tuner.planned),
        "completed_trials": sum(r.status == "COMPLETED" for r in records.values()),
        "rejected_draws": tuner.oracle.rejected,
        "wall_seconds": round(wall, 1), "fit_seconds": round(fit_seconds, 1),
        "fit_share": round(fit_seconds / capacity, 3) if wall else None,
        # Tracing and compiling steps: part of fit_seconds (measured on JAX, estimated on TensorFlow).
        "compile_seconds": round(compile_seconds, 1),
        "compile_share": round(compile_seconds / capacity, 3) if wall else None,
        "backend": ctx.devices["backend"],
        "objective": cfg.objective, "class_weight": cfg.class_weight,
        "best_trial": best["trial_id"], "best_score": best.get("score", best["val_accuracy"]),
        "best_val_accuracy": best["val_accuracy"], "best_test_accuracy": best["test_accuracy"],
        "algorithm": cfg.algorithm,
        "hyperband": {"max_epochs": cfg.max_epochs, "factor": cfg.factor, "iterations": cfg.iterations},
        **({"time_budget": _time_summary(ctx, tuner, wall)} if ctx.plan is not None else {}),
        **({"asha": {"rungs": tuner.oracle.rungs, "budget_epochs": tuner.oracle.budget,
                     "epochs_started": tuner.oracle.spent()}} if cfg.algorithm == "asha" else {}),
        **({"bohb": {"new_configurations": tuner.oracle.draws, "from_model": tuner.oracle.model_draws,
                     "model_trials": tuner.oracle.model_trials}}
           if cfg.algorithm == "bohb" else {}),
        "anytime": anytime_points(records.values(), ctx.sessions.state["sessions"]),
        "workers": workers,
        "devices": ctx.devices, "replicas": replicas,
        "sizes": data.sizes(), "input_shape": list(data.input_shape), "versions": versions(),
        "normalization_sample": (data.normalization or {}).get("sample_size"),
        **_folder_summary(data),
    }


def _time_summary(ctx, tuner, wall: float) -> dict[str, Any]:
    """A time-budgeted search's plan and what it came to: summary.json's ``time_budget``."""
    plan, oracle = ctx.plan, tuner.oracle
    return {"budget_seconds": plan["time_budget"], "planned_seconds": plan["predicted_seconds"],
            "planned_iterations": plan["iterations"],
            "iterations_begun": oracle.iterations_begun() if ctx.config.algorithm != "asha" else None,
            "max_epochs": plan["max_epochs"], "asked_max_epochs": plan["asked_max_epochs"],
            "calibration_seconds": plan["calibration_seconds"], "actual_seconds": round(wall, 1),
            "stopped": oracle.budget_stop or (f"its cap of {ctx.config.iterations} iterations"
                                              if ctx.config.iterations else "the end of the space's configurations")}


def worker_time(records, wall: float) -> dict[str, Any]:
    """Each worker's busy seconds (running trials: building, training, checkpoints) and idle
    seconds (the rest of the run's wall time: start-up, waiting for work, bookkeeping)."""
    per: dict[str, dict[str, Any]] = {}
    for r in records:
        w = per.setdefault(r.worker or "tuner0", {"busy_seconds": 0.0, "trials": 0})
        w["busy_seconds"] += r.seconds or 0.0
        w["trials"] += 1
    for w in per.values():
        w["busy_seconds"] = round(w["busy_seconds"], 1)
        w["idle_seconds"] = round(max(0.0, wall - w["busy_seconds"]), 1)
    busy = sum(w["busy_seconds"] for w in per.values())
    return {"count": len(per), "wall_seconds": round(wall, 1),
            "busy_share": round(busy / (len(per) * wall), 3) if per and wall else None,
            "per_worker": dict(sorted(per.items()))}


def _folder_summary(data) -> dict[str, Any]:
    """A streamed folder's unreadable images and image cache (nothing for arrays in memory)."""
    if data.images is None:
        return {}
    cache = data.images.cache
    return {"unreadable_images": data.unreadable(), "image_cache": cache.size() if cache is not None else None}


def best_trial(tuner, trial, records, data, folder: RunFolder, log) -> dict[str, Any]:
    """best.json's content; the test split is evaluated once per best trial and then reused.

    If the best trial's checkpoint is missing (deleted by hand, or by a version of this package
    that could delete it), its configuration is trained again from scratch for its epochs to
    recreate it, and best.json says so.
    """
    old = folder.read("best.json") or {}
    checkpoint = folder.checkpoint(trial.trial_id)
    if old.get("trial_id") == trial.trial_id and old.get("test_accuracy") is not None and checkpoint.exists():
        return old
    t0 = time.perf_counter()
    values = trial.hyperparameters.values
    recreated = None
    if not checkpoint.exists():
        epochs = int(values.get("tuner/epochs", 1))
        log(f"note: the checkpoint of the best trial {trial.trial_id} is missing; training its configuration again "
            f"from scratch for {epochs} epochs to recreate it")
        recreated = {"reason": "checkpoint missing", "epochs": epochs,
                     tuner.oracle.objective.name: tuner.recreate_checkpoint(trial)}
    model = tuner.load_model(trial)  # the trial's own best-epoch checkpoint
    sampler = tuner.hypermodel.sampler
    _, cfg, _ = sampler.resolve(values)
    stop = [] if data.images is None else [stop_on_bad_image(data.images)]
    test = data.pipeline("test", 256)
    scores = model.evaluate(test, verbose=0, callbacks=stop, return_dict=True)
    loss, acc = scores["loss"], scores["accuracy"]
    tested = split_results(*reversed(predict_split(model, test)), data.class_names)
    rec = records.get(trial.trial_id)
    objective = tuner.oracle.objective.name
    best = {
        "trial_id": trial.trial_id, "run": rec and rec.run, "objective": objective, "score": trial.score,
        "val_accuracy": trial.score if objective == "val_accuracy" else rec and rec.val_accuracy,
        "val_metrics": (rec and rec.metrics) or {},
        "test_accuracy": float(acc), "test_loss": float(loss),
        "test_balanced_accuracy": tested["balanced_accuracy"], "test_macro_f1": tested["macro_f1"],
        "class_names": list(data.class_names), "per_class": tested["per_class"],
        "confusion_matrix": tested["confusion_matrix"], "epochs": rec and rec.epochs,
        "params": rec and rec.params, "flops": rec and rec.flops,
        "hyperparameters": (rec and rec.hyperparameters) or sampler.describe(values),
        "spec": (rec and rec.spec) or sampler.spec(values).to_dict(),
        "train_config": dataclasses.asdict(cfg),
        "checkpoint": str(checkpoint.relative_to(folder.path)),
        "test_eval_seconds": round(time.perf_counter() - t0, 3),
    }
    if recreated:
        best["recreated"] = recreated  # the weights evaluated (and exported) are the retrained ones
    folder.write("best.json", best)
    return best
