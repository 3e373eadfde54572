"""The command line of ``python -m tuning.search``: options -> `SearchConfig` -> `run_search`,
or the chief/worker launcher with ``--workers``. Every default comes from `SearchConfig`."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from collections.abc import Sequence

from search_spaces import list_spaces

from ..command import Parser, run_command
from ..config import (
    ALGORITHMS,
    CLASS_WEIGHTS,
    OBJECTIVES,
    PRECISIONS,
    STRATEGIES,
    SearchConfig,
    default,
    parse_duration,
)
from ..observe.progress import rendering, top_level_mode
from ..runtime import BACKENDS
from .runner import run_search
from .workers import keras_tuner_role, launch_from_cli


def _size_argument(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; give N or HxW, e.g. 32 or 64x48") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; give N or HxW, e.g. 32 or 64x48")
    return parts[0], parts[1]


def _duration_argument(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _names_argument(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m tuning.search",
        description="Hyperband search over ResNet architectures and their training settings. Every trial is "
                    "logged to TensorBoard; results go to <results-dir>/<name>/. Without --overwrite an "
                    "existing run of the same name resumes where it stopped.",
    )
    p.add_argument("--space", default=default("space"), help="named space (see --list-spaces) or path of a .toml "
                   f"space file (default: {default('space')})")
    p.add_argument("--list-spaces", action="store_true", help="list the named spaces and exit")
    p.add_argument("--dataset", help="digits, cifar10, cifar100, mnist, fashion_mnist, or a folder of class "
                   "subfolders of images (default: the space's)")
    p.add_argument("--image-size", type=_size_argument, metavar="N|HxW",
                   help="size the network sees: a folder's images are resized to it once, as they are decoded; a "
                        "built-in dataset's inside the model (default: the space's, or the dataset's own)")
    p.add_argument("--skip-bad-images", action="store_true",
                   help="leave out unreadable images of a dataset folder instead of stopping at the first one "
                        "(they are listed in <run>/data/unreadable_images.txt)")
    p.add_argument("--image-cache", action=argparse.BooleanOptionalAction, default=default("image_cache"),
                   help="a dataset folder: keep each image, once decoded and resized, in <run>/data/ so that later "
                        "epochs, trials and the export read it instead of decoding it again (default: on; the size "
                        "is shown at the start)")
    p.add_argument("--algorithm", choices=ALGORITHMS, default=default("algorithm"),
                   help="hyperband: random configurations in Hyperband's brackets; bohb: the same brackets, new "
                        "configurations drawn from a TPE model of the results so far (a third still at random); "
                        "asha: asynchronous successive halving, no worker waits for a round (default: "
                        f"{default('algorithm')})")
    p.add_argument("--objective", choices=list(OBJECTIVES), help="what the search selects on (higher is better "
                   "but for val_loss); the class-averaged ones are computed exactly on the whole validation split: "
                   "val_balanced_accuracy (mean recall per class) and val_macro_f1 suit imbalanced classes "
                   "(default: the space's, else val_accuracy)")
    p.add_argument("--class-weight", choices=CLASS_WEIGHTS, help="balanced: weight the training loss by inverse "
                   "class frequency of the training split (default: every image counts the same)")
    p.add_argument("--max-epochs", type=int, help="most epochs any configuration trains (default: the space's)")
    p.add_argument("--factor", type=int, help="keep 1/factor of the configurations each round or rung "
                   "(>= 2; default: the space's)")
    p.add_argument("--iterations", type=int, help="the budget: Hyperband and BOHB run all brackets this many "
                   "times; ASHA trains as many epochs in all as they would (default: the space's; with "
                   "--time-budget, none: the plan's, then more while trials fit, and a value caps it). A larger "
                   "value on a finished run "
                   "extends it; a smaller one changes nothing")
    p.add_argument("--results-dir", default=default("results_dir"), help="parent folder of the run "
                   f"(default: {default('results_dir')})")
    p.add_argument("--name", help="run folder name (default: <space>-<dataset>)")
    p.add_argument("--seed", type=int, default=default("seed"), help="seeds the data split, the sequence of "
                   f"trials and the initial weights (default: {default('seed')})")
    p.add_argument("--overwrite", action="store_true", help="delete an existing run of this name and start "
                   "afresh (default: resume it)")
    p.add_argument("--verbose", action="store_true", help="show the backend's start-up log and keras-tuner's "
                   "output")
    p.add_argument("--quiet", action="store_true", help="print only the line of each finished trial, warnings and "
                   "the result: no progress inside trials, no start-up banner or notes")
    _start_options(p.add_argument_group("time and starting points"))
    _device_options(p.add_argument_group("devices and scale-out"))
    return p


def _start_options(g) -> None:
    g.add_argument("--time-budget", type=_duration_argument, metavar="DURATION",
                   help="the run's wall time, e.g. 90s, 45m, 2h or 1h30m: a short calibration plans the iterations "
                        "that fit (a smaller max_epochs if not even one does), then the search goes on while each "
                        "next trial is predicted to end in time. --iterations then caps it. A larger value on a "
                        "finished run extends it")
    g.add_argument("--warm-start", metavar="RUN", help="an earlier run's folder: its best configurations (as many "
                   "as the first bracket's first round holds) are the first ones this search evaluates, where they "
                   "fit its space; with --algorithm bohb its results also feed the model when the dataset, image size "
                   "and objective match")
    g.add_argument("--try", dest="tries", type=_names_argument, default=default("tries"), metavar="NAMES",
                   help="zoo architectures to evaluate first, e.g. resnet20,resnet56 (python -m resnet lists them); "
                        "ones that do not fit the space or the input are named and skipped. A space file's [[try]] "
                        "tables add to them")


def _device_options(g) -> None:
    g.add_argument("--backend", choices=BACKENDS, help="the Keras backend every trial runs on (default: Keras' "
                   "configured one: KERAS_BACKEND, else ~/.keras/keras.json, else tensorflow). A run resumes only "
                   "on the backend it started with")
    g.add_argument("--precision", choices=PRECISIONS, default=default("precision"),
                   help="auto (default): mixed float16 on a GPU, float32 on a CPU; mixed: mixed_float16 on a GPU, "
                        "mixed_bfloat16 on a CPU; bfloat16; float32. The output layer stays float32")
    g.add_argument("--jit", action=argparse.BooleanOptionalAction, default=default("jit"),
                   help="XLA-compile the training step (default: always on JAX; on TensorFlow on a GPU, not on a "
                        "CPU)")
    g.add_argument("--gpus", metavar="0,1", help="GPU indices to use (default: all visible)")
    g.add_argument("--strategy", choices=STRATEGIES, help="data-parallel: train every trial on all visible GPUs, "
                   "on either backend (Keras' DataParallel on JAX, tf.distribute.MirroredStrategy on TensorFlow); "
                   "mirrored: MirroredStrategy (TensorFlow only). Batch sizes are then per replica")
    g.add_argument("--recycle-mb", type=int, default=default("recycle_mb"), metavar="MB",
                   help="the backend keeps 10-30 MB for every model a process trains: trials run in a child process "
                        "that hands over to a fresh one when it has grown by this much; the next one starts "
                        "loading half-way there, when memory allows (default "
                        f"{default('recycle_mb')}; 0: run every trial in this process)")
    g.add_argument("--workers", type=int, metavar="N", help="run keras-tuner's chief and N workers on this host "
                   "(one GPU each where there are GPUs) and gather their output")


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    """The `SearchConfig` of parsed command-line options."""
    return SearchConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(SearchConfig)})


def _list_spaces() -> None:
    rows = list_spaces()  # a SpaceError (bad input) ends the command in one line
    width = max(len(n) for n, _ in rows)
    for n, desc in rows:
        print(f"{n.ljust(width)}  {desc}")


def main(argv: Sequence[str] | None = None) -> int:
    started = time.time()
    args = build_parser().parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)

    def search() -> int | None:
        if args.list_spaces:
            return _list_spaces()
        config = config_from_args(args)
        if args.workers is not None:
            # Several trials at once: their workers print a line per epoch (plain), never a status line.
            with rendering(lambda line: print(line, flush=True), top_level_mode(config.quiet, terminal=False)) as out:
                return launch_from_cli(config, args.workers, out=out, started=started)
        run_search(config, role=keras_tuner_role(), started=started)
        return None

    def resume_with() -> None:
        cmd = " ".join(shlex.quote(a) for a in ["python", "-m", "tuning.search", *argv] if a != "--overwrite")
        print(f"resume with: {cmd}", file=sys.stderr)

    return run_command(search, verbose=args.verbose, interrupted=resume_with)
