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

import json
import math
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Sequence

from ..command import Parser, run_command
from ..config import ALGORITHMS
from ..errors import UsageError
from ..runtime import import_tensorflow
from .machine import machine
from .models import bench_epoch, bench_throughput
from .search import bench_disk, bench_memory, bench_overheads
from .simulate import CANDIDATES, CURVE_METRICS, PERFECT


def build_parser() -> Parser:
    p = Parser(prog="python -m tuning.bench", description=__doc__.splitlines()[0])
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
    a.add_argument("--objective", choices=CURVE_METRICS, default="val_accuracy",
                   help="what every algorithm selects on, as a search's --objective; the recorded curves hold "
                        f"{' and '.join(CURVE_METRICS)} (default: val_accuracy)")
    for sp in (m, d, o, t, e, a):
        sp.add_argument("--out", help="write the figures as JSON here")
    return p


def _run_algorithms(args) -> None:
    from .algorithms import CURVES, LABELS, plot, run_benchmark, strict_json, table  # imports keras-tuner

    if args.seeds < 1 or args.jobs < 1 or min(args.workers) < 1 or args.candidates < 1:
        raise UsageError("--seeds, --jobs, --workers and --candidates must be at least 1")
    algorithms = list(dict.fromkeys(["hyperband", *args.algorithms]))
    result = run_benchmark(seeds=args.seeds, workers=args.workers, space=args.space, curves=args.curves or CURVES,
                           iterations=args.iterations, jobs=args.jobs, algorithms=algorithms,
                           candidates=args.candidates, objective=args.objective)
    print(table(result))
    err = result["surrogate"]
    print(f"surrogate, {err['folds']}-fold cross-validated over {err['configurations']} recorded configurations: "
          f"best {args.objective} within {err['best_accuracy_mae']:.3f} (mean absolute error), Spearman "
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
                print(f"{w} worker(s): {LABELS[name]}: the new configurations' best {args.objective} at the full "
                      "budget, as "
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: _run_algorithms(args) if args.what == "algorithms" else _measure(args))


def _measure(args) -> None:
    if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        import_tensorflow()
    if args.what == "memory":
        results_dir = pathlib.Path(args.results_dir or tempfile.mkdtemp(prefix="bench-memory-"))
        figures = bench_memory(args.trials, results_dir, args.recycle_mb)
        figures["disk"] = bench_disk(results_dir / "memory")
    elif args.what == "disk":
        figures = bench_disk(pathlib.Path(args.run_dir))
    elif args.what == "overhead":
        figures = bench_overheads([pathlib.Path(d) for d in args.run_dirs])
    elif args.what == "throughput":
        figures = bench_throughput(args.batch, args.steps, args.image_size, args.jit, args.repeats,
                                   args.precision, args.with_v1)
    else:
        figures = bench_epoch(args.batch, args.steps, args.precision or ("float32", "mixed"),
                              [j == "on" for j in (args.jit or ("off", "on"))])
    figures = {"benchmark": args.what, "machine": machine(), "date": time.strftime("%Y-%m-%d"), **figures}
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
