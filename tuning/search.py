"""`python -m tuning.search`: Hyperband over ResNets, every trial in TensorBoard, results on disk.

The CLI is a thin layer over `search()`, which notebooks call directly::

    import tuning
    result = tuning.search(space="small", max_epochs=3)
    result.best["test_accuracy"]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import pathlib
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from .errors import SystematicFailure, UsageError
from .processes import CHILD_ENV, RECYCLE_EXIT

RUN_KEYS = ("space", "dataset", "seed", "max_epochs", "factor", "iterations", "image_size")


@dataclasses.dataclass
class SearchResult:
    """What a search produced. `best` and `summary` are the contents of best.json / summary.json."""

    name: str
    run_dir: pathlib.Path
    best: dict[str, Any]
    summary: dict[str, Any]
    leaderboard: list[dict[str, Any]]
    tensorboard_command: str


def _slug(dataset: str) -> str:
    p = pathlib.Path(dataset)
    return p.name or p.resolve().name if (os.sep in dataset or p.exists()) else dataset


def _fmt_time(seconds: float) -> str:
    seconds = int(round(max(0.0, seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _check_positive(name: str, value, minimum: int = 1) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
        raise UsageError(f"{name} = {value!r} is invalid: it must be an integer >= {minimum}")


def _role() -> str:
    """``standalone``, or keras-tuner's ``chief`` / ``worker`` when its distributed variables are set."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "standalone"
    return "chief" if os.environ.get("KERASTUNER_TUNER_ID") == "chief" else "worker"


def search(
    space: str | os.PathLike = "small",
    dataset: str | None = None,
    *,
    max_epochs: int | None = None,
    factor: int | None = None,
    iterations: int | None = None,
    results_dir: str | os.PathLike = "results",
    name: str | None = None,
    seed: int = 0,
    overwrite: bool = False,
    verbose: bool = False,
    image_size: Sequence[int] | None = None,
    skip_bad_images: bool = False,
    precision: str = "auto",
    jit: bool | None = None,
    gpus: str | None = None,
    strategy: str | None = None,
    recycle_mb: int = 150,
    log: Callable[[str], None] | None = None,
) -> SearchResult | None:
    """Run (or resume) a Hyperband search over a space of ResNets.

    Args:
        space: a named space (``small``, ``cifar``, ``imagenet``) or the path of a TOML file.
        dataset: ``digits``, ``cifar10``, ``cifar100``, ``mnist``, ``fashion_mnist`` or a folder of
            class subfolders of images; default: the space's.
        max_epochs, factor, iterations: the Hyperband budget; default: the space's.
        results_dir: parent folder of the run's folder.
        name: the run's folder name; default ``<space>-<dataset>``.
        seed: seeds the data split, the sequence of trials and each trial's initial weights.
        overwrite: delete an existing run of this name and start afresh (otherwise it resumes).
        verbose: show TensorFlow's start-up log and keras-tuner's messages.
        image_size: (height, width) the network sees; images are resized inside the model.
        skip_bad_images: leave out unreadable images of an image folder instead of stopping.
        precision: ``auto`` (mixed float16 on a GPU, float32 on a CPU), ``float32``, ``mixed``
            or ``bfloat16``; the softmax head always computes in float32.
        jit: XLA-compile the training step; default: on a GPU only.
        gpus: GPU indices to use, e.g. ``"0,1"`` (default: all).
        strategy: ``"mirrored"`` to train every trial on all visible GPUs
            (``tf.distribute.MirroredStrategy``); batch sizes are then per replica.
        recycle_mb: TensorFlow keeps about 10 MB for every model a process has trained, so trials
            run in a child process that hands over to a fresh one (resuming where it stopped)
            once its memory has grown by this many MB. 0 runs every trial in this process.
        log: where progress lines go (default: this process's stdout at the time of the call).

    Returns:
        A `SearchResult` with best.json's and summary.json's contents and the leaderboard (None
        in a keras-tuner worker process, which only runs trials).

    Raises:
        UsageError, SpaceError, DataError (all `ValueError`): bad input; nothing was changed.
    """
    t_start = time.time()
    if log is None:
        stdout = sys.stdout  # keras-tuner's own prints are silenced by redirecting sys.stdout later

        def log(line: str) -> None:
            print(line, file=stdout, flush=True)

    from search_spaces import load_space

    from .runtime import check_keras_tuner

    check_keras_tuner()
    for key, value, minimum in (("max_epochs", max_epochs, 1), ("factor", factor, 2),
                                ("iterations", iterations, 1), ("seed", seed, 0)):
        _check_positive(key, value, minimum)
    if image_size is not None:
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        if len(image_size) != 2 or not all(isinstance(s, int) and s >= 1 for s in image_size):
            raise UsageError(f"image_size = {image_size!r} is invalid: give a positive size or (height, width)")
        image_size = tuple(image_size)
    if precision not in PRECISIONS:
        raise UsageError(f"precision = {precision!r} is invalid: choose from {', '.join(PRECISIONS)}")
    if strategy not in (None, "none", "mirrored"):
        raise UsageError(f"strategy = {strategy!r} is invalid: choose mirrored (or leave it out)")
    if gpus is not None and not all(g.strip().isdigit() for g in str(gpus).split(",")):
        raise UsageError(f"gpus = {gpus!r} is invalid: give GPU indices such as 0 or 0,1")
    sp = load_space(space)
    dataset = dataset or sp.dataset
    if not dataset:
        raise UsageError(f"space {sp.name!r} has no default dataset; give one with --dataset (a keras dataset "
                         "name or a folder of class subfolders of images)")
    image_size = image_size or sp.image_size
    max_epochs = max_epochs or sp.max_epochs
    factor = factor or sp.factor
    iterations = iterations or sp.iterations
    name = name or f"{sp.name}-{_slug(dataset)}"
    if not name or "/" in name or name in (".", ".."):
        raise UsageError(f"name = {name!r} is invalid: give a plain folder name")
    run_dir = pathlib.Path(results_dir) / name
    run_info = {"space": sp.name, "space_file": str(sp.path), "dataset": dataset, "seed": seed,
                "max_epochs": max_epochs, "factor": factor, "iterations": iterations,
                "image_size": list(image_size) if image_size else None}
    _check_positive("recycle_mb", recycle_mb, 0)
    try:
        return _search(sp, dataset, run_dir, run_info, results_dir, name, seed, overwrite, verbose, skip_bad_images,
                       precision, jit, gpus, strategy, recycle_mb, log, t_start)
    except (ValueError, SystematicFailure, SearchError, Recycled, KeyboardInterrupt):
        raise  # UsageError, SpaceError and DataError are ValueErrors: bad input, said in one line
    except Exception as e:  # anything else: one line here, the traceback in the run's error.log
        raise SearchError.from_exception(run_dir, "the search", e) from e


def _search(sp, dataset, run_dir, run_info, results_dir, name, seed, overwrite, verbose, skip_bad_images, precision,
            jit, gpus, strategy, recycle_mb, log, t_start) -> SearchResult | None:
    from search_spaces import Sampler

    role = _role()
    child = CHILD_ENV in os.environ  # a trial process of a supervising search() (which holds the lock)
    from .lock import check_lock

    resuming = False
    if role != "worker":  # the chief checks and locks the folder; its workers share it
        if not child:
            check_lock(run_dir)  # another search on this folder: refuse now, before any work
        resuming = _check_existing_run(run_dir, run_info, overwrite)
        _check_writable(pathlib.Path(results_dir))
    if role == "standalone" and not child and recycle_mb:
        child_args = _child_args(sp, dataset, run_info, results_dir, name, verbose, skip_bad_images, precision, jit,
                                 gpus, strategy)
        with _owned_run(run_dir, overwrite) as lock_fd:
            return _supervise(child_args, run_dir, recycle_mb, log, lock_fd, verbose)

    from .runtime import import_tensorflow, setup_devices

    import_tensorflow(verbose, gpus)  # before anything imports keras, so its start-up noise stays hidden
    from .data import load_data

    image_size = tuple(run_info["image_size"]) if run_info["image_size"] else None
    data = load_data(dataset, seed=seed, image_size=image_size, skip_bad_images=skip_bad_images)
    sampler = Sampler(sp, data.net_input_shape, data.num_classes)
    if sampler.note and role != "worker" and not os.environ.get("TUNING_CONTINUING"):
        log(f"note: {sampler.note}")
    if data.skipped:
        log(f"note: skipped {len(data.skipped)} unreadable image(s), first {data.skipped[0]}")
    devices = setup_devices(precision, jit)
    opts = _Options(run_dir, run_info, sp, data, sampler, resuming, seed, run_info["max_epochs"], run_info["factor"],
                    run_info["iterations"], name, verbose, log, t_start, role, devices,
                    strategy if strategy != "none" else None)
    if role == "worker" or child:
        return _run(opts)
    with _owned_run(run_dir, overwrite):
        return _run(opts)


class SearchError(RuntimeError):
    """An unexpected failure: one line for the user, the traceback in ``<run>/error.log``."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details  # the traceback (printed too with --verbose)

    @classmethod
    def from_exception(cls, run_dir: pathlib.Path, what: str, error: BaseException) -> "SearchError":
        import traceback

        details = "".join(traceback.format_exception(error))
        log_path = _append_error_log(run_dir, details)
        first = (str(error).strip().splitlines() or [""])[0][:200]
        return cls(f"{what} failed ({type(error).__name__}{': ' + first if first else ''}); the full traceback is "
                   f"in {log_path}; finished trials are saved: run the same command again to resume", details)


def _append_error_log(run_dir: pathlib.Path, text: str) -> pathlib.Path:
    """Add `text` to ``<run>/error.log`` (kept across sessions: nothing on disk is lost)."""
    path = run_dir / "error.log"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(f"----- {time.strftime('%Y-%m-%d %H:%M:%S')} (pid {os.getpid()})\n{text.rstrip()}\n")
    except OSError:  # an unwritable folder: keep the traceback somewhere the user can read it
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix="tuning-error-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        path = pathlib.Path(tmp)
    return path


class _Recycle(Exception):
    """Raised after a trial is saved, when the trial process has grown too much."""


class Recycled(Exception):
    """This trial process handed over to a fresh one (its `main` exits with RECYCLE_EXIT)."""


def _child_args(sp, dataset, run_info, results_dir, name, verbose, skip_bad_images, precision, jit, gpus,
                strategy) -> list[str]:
    args = ["--space", str(sp.path), "--dataset", dataset, "--results-dir", str(results_dir), "--name", name,
            "--seed", str(run_info["seed"]), "--max-epochs", str(run_info["max_epochs"]),
            "--factor", str(run_info["factor"]), "--iterations", str(run_info["iterations"]),
            "--precision", precision]
    if run_info["image_size"]:
        args += ["--image-size", "x".join(map(str, run_info["image_size"]))]
    if verbose:
        args.append("--verbose")
    if skip_bad_images:
        args.append("--skip-bad-images")
    if jit is not None:
        args.append("--jit" if jit else "--no-jit")
    if gpus is not None:
        args += ["--gpus", str(gpus)]
    if strategy and strategy != "none":
        args += ["--strategy", strategy]
    return args


def _supervise(child_args: list[str], run_dir: pathlib.Path, recycle_mb: int, log, lock_fd: int,
               verbose: bool) -> SearchResult:
    """Run the search in trial processes, each handing over to a fresh one when it has grown.

    A trial process inherits the run's lock (`lock_fd`), so the folder stays locked until it has
    exited too, and is killed if this process dies. It says how it ended in an outcome file
    (`write_outcome`), never through its stderr text.
    """
    import tempfile

    from .processes import ChildProcess, child_env, python_module

    fd, outcome_path = tempfile.mkstemp(prefix="tuning-outcome-", suffix=".json")
    os.close(fd)
    outcome_file = pathlib.Path(outcome_path)
    cmd = python_module("tuning.search", [*child_args, "--outcome", outcome_path])
    env = child_env(**{CHILD_ENV: str(recycle_mb)})
    show_error = (lambda line: print(line, file=sys.stderr, flush=True)) if verbose else (lambda line: None)
    try:
        child = ChildProcess(cmd, env, log, on_error_line=show_error, pass_fds=(lock_fd,))
        while True:
            returncode = child.wait()
            if returncode == RECYCLE_EXIT:  # it saved everything: go on in a fresh process
                outcome_file.write_text("")
                child.env = {**env, "TUNING_CONTINUING": "1"}
                child.start()
                continue
            if returncode == 0:
                return _result_from_disk(run_dir)
            _raise_outcome(read_outcome(outcome_file), returncode, run_dir, child.errors)
    finally:
        outcome_file.unlink(missing_ok=True)


def write_outcome(path: str | os.PathLike, kind: str, message: str = "", details: str = "") -> None:
    """How a trial process ended, for its supervisor: ``usage``, ``data``, ``systematic``,
    ``error`` or ``interrupted``, with the one-line message (and the traceback, for --verbose)."""
    from .runtime import write_json

    write_json(path, {"kind": kind, "message": message, "details": details})


def read_outcome(path: pathlib.Path) -> dict[str, str]:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}


def _raise_outcome(outcome: dict[str, str], returncode: int, run_dir: pathlib.Path, errors: list[str]) -> None:
    """Raise what the trial process's ending means here."""
    import signal

    from .data import DataError

    kind, message = outcome.get("kind"), outcome.get("message", "")
    if kind == "usage":
        raise UsageError(message)
    if kind == "data":
        raise DataError(message)
    if kind == "systematic":
        raise SystematicFailure(message)
    if kind == "interrupted" or returncode in (130, -signal.SIGINT):
        raise KeyboardInterrupt
    if kind == "error":
        raise SearchError(message, outcome.get("details", ""))
    # No word from it: it was killed (the kernel's out-of-memory killer, a person) or crashed hard.
    how = f"was killed by {signal.Signals(-returncode).name}" if returncode < 0 else f"exited with status {returncode}"
    log_path = _append_error_log(run_dir, f"the trial process {how}; its last output:\n" + "".join(errors[-50:]))
    raise SearchError(f"the trial process {how}; finished trials and the running trial's last completed epoch are "
                      f"saved: run the same command again to resume (its last output is in {log_path})")


def _result_from_disk(run_dir: pathlib.Path) -> SearchResult:
    from . import results as res

    best = json.loads((run_dir / "best.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    _, rows = res.leaderboard_rows(res.load_records(run_dir).values())
    return SearchResult(run_dir.name, run_dir, best, summary, rows, _tensorboard_command(run_dir))


def _tensorboard_command(run_dir: pathlib.Path) -> str:
    return f"tensorboard --logdir {shlex.quote(str(run_dir / 'tensorboard'))}"


PRECISIONS = ("auto", "float32", "mixed", "bfloat16")


@dataclasses.dataclass
class _Options:
    run_dir: pathlib.Path
    run_info: dict
    space: Any
    data: Any
    sampler: Any
    resuming: bool
    seed: int
    max_epochs: int
    factor: int
    iterations: int
    name: str
    verbose: bool
    log: Callable[[str], None]
    t_start: float
    role: str
    devices: dict
    strategy: str | None


def _run(o: _Options) -> SearchResult | None:
    from . import results as res
    from .engine.hypermodel import ResNetHyperModel
    from .engine.kt_internals import keras_tuner_debug
    from .engine.tuner import ResNetTuner
    from .runtime import versions
    from .tensorboard_log import write_experiment_config

    run_dir, data, sp, log = o.run_dir, o.data, o.space, o.log
    worker = o.role == "worker"
    state_path = run_dir / "state.json"
    state = json.loads(state_path.read_text()) if o.resuming and state_path.exists() else {"sessions": []}
    if not worker:
        res.write_json(run_dir / "run.json", {**o.run_info, "space_text": sp.text, "created": state.get(
            "created", time.strftime("%Y-%m-%dT%H:%M:%S%z")), "split": data.split, "sizes": data.sizes(),
            "input_shape": list(data.input_shape), "classes": data.class_names})
    state.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    tuner_kwargs = {}
    replicas = 1
    if o.strategy == "mirrored":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
        replicas = strategy.num_replicas_in_sync
        tuner_kwargs["distribution_strategy"] = strategy
    hypermodel = ResNetHyperModel(sp, data, max_epochs=o.max_epochs, sampler=o.sampler, seed=o.seed,
                                  jit_compile=o.devices["jit"], replicas=replicas)
    previous_wall = sum(s.get("wall_seconds", 0.0) for s in state["sessions"])
    session = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_seconds": 0.0, "role": o.role}
    state["sessions"].append(session)

    def save_session() -> None:  # the chief's (or a standalone search's) wall time so far
        if not worker:
            session["wall_seconds"] = round(time.time() - o.t_start, 3)
            res.write_json(state_path, state)

    limit = float(os.environ.get(CHILD_ENV) or 0)
    baseline: list[float] = []

    def on_trial_done(tuner, trial, record):
        res.save_record(run_dir, record)
        records = res.load_records(run_dir)  # every worker's trials, not only this process's
        res.write_leaderboard(run_dir, records.values())
        save_session()
        _progress(log, tuner, records, record, previous_wall + time.time() - o.t_start)
        if limit:
            from .faults import handover_every_trial
            from .runtime import rss_mb

            rss = rss_mb()
            baseline.append(rss)
            if (rss - baseline[0] > limit or handover_every_trial()) and len(records) < planned:
                log(f"(this trial process grew by {rss - baseline[0]:.0f} MB over {len(baseline)} trials; "
                    "continuing in a fresh one)")
                raise _Recycle()

    keras_tuner_debug(o.verbose)  # keras-tuner prints every failed trial's traceback when DEBUG is on
    quiet = contextlib.nullcontext() if o.verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:  # keras-tuner prints "Reloading Tuner from ..." and search banners
        tuner = ResNetTuner(hypermodel, run_dir, max_epochs=o.max_epochs, factor=o.factor, iterations=o.iterations,
                            seed=o.seed, on_trial_done=on_trial_done, overwrite=False, **tuner_kwargs)
    if not worker and not os.environ.get("TUNING_CONTINUING"):
        tuner.oracle.forget_failures()  # the user ran the command again: an old stop's streak is over
        tuner.oracle.save()
    records = res.load_records(run_dir)
    tuner.records.update(records)
    planned = len(tuner.planned)
    device = (f"{len(o.devices['gpus'])} GPU(s)" if o.devices["gpus"] else "CPU") + \
        f", {o.devices['policy']}" + (", XLA" if o.devices["jit"] else "")
    if worker:
        log(f"worker {os.environ.get('KERASTUNER_TUNER_ID')} on {device}: running trials for {run_dir}")
    elif os.environ.get("TUNING_CONTINUING"):
        pass
    elif o.resuming:
        log(f"resuming {run_dir}: {len(records)} of {planned} trials already done ({device})")
    else:
        log(f"searching space {sp.name!r} on {data.name} ({data.sizes()['train']} train / "
            f"{data.sizes()['validation']} validation images, {data.net_input_shape[0]}x{data.net_input_shape[1]}"
            f"x{data.net_input_shape[2]}, {data.num_classes} classes): Hyperband max_epochs={o.max_epochs} "
            f"factor={o.factor} iterations={o.iterations}, {planned} trials on {device}; results in {run_dir}")
    if replicas > 1 or o.strategy:
        log(f"mirrored over {replicas} replica(s): each trial's sampled batch size is per replica, so the "
            f"global batch is {replicas}x the batch_size in the leaderboard")
    if not worker and not any(tuner.logdir.glob("events.out.tfevents.*")):
        write_experiment_config(tuner.logdir, tuner.oracle.get_space().space, o.sampler.aliases)
    try:
        with quiet:
            tuner.search(verbose=1 if o.verbose else 0)
    except _Recycle:
        save_session()
        raise Recycled() from None
    except KeyboardInterrupt:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the saving short
        elapsed = previous_wall + time.time() - o.t_start
        done = len(res.load_records(run_dir))
        log(f"interrupted after {done} of {planned} trials ({_fmt_time(elapsed)}); finished trials are "
            "saved and the trial in progress resumes from its last completed epoch")
        save_session()
        raise
    if worker:
        return None
    from .faults import crash_point

    crash_point("after-trials")
    records = res.load_records(run_dir)
    best_trials = tuner.oracle.get_best_trials(1)
    if not best_trials or best_trials[0].status != "COMPLETED" or best_trials[0].score is None:
        raise SystematicFailure(f"no trial completed: all {len(records)} failed (their reasons are in "
                                f"{run_dir / 'leaderboard.md'})")
    best = _best(tuner, best_trials[0], records, data, run_dir, log)
    save_session()
    fit_seconds = sum(r.get("fit_seconds", 0.0) for r in records.values()) + best.get("test_eval_seconds", 0.0)
    wall = previous_wall + session["wall_seconds"]
    summary = {
        "name": o.name, "space": sp.name, "dataset": data.name, "seed": o.seed,
        "trials": len(records), "planned_trials": planned,
        "completed_trials": sum(r.get("status") == "COMPLETED" for r in records.values()),
        "rejected_draws": tuner.oracle.rejected,
        "wall_seconds": round(wall, 1), "fit_seconds": round(fit_seconds, 1),
        "fit_share": round(fit_seconds / wall, 3) if wall else None,
        "best_trial": best["trial_id"], "best_val_accuracy": best["val_accuracy"],
        "best_test_accuracy": best["test_accuracy"],
        "hyperband": {"max_epochs": o.max_epochs, "factor": o.factor, "iterations": o.iterations},
        "devices": o.devices, "replicas": replicas,
        "sizes": data.sizes(), "input_shape": list(data.input_shape), "versions": versions(),
    }
    res.write_summary(run_dir, summary)
    res.write_leaderboard(run_dir, records.values())
    try:
        from .report import write_report

        write_report(run_dir)
    except Exception as e:  # the search's results stand without the plots
        log(f"warning: the report could not be written ({type(e).__name__}: {e}); "
            f"try python -m tuning.report {run_dir}")
    tb_cmd = _tensorboard_command(run_dir)
    log(f"best: trial {best['trial_id']} val_accuracy {best['val_accuracy']:.4f} test_accuracy "
        f"{best['test_accuracy']:.4f} ({best['params']:,} parameters); {len(records)} trials in "
        f"{_fmt_time(wall)} ({100 * summary['fit_share']:.0f}% of it training)")
    log(f"results: {run_dir}/leaderboard.md, best.json, summary.json, report/report.md")
    log(f"view the trials: {tb_cmd}")
    _, rows = res.leaderboard_rows(records.values())
    return SearchResult(o.name, run_dir, best, summary, rows, tb_cmd)


def _best(tuner, trial, records, data, run_dir: pathlib.Path, log) -> dict[str, Any]:
    """best.json's content; the test split is evaluated once per best trial and then reused.

    If the best trial's checkpoint is missing (deleted by hand, or by a version of this package
    that could delete it), its configuration is trained again from scratch for its epochs to
    recreate it, and best.json says so.
    """
    from . import results as res

    old = {}
    if (run_dir / "best.json").exists():
        with contextlib.suppress(OSError, json.JSONDecodeError):
            old = json.loads((run_dir / "best.json").read_text())
    rec = records.get(trial.trial_id, {})
    checkpoint = pathlib.Path(tuner._get_checkpoint_fname(trial.trial_id))
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
                     "val_accuracy": tuner.recreate_checkpoint(trial)}
    model = tuner.load_model(trial)  # the trial's own best-epoch checkpoint
    _, cfg, _ = tuner.hypermodel.sampler.resolve(values)
    test = data.pipeline("test", 256)
    loss, acc = model.evaluate(test, verbose=0)
    best = {
        "trial_id": trial.trial_id, "run": rec.get("run"), "val_accuracy": trial.score,
        "test_accuracy": float(acc), "test_loss": float(loss), "epochs": rec.get("epochs"),
        "params": rec.get("params"), "flops": rec.get("flops"),
        "hyperparameters": rec.get("hyperparameters") or tuner.hypermodel.sampler.describe(values),
        "spec": rec.get("spec") or tuner.hypermodel.sampler.spec(values).to_dict(),
        "train_config": dataclasses.asdict(cfg),
        "checkpoint": str(checkpoint.relative_to(run_dir)),
        "test_eval_seconds": round(time.perf_counter() - t0, 3),
    }
    if recreated:
        best["recreated"] = recreated  # the weights evaluated (and exported) are the retrained ones
    res.write_best(run_dir, best)
    return best


def _progress(log, tuner, records, record, elapsed: float) -> None:
    planned = tuner.planned
    done = len(records)
    # Work = epochs trained + one epoch's worth of per-trial overhead.
    work_done = sum(r.get("epochs", 1) - r.get("initial_epoch", 0) + 1 for r in records.values())
    work_total = sum(e - s + 1 for _, _, e, s in planned)
    remaining = elapsed / max(1, work_done) * max(0, work_total - work_done)
    scores = [r["val_accuracy"] for r in records.values() if r.get("val_accuracy") is not None]
    best = f"{max(scores):.4f}" if scores else "-"
    if record.get("status") == "COMPLETED":
        what = f"val_accuracy {record['val_accuracy']:.4f}"
    else:
        what = f"{record.get('status', '?').lower()}: {record.get('error', '')[:120]}"
    log(f"trial {record['trial_id']} (bracket {record.get('bracket')}, round {record.get('round')}, "
        f"{record.get('epochs')} epochs) {what} | best {best} | {done}/{len(planned)} trials | "
        f"{_fmt_time(elapsed)} elapsed, ~{_fmt_time(remaining)} left")


@contextlib.contextmanager
def _owned_run(run_dir: pathlib.Path, overwrite: bool):
    """Hold the run folder's lock; with --overwrite, empty the folder first."""
    from .lock import run_lock

    with run_lock(run_dir) as fd:
        if overwrite:
            _clear_run(run_dir)
        yield fd


def _clear_run(run_dir: pathlib.Path) -> None:
    """--overwrite: delete the old run's files (the lock we hold stays)."""
    from .lock import LOCK_NAME

    for child in run_dir.iterdir():
        if child.name == LOCK_NAME:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _check_existing_run(run_dir: pathlib.Path, run_info: dict, overwrite: bool) -> bool:
    """True to resume; raise UsageError if the folder holds a different run (unless overwriting)."""
    if overwrite or not run_dir.exists():
        return False
    meta = run_dir / "run.json"
    if not meta.exists():
        from .lock import LOCK_NAME

        if any(p.name not in (LOCK_NAME, "error.log") for p in run_dir.iterdir()):
            raise UsageError(f"{run_dir} exists but is not a search run; choose another --name or --results-dir, "
                             "or pass --overwrite to replace it")
        return False
    try:
        old = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError):
        raise UsageError(f"{meta} is unreadable; pass --overwrite to start this run afresh") from None
    diffs = [f"{k} {old.get(k)!r} (now {run_info[k]!r})" for k in RUN_KEYS if old.get(k) != run_info[k]]
    if diffs:
        raise UsageError(f"{run_dir} holds a run made with {', '.join(diffs)}; resume it with the same options, "
                         "choose another --name, or pass --overwrite to replace it")
    return True


def _check_writable(results_dir: pathlib.Path) -> None:
    probe = results_dir
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to {results_dir}: {probe} is not a writable folder; "
                         "choose another --results-dir")


# ----- command line ---------------------------------------------------------------------------
def _image_size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; give N or HxW, e.g. 32 or 64x48") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; give N or HxW, e.g. 32 or 64x48")
    return parts[0], parts[1]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, as for every other bad input
        self.exit(2, f"error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m tuning.search",
        description="Hyperband search over ResNet architectures and their training settings. Every trial is "
                    "logged to TensorBoard; results go to <results-dir>/<name>/. Without --overwrite an "
                    "existing run of the same name resumes where it stopped.",
    )
    p.add_argument("--space", default="small", help="named space (see --list-spaces) or path of a .toml space "
                   "file (default: small)")
    p.add_argument("--list-spaces", action="store_true", help="list the named spaces and exit")
    p.add_argument("--dataset", help="digits, cifar10, cifar100, mnist, fashion_mnist, or a folder of class "
                   "subfolders of images (default: the space's)")
    p.add_argument("--image-size", type=_image_size, metavar="N|HxW",
                   help="size the network sees; images are resized inside the model (default: the space's, or "
                        "the dataset's own)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="leave out unreadable images of a dataset folder instead of stopping")
    p.add_argument("--max-epochs", type=int, help="Hyperband: most epochs any configuration trains "
                   "(default: the space's)")
    p.add_argument("--factor", type=int, help="Hyperband: keep 1/factor of the configurations each round "
                   "(>= 2; default: the space's)")
    p.add_argument("--iterations", type=int, help="Hyperband: how many times to run all brackets "
                   "(default: the space's)")
    p.add_argument("--results-dir", default="results", help="parent folder of the run (default: results)")
    p.add_argument("--name", help="run folder name (default: <space>-<dataset>)")
    p.add_argument("--seed", type=int, default=0, help="seeds the data split, the sequence of trials and the "
                   "initial weights (default: 0)")
    p.add_argument("--overwrite", action="store_true", help="delete an existing run of this name and start "
                   "afresh (default: resume it)")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up log and keras-tuner's output")
    g = p.add_argument_group("devices and scale-out")
    g.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto (default): mixed float16 on a GPU, float32 on a CPU; mixed: mixed_float16 on a GPU, "
                        "mixed_bfloat16 on a CPU; bfloat16; float32. The output layer stays float32")
    g.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                   help="XLA-compile the training step (default: on a GPU, off on a CPU)")
    g.add_argument("--gpus", metavar="0,1", help="GPU indices to use (default: all visible)")
    g.add_argument("--strategy", choices=("mirrored",), help="mirrored: train every trial on all visible GPUs "
                   "(tf.distribute.MirroredStrategy); batch sizes are then per replica")
    g.add_argument("--recycle-mb", type=int, default=150, metavar="MB",
                   help="TensorFlow keeps ~10 MB for every model a process trains: trials run in a child process "
                        "that hands over to a fresh one when it has grown by this much (default 150; 0: run "
                        "every trial in this process)")
    p.add_argument("--outcome", help=argparse.SUPPRESS)  # a trial process: where to say how it ended
    g.add_argument("--workers", type=int, metavar="N", help="run keras-tuner's chief and N workers on this host "
                   "(one GPU each where there are GPUs) and gather their output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from search_spaces import SpaceError, list_spaces

    if args.list_spaces:
        try:
            rows = list_spaces()
        except SpaceError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        width = max(len(n) for n, _ in rows)
        for n, desc in rows:
            print(f"{n.ljust(width)}  {desc}")
        return 0
    from .data import DataError

    if args.workers is not None:
        if args.workers < 1:
            print(f"error: --workers {args.workers} is invalid: give at least 1 (or leave it out)", file=sys.stderr)
            return 2
        if "KERASTUNER_TUNER_ID" in os.environ:
            print("error: --workers starts its own chief and workers; unset KERASTUNER_TUNER_ID", file=sys.stderr)
            return 2
        from .distributed import launch, visible_gpus

        if args.gpus:
            from .runtime import require_gpus

            try:
                require_gpus(args.gpus, visible_gpus(None))
            except UsageError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
        try:
            return launch(sys.argv[1:] if argv is None else list(argv), args.workers, args.gpus,
                          out=lambda line: print(line, flush=True), recycle_mb=args.recycle_mb)
        except KeyboardInterrupt:
            return 130
    def say(kind: str, message: str, code: int, details: str = "") -> int:
        if args.outcome:  # a trial process: tell the supervisor how it ended
            write_outcome(args.outcome, kind, message, details)
        if details and args.verbose and not args.outcome:
            print(details.rstrip(), file=sys.stderr)
        if message:
            print(f"error: {message}", file=sys.stderr)
        return code

    try:
        search(args.space, args.dataset, max_epochs=args.max_epochs, factor=args.factor,
               iterations=args.iterations, results_dir=args.results_dir, name=args.name, seed=args.seed,
               overwrite=args.overwrite, verbose=args.verbose, image_size=args.image_size,
               skip_bad_images=args.skip_bad_images, precision=args.precision, jit=args.jit, gpus=args.gpus,
               strategy=args.strategy, recycle_mb=args.recycle_mb)
    except Recycled:
        return RECYCLE_EXIT
    except DataError as e:
        return say("data", str(e), 2)
    except (UsageError, SpaceError) as e:
        return say("usage", str(e), 2)
    except SystematicFailure as e:
        if args.outcome:
            return say("systematic", str(e), 1)
        return say("systematic", f"search stopped: {e}. Fix the cause, then run the same command again: the "
                   "search goes on, and these failures no longer count", 1)
    except SearchError as e:
        return say("error", str(e), 1, e.details)
    except Exception as e:  # outside the search's own handling (say, in the Python it runs on)
        import traceback

        return say("error", f"unexpected {type(e).__name__}: {e}; run the same command again to resume, with "
                   "--verbose to see the traceback", 1, traceback.format_exc())
    except KeyboardInterrupt:
        if args.outcome:
            return say("interrupted", "", 130)
        cmd = " ".join(shlex.quote(a) for a in ["python", "-m", "tuning.search", *(argv or sys.argv[1:])]
                       if a != "--overwrite")
        print(f"resume with: {cmd}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
