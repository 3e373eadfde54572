"""How a child process of a search (trial process, chief, worker) says how it ended.

Its exit status says what happened (`RECYCLE_EXIT`, `INTERRUPTED_EXIT`, 2 for bad input, 1 for a
failure); on an error it also writes a small status file (`write_outcome`), and its parent raises
the same error again (`raise_outcome`). No error text is parsed from stderr.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal

from .errors import DataError, SearchError, SystematicFailure, UsageError
from .runtime import write_json

RECYCLE_EXIT = 75        # a trial process's exit status for "continue in a fresh process"
INTERRUPTED_EXIT = 130   # Ctrl-C

# Outcome kinds, and the exception each one is raised as again in the parent.
_KINDS = {"usage": UsageError, "data": DataError, "systematic": SystematicFailure, "error": SearchError}


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
    """Say in `path` how this process ended (atomically; read by `raise_outcome`)."""
    write_json(path, {"kind": outcome_kind(error), "message": str(error),
                      "details": getattr(error, "details", "")})


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
    if kind == "interrupted" or returncode in (INTERRUPTED_EXIT, -signal.SIGINT):
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
