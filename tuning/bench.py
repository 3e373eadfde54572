"""`python -m tuning.bench <what>`: the benchmarks whose figures go in docs/BENCHMARKS.md.

- ``memory``: resident memory of the search process over many trials (a long digits search);
- ``disk``: size of a finished run folder, split by part;
- ``overhead``: where searches' wall time goes (training vs. building, checkpoints, logging), per
  trial and per run, and the median over several runs;
- ``throughput``: training images/second of ``resnet.zoo_spec("resnet50")`` against
  ``keras.applications.ResNet50(weights=None)``, side by side in one process;
- ``epoch``: seconds per epoch of ``cifar_resnet56`` at batch 128, with and without mixed
  precision and XLA.

Each prints a table and writes JSON with the machine it ran on (``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from .errors import UsageError
from .runtime import dtype_policy, rss_mb
from .store import TrialRecord, open_run


def tree_memory_mb(root: int | None = None, pss: bool = False) -> tuple[float, float]:
    """(RSS, PSS) of a process and all its descendants; the PSS only with `pss` (0 otherwise).
    Summed RSS counts a page that processes share (a fork's pages not yet written, libraries)
    once per process; PSS splits it between them, so its sum is what they hold."""
    root = root or os.getpid()
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    rss = proportional = 0.0
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            rss += rss_mb(pid)
            proportional += pss_mb(pid) if pss else 0.0
        except OSError:
            pass
        todo += children.get(pid, [])
    return rss, proportional


def pss_mb(pid: int) -> float:
    """A process's proportional set size (Linux), in MB."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    raise OSError(f"no Pss for process {pid}")


def accelerators() -> list[str]:
    """The GPUs the current Keras backend sees (empty on a CPU)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform == "gpu"]
    if keras.backend.backend() == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def machine() -> dict[str, Any]:
    import keras

    from .runtime import versions

    info = versions()
    info["keras_backend"] = keras.backend.backend()
    if info["keras_backend"] in ("jax", "torch"):
        from importlib import metadata

        info[info["keras_backend"]] = metadata.version(info["keras_backend"])
    info["devices"] = accelerators() or ["CPU"]
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        info["cpu"] = platform.processor()
    return info


def bench_memory(trials: int, results_dir: pathlib.Path, recycle_mb: int) -> dict[str, Any]:
    """RSS of the search (this process and its trial processes) after each finished trial of a
    long digits search (small space, 3-epoch budget)."""
    from .search import run_search

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
    import statistics

    runs = [bench_overhead(pathlib.Path(d)) for d in run_dirs]
    out: dict[str, Any] = {"runs": runs}
    if len(runs) > 1:
        out["median"] = {k: round(statistics.median(r[k] for r in runs), 3) for k in OVERHEAD_TOTALS}
        print(f"median over {len(runs)} runs:")
        for k, v in out["median"].items():
            print(f"  {k:<42} {v}")
    return out


class _Batches:
    """The same few batches over and over, so `steps_per_epoch` steps really run.

    (With NumPy arrays Keras stops an epoch when the arrays run out, which would time fewer
    steps than asked for.) A plain generator works on every backend.
    """

    def __init__(self, x, y, batch: int):
        self.x, self.y, self.batch = x, y, batch

    def __call__(self):
        n = len(self.x) // self.batch
        i = 0
        while True:
            sl = slice((i % n) * self.batch, (i % n + 1) * self.batch)
            yield self.x[sl], self.y[sl]
            i += 1


def _prepare(model, batches: _Batches, jit: bool):
    """Compile and warm up (the first steps trace and compile the training step)."""
    import keras

    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy",
                  jit_compile=jit)
    model.fit(batches(), epochs=1, steps_per_epoch=3, shuffle=False, verbose=0)


def _timed_fit(model, batches: _Batches, steps: int) -> float:
    """Images per second of `steps` training steps of an already compiled and warmed model."""
    import keras

    class Count(keras.callbacks.Callback):
        n = 0

        def on_train_batch_end(self, batch, logs=None):
            Count.n += 1

    t0 = time.perf_counter()
    # A batch-end callback makes Keras read every step's loss back before starting the next step
    # (as the search's own TerminateOnNaN does), so the time covers every step, each synchronised.
    model.fit(batches(), epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0, callbacks=[Count()])
    seconds = time.perf_counter() - t0
    if Count.n != steps:
        raise RuntimeError(f"timed {Count.n} steps instead of {steps}")
    return steps * batches.batch / seconds


def bench_throughput(batch: int, steps: int, size: int, jit: bool, repeats: int, precision: str = "float32",
                     with_v1: bool = False) -> dict[str, Any]:
    """Training throughput of our ResNet-50 against keras.applications.ResNet50, same everything.

    Every model is built, compiled and warmed up first; then the timed runs take turns
    (ours, theirs, ours, ...), so drift in the machine's speed hits both alike.
    """
    import dataclasses
    import statistics

    import keras
    import numpy as np

    from resnet import build_resnet, zoo_spec

    policy = dtype_policy(precision, bool(accelerators()))
    keras.mixed_precision.set_global_policy(policy)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * 4, size, size, 3)).astype("float32")
    y = rng.integers(0, 1000, size=(batch * 4,))
    batches = _Batches(x, y, batch)
    builders = {
        "ours": lambda: build_resnet(zoo_spec("resnet50"), (size, size, 3), 1000),
        "keras.applications": lambda: keras.applications.ResNet50(weights=None, input_shape=(size, size, 3),
                                                                 classes=1000),
    }
    if with_v1:  # the same layout as keras.applications (stride on the first 1x1), to compare like with like
        v1 = dataclasses.replace(zoo_spec("resnet50"), bottleneck_stride="1x1")
        builders["ours, stride on the 1x1"] = lambda: build_resnet(v1, (size, size, 3), 1000)
    models = {}
    for name, build in builders.items():
        t0 = time.perf_counter()
        models[name] = build()
        _prepare(models[name], batches, jit)
        print(f"  {name:<24} built, compiled and warmed up in {time.perf_counter() - t0:.1f} s", flush=True)
    results: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            results[name].append(_timed_fit(model, batches, steps))
            print(f"  {name:<24} {results[name][-1]:8.1f} images/s", flush=True)
    keras.mixed_precision.set_global_policy("float32")
    med = {name: statistics.median(r) for name, r in results.items()}
    ours, theirs = med["ours"], med["keras.applications"]
    out = {"batch": batch, "image_size": size, "steps": steps, "jit_compile": jit, "policy": policy,
           "repeats": repeats, "statistic": "median of the repeats",
           "ours_images_per_second": round(ours, 2), "keras_applications_images_per_second": round(theirs, 2),
           "ratio": round(ours / theirs, 3), "medians": {k: round(v, 2) for k, v in med.items()}, "all": results}
    print(f"ResNet-50 training, {policy}, jit={jit}, batch {batch} at {size}x{size} (median of {repeats}): "
          f"ours {ours:.1f} img/s, keras.applications {theirs:.1f} img/s, ratio {ours / theirs:.3f}")
    if with_v1:
        print(f"  ours with the stride on the 1x1: {med['ours, stride on the 1x1']:.1f} img/s, ratio "
              f"{med['ours, stride on the 1x1'] / theirs:.3f}")
    return out


def bench_epoch(batch: int, steps: int | None, precisions: Sequence[str] = ("float32", "mixed"),
                jits: Sequence[bool] = (False, True)) -> dict[str, Any]:
    """Seconds per CIFAR-10-sized epoch (45,000 images) of cifar_resnet56, mixed precision x XLA."""
    import keras
    import numpy as np

    from resnet import build_resnet, zoo_spec

    rng = np.random.default_rng(0)
    n = 45_000
    steps_per_epoch = -(-n // batch)
    steps = steps or steps_per_epoch
    x = rng.integers(0, 255, size=(batch * 8, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(batch * 8,))
    batches = _Batches(x, y, batch)
    out = {"batch": batch, "images_per_epoch": n, "measured_steps": steps, "runs": []}
    for precision in precisions:
        for jit in jits:
            keras.backend.clear_session()
            policy = dtype_policy(precision, bool(accelerators()))
            keras.mixed_precision.set_global_policy(policy)
            model = build_resnet(zoo_spec("cifar_resnet56"), (32, 32, 3), 10)
            t0 = time.perf_counter()
            _prepare(model, batches, jit)
            warm = time.perf_counter() - t0
            rate = _timed_fit(model, batches, steps)
            seconds = n / rate
            out["runs"].append({"policy": policy, "jit_compile": jit, "images_per_second": round(rate, 1),
                                "seconds_per_epoch": round(seconds, 2), "compile_and_warm_up_seconds": round(warm, 1)})
            print(f"  {policy:<15} jit={str(jit):<5} {rate:9.1f} img/s  {seconds:8.1f} s/epoch  "
                  f"(compile and 3 warm-up steps {warm:.1f} s)", flush=True)
    keras.mixed_precision.set_global_policy("float32")
    return out


def build_parser() -> argparse.ArgumentParser:
    from .config import ALGORITHMS
    from .simulate import CANDIDATES, PERFECT

    p = argparse.ArgumentParser(prog="python -m tuning.bench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    m = sub.add_parser("memory", help="RSS of the search process over many trials")
    m.add_argument("--trials", type=int, default=50)
    m.add_argument("--recycle-mb", type=int, default=150, help="as for the search (0: one process)")
    m.add_argument("--results-dir", default=None, help="where the benchmark search writes (default: a temp dir)")
    d = sub.add_parser("disk", help="size of a finished run folder")
    d.add_argument("run_dir")
    o = sub.add_parser("overhead", help="where finished searches' wall time went (per trial, per run, median)")
    o.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    t = sub.add_parser("throughput", help="our ResNet-50 vs keras.applications.ResNet50")
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--steps", type=int, default=10)
    t.add_argument("--image-size", type=int, default=224)
    t.add_argument("--jit", action="store_true")
    t.add_argument("--repeats", type=int, default=2)
    t.add_argument("--precision", choices=["float32", "mixed", "bfloat16"], default="float32",
                   help="mixed: mixed_float16 on a GPU, mixed_bfloat16 on a CPU")
    t.add_argument("--with-v1", action="store_true",
                   help="also time ours with the stride on the first 1x1 (keras.applications' layout)")
    e = sub.add_parser("epoch", help="cifar_resnet56 seconds per epoch, mixed precision and XLA on/off")
    e.add_argument("--batch", type=int, default=128)
    e.add_argument("--steps", type=int, default=None, help="steps to time (default: a whole epoch)")
    e.add_argument("--precision", choices=["float32", "mixed", "bfloat16"], action="append",
                   help="repeatable (default: float32 and mixed)")
    e.add_argument("--jit", choices=["off", "on"], action="append", help="repeatable (default: off and on)")
    a = sub.add_parser("algorithms", help="Hyperband vs BOHB vs ASHA replayed on a surrogate of recorded curves")
    a.add_argument("--seeds", type=int, default=50)
    a.add_argument("--workers", type=int, nargs="+", default=[1, 4], help="simulated workers (default: 1 4)")
    a.add_argument("--iterations", type=int, default=3, help="the budget, as for the search (default: 3)")
    a.add_argument("--space", default="small", help="the space the curves were recorded on (default: small)")
    a.add_argument("--curves", default=None, help="recorded curves (default: docs/figures/curves-small-digits.jsonl)")
    a.add_argument("--jobs", type=int, default=1, help="processes (default: 1)")
    a.add_argument("--plot", help="write the anytime plot (PNG) here")
    a.add_argument("--algorithms", nargs="+", choices=[*ALGORITHMS, PERFECT], default=list(ALGORITHMS),
                   help=f"default: {' '.join(ALGORITHMS)}; {PERFECT}: BOHB whose model is the surrogate itself (the "
                        "best of --candidates random configurations, as the surrogate predicts them), a bound on what "
                        "any model could gain within BOHB's brackets; hyperband is always run (the reference)")
    a.add_argument("--candidates", type=int, default=CANDIDATES,
                   help=f"configurations {PERFECT}'s model chooses from (default: {CANDIDATES}, the BOHB paper's "
                        "num_samples; fewer: a weaker model)")
    for sp in (m, d, o, t, e, a):
        sp.add_argument("--out", help="write the figures as JSON here")
    return p


def _algorithms(args) -> int:
    from .bench_algorithms import CURVES, LABELS, plot, run_benchmark, strict_json, table
    from .simulate import PERFECT

    if args.seeds < 1 or args.jobs < 1 or min(args.workers) < 1 or args.candidates < 1:
        print("error: --seeds, --jobs, --workers and --candidates must be at least 1", file=sys.stderr)
        return 2
    algorithms = list(dict.fromkeys(["hyperband", *args.algorithms]))
    result = run_benchmark(seeds=args.seeds, workers=args.workers, space=args.space, curves=args.curves or CURVES,
                           iterations=args.iterations, jobs=args.jobs, algorithms=algorithms,
                           candidates=args.candidates)
    print(table(result))
    err = result["surrogate"]
    print(f"surrogate, {err['folds']}-fold cross-validated over {err['configurations']} recorded configurations: "
          f"best accuracy within {err['best_accuracy_mae']:.3f} (mean absolute error), Spearman "
          f"{err['best_accuracy_spearman']:.2f}; seconds per epoch within {err['seconds_per_epoch_mae']:.3f}")
    for w, per in result["summary"].items():
        if "bohb" in per:
            print(f"{w} worker(s): BOHB needs {per['bohb']['ratio_of_medians']:.2f}x Hyperband's median time to reach "
                  "Hyperband's final best (goal: at most 0.50)")
        if PERFECT in per:
            print(f"{w} worker(s): BOHB with a perfect model (the best of {args.candidates}) would need "
                  f"{per[PERFECT]['ratio_of_medians']:.2f}x")
        for name in ("bohb", PERFECT):
            if per.get(name, {}).get("model_potential") is not None:
                print(f"{w} worker(s): {LABELS[name]}: the new configurations' best accuracy at the full budget, as "
                      f"the surrogate predicts it (medians): {per[name]['model_potential']:.4f} drawn from the model, "
                      f"{per[name]['random_potential']:.4f} at random; its first model-drawn trial started at "
                      f"{per[name]['model_from']:.0f} s")
        if "asha" in per:
            print(f"{w} worker(s): workers busy {100 * per['asha']['busy_share']:.1f}% of the time under ASHA, "
                  f"{100 * per.get('hyperband', {}).get('busy_share', math.nan):.1f}% under Hyperband")
    if args.plot:
        plot(result, pathlib.Path(args.plot))
    if args.out:
        figures = {"benchmark": "algorithms", "machine": machine(), "date": time.strftime("%Y-%m-%d"), **result}
        pathlib.Path(args.out).write_text(json.dumps(strict_json(figures), allow_nan=False) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.what == "algorithms":
        return _algorithms(args)
    if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        from .runtime import import_tensorflow

        import_tensorflow()
    if args.what == "memory":
        results_dir = pathlib.Path(args.results_dir or tempfile.mkdtemp(prefix="bench-memory-"))
        figures = bench_memory(args.trials, results_dir, args.recycle_mb)
        figures["disk"] = bench_disk(results_dir / "memory")
    elif args.what == "disk":
        figures = bench_disk(pathlib.Path(args.run_dir))
    elif args.what == "overhead":
        try:
            figures = bench_overheads([pathlib.Path(d) for d in args.run_dirs])
        except UsageError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    elif args.what == "throughput":
        figures = bench_throughput(args.batch, args.steps, args.image_size, args.jit, args.repeats,
                                   args.precision, args.with_v1)
    else:
        figures = bench_epoch(args.batch, args.steps, args.precision or ("float32", "mixed"),
                              [j == "on" for j in (args.jit or ("off", "on"))])
    figures = {"benchmark": args.what, "machine": machine(), "date": time.strftime("%Y-%m-%d"), **figures}
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
