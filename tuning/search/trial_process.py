"""A child process of a search: ``python -m tuning.search.trial_process RUN_DIR --role ROLE``.

It gets its role and run folder from its arguments (`tuning.processes.protocol`), reads the
search's config from ``RUN_DIR/run.json`` (written by its parent), runs its part of the search
(`tuning.search.session.run_session`) and says how it ended with its exit status and, on an
error, in the ``--outcome`` file (`tuning.processes.protocol.write_outcome`). Exit statuses: 0 done,
`EXIT_RECYCLED` handed over (start a fresh one), 2 bad input, 1 failed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
from collections.abc import Sequence

from search_spaces import parse_space

from ..config import SearchConfig
from ..errors import EXIT_OK, Recycled, SearchError, exit_code, known
from ..observe.progress import stdout_log
from ..processes.protocol import parser, write_outcome
from ..run.folder import RunFolder
from .session import run_session


class NotNeeded(Exception):
    """A standby whose supervisor closed its input instead of saying "go"."""


def _wait_for_go() -> float:
    """A standby's wait; the wall-clock time it takes over from (sent with "go")."""
    words = sys.stdin.readline().split()
    if not words or words[0] != "go":
        raise NotNeeded
    return float(words[1]) if len(words) > 1 else time.time()


def run(args: argparse.Namespace, t_start: float):
    folder = RunFolder(args.run_dir)
    if args.config:  # a hand-started worker's own config
        info = json.loads(pathlib.Path(args.config).read_text())
    else:
        info = folder.read("run.json", strict=True) or {}
    if "config" not in info:
        raise SearchError(f"{folder.run_json} has no config; start the search with python -m tuning.search")
    config = SearchConfig.from_dict(info["config"])
    space = parse_space(info["space_text"], info.get("space_file", "space.toml"), info["space"])
    try:
        return run_session(config, space, folder, role=args.role, log=stdout_log(),
                           resuming=args.resuming or args.continuing, t_start=t_start, handover=args.handover,
                           continuing=args.continuing, ready=_wait_for_go if args.standby else None,
                           ready_before_data=args.standby == "imported")
    except Exception as e:  # anything unexpected: one line for the parent, the traceback in error.log
        if isinstance(e, NotNeeded) or known(e) is e:
            raise
        raise SearchError.unexpected(e, folder) from e


def main(argv: Sequence[str] | None = None) -> int:
    t_start = time.time()
    args = parser().parse_args(argv)
    try:
        run(args, args.started or t_start)
    except NotNeeded:
        return EXIT_OK
    except (Exception, KeyboardInterrupt) as e:
        e = known(e)
        if isinstance(e, Recycled):
            return exit_code(e)
        if args.outcome:
            write_outcome(args.outcome, e)
        elif not isinstance(e, KeyboardInterrupt):  # an interrupted process has said so already
            print(f"error: {e}", file=sys.stderr)
        return exit_code(e)
    return EXIT_OK


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is saved and closed by now: skip the interpreter's and TensorFlow's teardown,
    # which takes seconds and would stall a hand-over or the end of the search.
    os._exit(status)
