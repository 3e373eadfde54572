"""``python -m tuning.report``: a run's report, or the comparison of a folder of runs."""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Sequence

from ..command import Parser, run_command
from ..errors import UsageError
from ..run.opened import finished_runs
from .comparison import write_comparison
from .single import write_report


def build_parser() -> Parser:
    p = Parser(prog="python -m tuning.report", description="Write plots and a summary of a search to "
               "<run_dir>/report/ (report.md, report.html, PNGs); given a folder of runs, compare its finished runs "
               "in comparison.md and comparison.png.")
    p.add_argument("run_dir", help="the search's results folder, results/<name>; or a folder of them (results)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    path = pathlib.Path(build_parser().parse_args(argv).run_dir)

    def report() -> None:
        if path.is_dir() and not (path / "run.json").exists() and any(path.glob("*/summary.json")):
            if write_comparison(path, log=print) is None:
                names = [r.name for r in finished_runs(path)]
                raise UsageError(f"{path} holds {len(names)} finished run(s) ({', '.join(names) or 'none readable'});"
                                 f" a comparison needs at least 2 (for one run's report give results/<name>)")
        else:
            write_report(path, log=print)

    return run_command(report)


if __name__ == "__main__":
    sys.exit(main())
