"""One process's part of a search: load the data, run trials with keras-tuner, and (unless a
worker) finish the run: best trial, summary, leaderboard, report.

A process runs as ``standalone`` (the whole search), ``chief`` (keras-tuner's oracle server:
it trains nothing) or ``worker`` (asks the chief for trials). It may be a trial process of a
supervising search, which it then hands over to a fresh one when its memory has grown by
``config.recycle_mb`` (`handover`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import signal
from collections.abc import Callable

from search_spaces import Sampler

from ..config import SearchConfig
from ..data.datasets import load_data
from ..errors import Recycled
from ..faults import crash_point, handover_every_trial
from ..observe.progress import Reporter, fmt_time, progress_line, search_work, time_left
from ..processes.system import rss_mb
from ..run.folder import RunFolder
from ..run.records import TrialRecord
from ..run.sessions import Sessions
from ..runtime import import_keras, setup_devices
from .finish import SearchResult, finish_run
from .start import seed_start
from .timing import await_plan, install_deadline, plan_line, settle_plan


class _Recycle(Exception):
    """Raised after a trial is saved, when the trial process has grown too much."""


@dataclasses.dataclass
class Context:
    """What the parts of a session share."""

    config: SearchConfig
    space: object
    folder: RunFolder
    role: str
    log: Callable[[str], None]
    data: object = None
    sampler: object = None
    devices: dict | None = None
    sessions: Sessions | None = None
    work_done: int | None = None  # the finished trials' work (`search_work`) as last counted; None: not yet
    plan: dict | None = None  # the time budget's plan (`tuning.search.timing`)


def run_session(config: SearchConfig, space, folder: RunFolder, *, role: str, log: Callable[[str], None],
                resuming: bool, t_start: float, handover: bool = False, continuing: bool = False,
                ready: Callable[[], float] | None = None, ready_before_data: bool = False) -> SearchResult | None:
    """Run this process's part of the search (see the module's docstring).

    Args:
        config: the resolved config; space: its loaded `search_spaces.Space`.
        resuming: the run folder holds an earlier session of this run.
        t_start: when the user's command started (for wall times).
        handover: a trial process of a supervising search: raise `Recycled` once grown.
        continuing: this trial process took over from another one (no banner).
        ready: a standby's wait, called once the data is loaded (or, `ready_before_data`, once Keras
            is imported and the devices are set up); returns when the session's wall time starts
            (it replaces `t_start`).

    Returns:
        The `SearchResult`; None for a worker.
    """
    ctx = Context(config, space, folder, role, log)
    _start_keras(ctx)
    if ready is not None and ready_before_data:
        t_start = ready()
    _load(ctx, announce=not continuing)
    if ready is not None and not ready_before_data:
        t_start = ready()
    ctx.sessions = Sessions(folder, role, t_start, resuming)
    if role != "worker":
        _write_run_info(ctx)
        ctx.plan = settle_plan(ctx)  # a time budget's (its max_epochs may be smaller than asked)
    else:
        await_plan(ctx)  # the chief's plan's max_epochs (the chief keeps the deadline)
    tuner, replicas = _make_tuner(ctx, handover)
    if ctx.plan is not None:
        install_deadline(ctx, tuner, ctx.plan)
    if role != "worker" and not continuing:
        tuner.oracle.forget_failures()  # the user ran the command again: an old stop's streak is over
        tuner.oracle.save()
    if role != "worker":
        tuner.recover_ended()  # records a kill cut short (`ResNetTuner.on_trial_end`)
    tuner.records.update(folder.records())
    _announce(ctx, tuner, replicas, resuming, continuing)
    if ctx.plan is not None and ctx.plan.get("new"):
        ctx.log(plan_line(ctx.plan, config.algorithm, config.iterations))
    if role != "worker" and not continuing:
        seed_start(ctx, tuner)  # --try, [[try]], --warm-start: at a run's first start
    _search(ctx, tuner)
    if role == "worker":
        return None
    crash_point("after-trials")
    return finish_run(ctx, tuner, replicas)


def _start_keras(ctx: Context) -> None:
    """Import Keras on the run's backend, and set up the devices (precision, XLA)."""
    cfg = ctx.config
    # A worker started by --workers has been handed its GPU (CUDA_VISIBLE_DEVICES) already.
    gpus = None if ctx.role == "worker" and "CUDA_VISIBLE_DEVICES" in os.environ else cfg.gpus
    # Before anything else imports Keras: the backend is set, and its start-up noise stays hidden.
    import_keras(cfg.backend or "tensorflow", cfg.verbose, gpus, cache_dir=ctx.folder.path / "compile_cache")
    ctx.devices = setup_devices(cfg.precision, cfg.jit)


def _load(ctx: Context, announce: bool) -> None:
    cfg = ctx.config
    speak = ctx.role != "worker" and announce
    ctx.data = load_data(cfg.dataset, seed=cfg.seed, image_size=cfg.image_size, skip_bad_images=cfg.skip_bad_images,
                         run_dir=ctx.folder.path, image_cache=cfg.image_cache, log=ctx.log if speak else None)
    ctx.sampler = Sampler(ctx.space, ctx.data.net_input_shape, ctx.data.num_classes)
    if ctx.sampler.note and speak:
        ctx.log(f"note: {ctx.sampler.note}")
    unreadable = ctx.data.unreadable()
    if unreadable and speak:
        ctx.log(f"note: left out {len(unreadable)} unreadable image(s) so far, first {unreadable[0]} (all in "
                f"{ctx.folder.path / 'data' / 'unreadable_images.txt'})")


def _write_run_info(ctx: Context) -> None:
    """run.json: the config (read by every child process) and what the data turned out to be."""
    info = ctx.folder.read("run.json") or {}
    data = ctx.data
    ctx.folder.write("run.json", {**info, "created": info.get("created", ctx.sessions.state["created"]),
                                  "split": data.split, "sizes": data.sizes(), "input_shape": list(data.input_shape),
                                  "classes": data.class_names})


def _make_tuner(ctx: Context, handover: bool):
    # The engine imports Keras: only in a process that trains (or serves the oracle).
    from ..engine.hypermodel import ResNetHyperModel
    from ..engine.kt_internals import keras_tuner_debug
    from ..engine.tuner import ResNetTuner
    from ..observe.tensorboard import write_experiment_config

    cfg = ctx.config
    kwargs, replicas = _strategy(cfg.strategy)
    hypermodel = ResNetHyperModel(ctx.space, ctx.data, max_epochs=cfg.max_epochs, sampler=ctx.sampler,
                                  class_weight=cfg.class_weight,
                                  seed=cfg.seed, jit_compile=ctx.devices["jit"], replicas=replicas)
    keras_tuner_debug(cfg.verbose)  # keras-tuner prints every failed trial's traceback when DEBUG is on
    # The search's time left is asked for while a trial runs, so `tuner` is set by then.
    with _quiet(cfg.verbose):  # keras-tuner prints "Reloading Tuner from ..."
        tuner = ResNetTuner(hypermodel, ctx.folder.path, max_epochs=cfg.max_epochs, factor=cfg.factor,
                            iterations=cfg.iterations, seed=cfg.seed, algorithm=cfg.algorithm, objective=cfg.objective,
                            on_trial_done=_on_trial_done(ctx, handover),
                            progress=Reporter(ctx.log, lambda epochs_done: _search_left(ctx, tuner, epochs_done)),
                            **kwargs)
    if ctx.role != "worker" and not any(tuner.logdir.glob("events.out.tfevents.*")):
        write_experiment_config(tuner.logdir, tuner.oracle.get_space().space, ctx.sampler.aliases, cfg.objective)
    return tuner, replicas


def _search_left(ctx: Context, tuner, epochs_done: float) -> float:
    """The search's seconds left at its pace so far (the model of `progress_line`), counting
    `epochs_done` of the running trial as done."""
    if ctx.work_done is None:
        ctx.work_done = search_work(tuner.planned, ctx.folder.records().values())[0]
    total = search_work(tuner.planned, ())[1]
    left = time_left(ctx.sessions.elapsed(), ctx.work_done + epochs_done, total)
    if ctx.config.time_budget is not None:  # it goes on while trials fit, and ends by the deadline
        left = max(0.0, ctx.config.time_budget - ctx.sessions.elapsed())
    return left


def _strategy(strategy: str | None) -> tuple[dict, int]:
    """(keras-tuner's keyword arguments, replicas) of ``--strategy``: TensorFlow's
    MirroredStrategy (keras-tuner's `distribution_strategy`), or on JAX Keras' `DataParallel`
    distribution over every visible device, set for the whole process."""
    if not strategy:
        return {}, 1
    import keras

    if keras.backend.backend() == "jax":
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return {}, len(devices)
    import tensorflow as tf

    mirrored = tf.distribute.MirroredStrategy()
    return {"distribution_strategy": mirrored}, mirrored.num_replicas_in_sync


def _quiet(verbose: bool):
    return contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())


def _on_trial_done(ctx: Context, handover: bool):
    """After each trial: its record, the leaderboard, the session's time, a progress line, and
    (a trial process) the hand-over check."""
    baseline: list[float] = []

    def on_trial_done(tuner, trial, record: TrialRecord) -> None:
        ctx.folder.save_record(record)
        records = ctx.folder.records()  # every worker's trials, not only this process's
        ctx.folder.write_leaderboard(records.values())
        ctx.sessions.save()
        ctx.work_done = search_work(tuner.planned, records.values())[0]
        ctx.log(progress_line(tuner.planned, records, record, ctx.sessions.elapsed(), ctx.config.time_budget))
        if handover and ctx.config.recycle_mb:
            # ASHA's number of trials is not known in advance, nor a time-budgeted search's.
            _maybe_hand_over(ctx, baseline, len(records) < len(tuner.planned) or ctx.config.algorithm == "asha"
                             or ctx.config.time_budget is not None)

    return on_trial_done


def _maybe_hand_over(ctx: Context, baseline: list[float], more_to_do: bool) -> None:
    rss = rss_mb()
    baseline.append(rss)
    if (rss - baseline[0] > ctx.config.recycle_mb or handover_every_trial()) and more_to_do:
        ctx.log(f"(this trial process grew by {rss - baseline[0]:.0f} MB over {len(baseline)} trials; "
                "continuing in a fresh one)")
        raise _Recycle()


def _device_text(devices: dict) -> str:
    return ((f"{len(devices['gpus'])} GPU(s)" if devices["gpus"] else "CPU") + f", {devices['backend']}"
            + f", {devices['policy']}"
            + (", XLA" if devices["jit"] else ""))


def _announce(ctx: Context, tuner, replicas: int, resuming: bool, continuing: bool) -> None:
    cfg, data, planned, device = ctx.config, ctx.data, len(tuner.planned), _device_text(ctx.devices)
    if ctx.role == "worker":
        if not continuing:  # once per worker, not again after each hand-over
            ctx.log(f"worker on {device}: running trials for {ctx.folder.path}")
    elif resuming and not continuing:
        about = "about " if cfg.algorithm == "asha" else ""  # ASHA's trials are not fixed in advance
        of = "" if cfg.time_budget is not None else f" of {about}{planned}"  # a time budget's end is its deadline
        ctx.log(f"resuming {ctx.folder.path}: {len(tuner.records)}{of} trials already done ({device})")
    elif not continuing:
        shape = "x".join(map(str, data.net_input_shape))
        ctx.log(f"searching space {ctx.space.name!r} on {data.name} ({data.sizes()['train']} train / "
                f"{data.sizes()['validation']} validation images, {shape}, {data.num_classes} classes): "
                f"{_plan_text(cfg, tuner)} on {device}; results in {ctx.folder.path}")
    if ctx.role != "worker" and not continuing:
        for line in class_lines(data.class_names, data.class_counts(), cfg.objective, cfg.class_weight):
            ctx.log(line)
    if replicas > 1 or cfg.strategy:
        ctx.log(f"data-parallel over {replicas} replica(s): each trial's sampled batch size is per replica, so the "
                f"global batch is {replicas}x the batch_size in the leaderboard")


IMBALANCE = 3.0  # the largest training class this many times the smallest: say so


def class_lines(names: list[str], counts: dict[str, list[int]], objective: str, class_weight: str | None) -> list[str]:
    """The images per class of each split (one line; with more than 10 classes, the smallest and
    largest of each split), and where the training classes are imbalanced, a note naming what
    suits that."""
    if len(names) <= 10:
        per_class = (f"{name} {counts['train'][i]}/{counts['validation'][i]}/{counts['test'][i]}"
                     for i, name in enumerate(names))
        lines = ["images per class (train/validation/test): " + ", ".join(per_class)]
    else:
        lines = [f"images per class, {len(names)} classes: " + "; ".join(
            f"{split} {min(c)} ({names[c.index(min(c))]}) to {max(c)} ({names[c.index(max(c))]})"
            for split, c in counts.items())]
    train = counts["train"]
    smallest, largest = min(train), max(train)
    if largest >= IMBALANCE * max(smallest, 1):
        ratio = f"{largest / smallest:.1f}x" if smallest else "some classes have none"
        if objective in ("val_balanced_accuracy", "val_macro_f1") and class_weight == "balanced":
            advice = f"this search counts every class the same (--objective {objective}, --class-weight balanced)"
        else:
            advice = ("consider --objective val_balanced_accuracy and --class-weight balanced (now: --objective "
                      + objective + (f", --class-weight {class_weight})" if class_weight else ")"))
        lines.append(f"note: the training classes are imbalanced (largest {names[train.index(largest)]} {largest} "
                     f"images, smallest {names[train.index(smallest)]} {smallest}: {ratio}); accuracy can favour "
                     f"the large classes: {advice}")
    return lines


def _plan_text(cfg: SearchConfig, tuner) -> str:
    from ..engine.algorithms import NAMES

    budget = f"max_epochs={cfg.max_epochs} factor={cfg.factor} " + (
        f"iterations={cfg.iterations}" if cfg.time_budget is None else f"time budget {fmt_time(cfg.time_budget)}"
        + (f" (at most {cfg.iterations} iterations)" if cfg.iterations else ""))
    if cfg.objective != "val_accuracy" or cfg.class_weight:
        budget += f", selecting on {cfg.objective}" + (f", classes weighted {cfg.class_weight}"
                                                       if cfg.class_weight else "")
    if cfg.algorithm == "asha":
        return (f"ASHA {budget} (rungs of {', '.join(map(str, tuner.oracle.rungs))} epochs), {tuner.oracle.budget} "
                f"epochs in all, about {len(tuner.planned)} trials")
    return f"{NAMES[cfg.algorithm]} {budget}, {len(tuner.planned)} trials"


def _search(ctx: Context, tuner) -> None:
    if ctx.role == "chief":
        from ..engine.kt_internals import serve_until_done

        # The workers end the trials, so the chief keeps its own wall time saved as it serves:
        # after a kill -9, a resumed run still counts this session's time.
        serve_until_done(tick=ctx.sessions.save)
    try:
        with _quiet(ctx.config.verbose):  # keras-tuner's search banners
            tuner.search(verbose=1 if ctx.config.verbose else 0)
    except _Recycle:
        ctx.sessions.save()
        raise Recycled() from None
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the saving short
        done = len(ctx.folder.records())
        ctx.log(f"interrupted after {done} of {len(tuner.planned)} trials ({fmt_time(ctx.sessions.elapsed())}); "
                "finished trials are saved and the trial in progress resumes from its last completed epoch")
        ctx.sessions.save()
        raise
