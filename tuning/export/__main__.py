"""``python -m tuning.export results/<name>``: the best model (or ``--trial``) as files to ship."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence

from ..command import Parser, run_command
from .formats import FORMATS
from .writer import export


def build_parser() -> Parser:
    p = Parser(prog="python -m tuning.export", description="Export a searched model (default: the best trial) "
                "as model.keras + a TensorFlow SavedModel, with model_card.json and MODEL_CARD.md.")
    p.add_argument("run_dir", help="the search's results folder, results/<name>")
    p.add_argument("--trial", help="trial id to export instead of the best (see leaderboard.md)")
    p.add_argument("--max-params", type=int, metavar="N", help="export the best trial (by the run's objective) with "
                   "at most N trainable parameters; one whose checkpoint was pruned is trained again from its "
                   "recorded hyperparameters")
    p.add_argument("--max-flops", type=int, metavar="N", help="the same, with at most N multiply-adds per image")
    p.add_argument("--output", help="export folder (default: <run_dir>/export)")
    p.add_argument("--format", dest="formats", action="append", choices=FORMATS,
                   help="keras, savedmodel or tflite; repeat for several (default: keras and savedmodel; keras "
                        "alone where TensorFlow is not installed)")
    p.add_argument("--retrain", action="store_true", help="first train the configuration from scratch on train + "
                   "validation for the full budget; the card gives test accuracy before and after")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    p.add_argument("--verbose", action="store_true", help="show the Keras backend's log")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = " ".join(shlex.quote(a) for a in ["python", "-m", "tuning.export",
                                                 *(sys.argv[1:] if argv is None else argv)])

    def run() -> None:
        export(args.run_dir, trial=args.trial, output=args.output, formats=args.formats, retrain=args.retrain,
               overwrite=args.overwrite, verbose=args.verbose, command=command, max_params=args.max_params,
               max_flops=args.max_flops, log=lambda s: print(s, flush=True))

    return run_command(run, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
