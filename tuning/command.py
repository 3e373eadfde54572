"""What every command shares: its argument parser's class, and how it ends on an exception.

A bad option is one line and exit status 2 (`Parser`); any exception the command's body raises
is one line on stderr and the exit status of `tuning.errors.exit_code` (`run_command`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .errors import EXIT_BAD_INPUT, exit_code, known, one_line


class Parser(argparse.ArgumentParser):
    """The argument parser of every command: a bad option is one line and exit status 2."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see --help)\n")


def run_command(body: Callable[[], int | None], *, verbose: bool = False,
                interrupted: Callable[[], None] | None = None) -> int:
    """Run a command's `body` and return its exit status: what it returns (None is 0), or for an
    exception one line on stderr and `exit_code` (with `verbose`, an unexpected error's traceback
    first). On Ctrl-C `interrupted()` says how to go on, if given."""
    try:
        return body() or 0
    except KeyboardInterrupt as e:
        if interrupted is not None:
            interrupted()
        return exit_code(e)
    except Exception as e:  # noqa: BLE001 (every error ends as one line)
        e = known(e)
        details = getattr(e, "details", "")
        if verbose and details:
            print(details.rstrip(), file=sys.stderr)
        print(f"error: {one_line(e)}", file=sys.stderr)
        return exit_code(e)
