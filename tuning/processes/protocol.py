"""The protocol between a search and its child processes (trial processes, chief, workers).

A child learns its run folder and role from its arguments (`command_args`, read back by
`parser`). It says how it ended with its exit status (`tuning.errors.exit_code`: 0 done,
`EXIT_RECYCLED` handed over, 2 bad input, 1 failed, 130 interrupted) and, on an error, in a small
outcome file (`write_outcome`); its parent raises the same error again (`raise_outcome`). No
error text is parsed from its stderr.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal

from ..command import Parser
from ..errors import EXIT_INTERRUPTED, DataError, SearchError, SystematicFailure, UsageError

MODULE = "tuning.search.trial_process"   # the child's entry point (``python -m MODULE ...``)
ROLES = ("standalone", "chief", "worker")
STANDBY_POINTS = ("loaded", "imported")  # a standby waits for "go" once the data is loaded, or before loading it

# Outcome kinds, and the exception each one is raised as again in the parent.
_KINDS = {"usage": UsageError, "data": DataError, "systematic": SystematicFailure, "error": SearchError}


def command_args(run_dir, role: str, *, outcome: str | None = None, handover: bool = False,
                 resuming: bool = False, continuing: bool = False, standby: str | None = None,
                 started: float | None = None, config: str | None = None) -> list[str]:
    """The arguments of a child process (for ``python -m MODULE``; read back by `parser`).

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


def parser() -> Parser:
    """The child's command line (`command_args`)."""
    p = Parser(prog=f"python -m {MODULE}", description="one process of a search (started by python -m "
               "tuning.search; not meant to be run by hand)")
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


def outcome_kind(error: BaseException) -> str:
    """The outcome kind of an exception: usage, data, systematic, error or interrupted."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, DataError):
        return "data"
    if isinstance(error, ValueError):  # UsageError, SpaceError
        return "usage"
    if isinstance(error, SystematicFailure):
        return "systematic"
    return "error"


def write_outcome(path: str | os.PathLike, error: BaseException) -> None:
    """Say in `path` how this process ended (read by `raise_outcome` once it has exited)."""
    pathlib.Path(path).write_text(json.dumps({"kind": outcome_kind(error), "message": str(error),
                                              "details": getattr(error, "details", "")}))


def read_outcome(path: str | os.PathLike) -> dict[str, str]:
    try:
        return json.loads(pathlib.Path(path).read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}


def raise_outcome(outcome: dict[str, str], returncode: int, killed: str) -> None:
    """Raise again what ended a child process.

    Args:
        outcome: what it wrote with `write_outcome` ({} if nothing).
        returncode: its exit status.
        killed: the message for a child that said nothing (killed, or crashed hard).
    """
    kind, message = outcome.get("kind"), outcome.get("message", "")
    if kind == "interrupted" or returncode in (EXIT_INTERRUPTED, -signal.SIGINT):
        raise KeyboardInterrupt
    if kind == "error":
        raise SearchError(message, outcome.get("details", ""))
    if kind in _KINDS:
        raise _KINDS[kind](message)
    raise SearchError(killed)


def exit_status(returncode: int) -> str:
    """How a process that said nothing ended, in words."""
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"

