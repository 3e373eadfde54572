"""A child process of a search: ``python -m tuning.engine.trial_process RUN_DIR --role ROLE``.

It gets its role and run folder from its arguments, reads the search's config from
``RUN_DIR/run.json`` (written by its parent), runs its part of the search
(`tuning.engine.session.run_session`) and says how it ended with its exit status and, on an
error, in the ``--outcome`` file (`tuning.errors.write_outcome`). Exit statuses: 0 done,
`RECYCLE_EXIT` handed over (start a fresh one), 2 bad input, 1 failed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
from collections.abc import Sequence

from ..errors import Recycled, SearchError, SystematicFailure
from ..outcome import INTERRUPTED_EXIT, RECYCLE_EXIT, write_outcome

MODULE = "tuning.engine.trial_process"
STANDBY_POINTS = ("loaded", "imported")  # a standby waits for "go" once the data is loaded, or before loading it


def command_args(run_dir, role: str, *, outcome: str | None = None, handover: bool = False,
                 resuming: bool = False, continuing: bool = False, standby: str | None = None,
                 started: float | None = None, config: str | None = None) -> list[str]:
    """The arguments of a child process (for `tuning.processes.python_module(MODULE, ...)`).

    `standby`: None, or where the process waits for "go" (`STANDBY_POINTS`). `config`: a file
    with the search's config and space, as run.json has them, to read instead of run.json."""
    args = [str(run_dir), "--role", role]
    if outcome:
        args += ["--outcome", outcome]
    if config:
        args += ["--config", config]
    if standby:
        args += ["--standby", standby]
    if started is not None:
        args += ["--started", repr(started)]
    args += [flag for flag, on in (("--handover", handover), ("--resuming", resuming),
                                   ("--continuing", continuing)) if on]
    return args


def _parser() -> argparse.ArgumentParser:
    from .session import ROLES

    p = argparse.ArgumentParser(prog=f"python -m {MODULE}", description="one process of a search (started by "
                                "python -m tuning.search; not meant to be run by hand)")
    p.add_argument("run_dir")
    p.add_argument("--role", choices=ROLES, required=True)
    p.add_argument("--outcome", help="where to say how this process ended")
    p.add_argument("--config", help="read the search's config and space from this file, not RUN_DIR/run.json")
    p.add_argument("--handover", action="store_true", help="hand over to a fresh process once grown by "
                   "the config's recycle_mb")
    p.add_argument("--resuming", action="store_true", help="the folder holds an earlier session of this run")
    p.add_argument("--continuing", action="store_true", help="taking over from another trial process")
    p.add_argument("--standby", choices=STANDBY_POINTS, help="wait for a line 'go TIME' on standard input (end of "
                   "input: exit at once) once the data is loaded, or once Keras is imported (before the data)")
    p.add_argument("--started", type=float, help="when the search's wall time starts (default: now)")
    return p


class _NotNeeded(Exception):
    """A standby whose supervisor closed its input instead of saying "go"."""


def _wait_for_go() -> float:
    """A standby's wait; the wall-clock time it takes over from (sent with "go")."""
    words = sys.stdin.readline().split()
    if not words or words[0] != "go":
        raise _NotNeeded
    return float(words[1]) if len(words) > 1 else time.time()


def run(args: argparse.Namespace, t_start: float):
    from search_spaces import parse_space

    from ..config import SearchConfig
    from ..runtime import stdout_log
    from ..store import RunFolder
    from .session import run_session

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
    except (ValueError, SystematicFailure, SearchError, Recycled, KeyboardInterrupt, _NotNeeded):
        raise
    except Exception as e:  # one line for the parent, the traceback in the run's error.log
        raise SearchError.unexpected(e, folder) from e


def main(argv: Sequence[str] | None = None) -> int:
    t_start = time.time()
    args = _parser().parse_args(argv)
    try:
        run(args, args.started or t_start)
    except Recycled:
        return RECYCLE_EXIT
    except _NotNeeded:
        return 0
    except (Exception, KeyboardInterrupt) as e:
        if not isinstance(e, (ValueError, SystematicFailure, SearchError, KeyboardInterrupt)):
            e = SearchError.outside(e)
        if args.outcome:
            write_outcome(args.outcome, e)
        elif not isinstance(e, KeyboardInterrupt):  # an interrupted process has said so already
            print(f"error: {e}", file=sys.stderr)
        if isinstance(e, KeyboardInterrupt):
            return INTERRUPTED_EXIT
        return 2 if isinstance(e, ValueError) else 1
    return 0


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is saved and closed by now: skip the interpreter's and TensorFlow's teardown,
    # which takes seconds and would stall a hand-over or the end of the search.
    os._exit(status)
