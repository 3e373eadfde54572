"""A search with a time budget (``--time-budget``): its plan, made once before its first trial (and
again when a larger budget extends it), and the deadline its oracle keeps. The model, the
calibration and the plan's arithmetic are `tuning.engine.budget`'s.

The plan is kept in ``run.json`` (``plan``): a resumed run, and every trial process of the run,
keeps the plan it was given, so a kill does not change which trials run; its calibration's
points stay there too, and the model is refitted to them and to the trials' measured seconds.
"""

from __future__ import annotations

import time

from ..config import fmt_time
from ..errors import UsageError


def settle_plan(ctx) -> dict | None:
    """The run's plan for its time budget (None without one): run.json's when it was made for this
    budget, else a new one (said in one line) written there. Sets ``ctx.config.max_epochs`` to the
    plan's."""
    cfg, folder = ctx.config, ctx.folder
    if cfg.time_budget is None:
        return None
    info = folder.read("run.json") or {}
    plan = info.get("plan")
    if plan is None or plan["time_budget"] != cfg.time_budget:
        plan = _new_plan(ctx, plan)
        info = folder.read("run.json") or {}
        kept = {k: v for k, v in plan.items() if k != "new"}
        folder.write("run.json", {**info, "plan": kept, "config": {**info.get("config", {}),
                                                                   "max_epochs": plan["max_epochs"]}})
    ctx.config = cfg.replace(max_epochs=plan["max_epochs"])
    return plan


PLAN_WAIT_SECONDS = 300  # a worker waits this long for its chief's plan


def await_plan(ctx) -> None:
    """A worker of a time-budgeted search: the max_epochs of its chief's plan (in run.json once
    the chief has made it), waiting for it up to `PLAN_WAIT_SECONDS`."""
    cfg = ctx.config
    give_up = time.monotonic() + PLAN_WAIT_SECONDS
    while cfg.time_budget is not None and time.monotonic() < give_up:
        plan = (ctx.folder.read("run.json") or {}).get("plan")
        if plan is not None and plan["time_budget"] >= cfg.time_budget:
            ctx.config = cfg.replace(max_epochs=plan["max_epochs"])
            return
        time.sleep(1.0)


def _new_plan(ctx, before: dict | None) -> dict:
    from ..engine.budget import CostModel, Work, calibrate, hyperband_trials, make_plan, random_configurations
    from ..engine.budget import work_of_values as work

    cfg, sampler, sizes = ctx.config, ctx.sampler, ctx.data.sizes()
    t0 = time.time()
    samples = random_configurations(sampler, seed=cfg.seed + 1)
    works = [work(sampler, v, sizes) for v in samples]
    mean = Work(sum(w.steps for w in works) / len(works), sum(w.gflops for w in works) / len(works))
    first = before is None and not ctx.folder.records()
    calibration = [_point(p) for p in before["points"]] if before else []
    measured = measured_points(ctx)
    if not calibration and not measured:
        calibration = calibrate(_hypermodel(ctx), samples)
    points = calibration + measured
    model = CostModel.fit(points)
    asked = before["asked_max_epochs"] if before else cfg.max_epochs
    plan = make_plan(cfg.time_budget, ctx.sessions.elapsed(), model, mean, cfg.max_epochs,
                     lambda m: hyperband_trials(m, cfg.factor), shrink=first)
    if plan["iterations"] == 0 and first:
        raise UsageError(f"time budget {fmt_time(cfg.time_budget)} is too short for this space and data: "
                         f"{fmt_time(ctx.sessions.elapsed())} went on starting and calibrating, and one iteration "
                         f"at max_epochs 1 is predicted to take {fmt_time(plan['iteration_seconds'])} more; give a "
                         "longer --time-budget")
    plan.update({"time_budget": cfg.time_budget, "asked_max_epochs": asked, "factor": cfg.factor,
                 "calibration_seconds": round(time.time() - t0, 1) if not measured else 0.0, "model": model.to_dict(),
                 "mean": [mean.steps, mean.gflops],
                 "points": [[w.steps, w.gflops, e, s] for w, e, s in calibration]})
    plan["new"] = True  # said once the search has said what it searches (not kept in run.json)
    return plan


def _hypermodel(ctx):
    from ..engine.hypermodel import ResNetHyperModel

    cfg = ctx.config
    return ResNetHyperModel(ctx.space, ctx.data, max_epochs=cfg.max_epochs, sampler=ctx.sampler,
                            class_weight=cfg.class_weight, seed=cfg.seed, jit_compile=ctx.devices["jit"])


def plan_line(plan: dict, algorithm: str, cap: int | None) -> str:
    """``plan: 3 iterations of Hyperband (max_epochs 27, factor 3), ~1:52:00 of 2:00:00; ...``"""
    from ..engine.algorithms import NAMES

    n, m, asked = plan["iterations"], plan["max_epochs"], plan["asked_max_epochs"]
    more = "" if plan["calibration_seconds"] else "more "  # an extension's plan: the trials so far are its model
    what = f"{n} {more}iteration{'s' if n != 1 else ''} of " + (
        "Hyperband's epochs with ASHA" if algorithm == "asha" else NAMES[algorithm])
    if n == 0:
        what = "part of an iteration of " + ("Hyperband's epochs with ASHA" if algorithm == "asha"
                                              else NAMES[algorithm])
    shrunk = f", not {asked}: one iteration of {asked} does not fit" if m != asked and not more else ""
    then = f"; at most {cap} iterations in all" if cap else "; then trials go on while each is predicted to end in time"
    calibrated = f", calibrated in {fmt_time(plan['calibration_seconds'])}" if plan["calibration_seconds"] else ""
    return (f"plan: {what} (max_epochs {m}{shrunk}, factor {plan['factor']}), ~{fmt_time(plan['predicted_seconds'])} "
            f"of {fmt_time(plan['time_budget'])}{calibrated}{then}")


def _point(row):
    from ..engine.budget import Work

    steps, gflops, epochs, seconds = row
    return Work(steps, gflops), epochs, seconds


def measured_points(ctx) -> list:
    """The cost model's points of the run's finished trials."""
    from ..engine.budget import trial_points as points
    from ..engine.budget import work_of_values

    sizes = ctx.data.sizes()

    def work_of(record):
        try:
            return work_of_values(ctx.sampler, record.values or {}, sizes)
        except ValueError:  # a value outside today's space: not evidence of what a trial costs
            return None

    return points(ctx.folder.records().values(), work_of)


def install_deadline(ctx, tuner, plan: dict) -> None:
    """Give the oracle the deadline of `plan`'s budget (the model refitted to the trials so far),
    and the planned iterations for the progress lines."""
    from ..engine.budget import CostModel, Deadline, Work
    from ..engine.budget import work_of_values as work

    sizes, mean = ctx.data.sizes(), Work(*plan["mean"])
    fitted = {"n": -1, "model": CostModel(**plan["model"])}

    def model() -> CostModel:  # refitted only when a trial has been recorded since (asked before every trial)
        recorded = sum(1 for _ in ctx.folder.trials_dir.glob("*.json"))
        if recorded != fitted["n"]:
            points = [*map(_point, plan["points"]), *measured_points(ctx)]
            fitted["n"], fitted["model"] = recorded, CostModel.fit(points)
        return fitted["model"]

    def predict(values) -> float:
        epochs = int(values.get("tuner/epochs", 1)) - int(values.get("tuner/initial_epoch", 0))
        return model().trial_seconds(work(ctx.sampler, values, sizes), epochs)

    oracle = tuner.oracle
    oracle.planned_iterations = plan["iterations"] or 1
    oracle.deadline = Deadline(plan["time_budget"], ctx.sessions.elapsed, predict,
                               lambda: model().epoch_seconds(mean))
    tuner.planned = oracle.planned_trials()
