"""The errors of the package, and the one mapping of an exception to a command's exit status.

Every command (``python -m tuning.search|export|report|bench`` and a search's child processes)
ends on an exception with `exit_code` and, where it speaks, with `one_line`: a `ValueError` (bad
input: `UsageError`, `DataError`, `search_spaces.SpaceError`) is exit status 2, an interrupt 130,
anything else 1.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_RECYCLED = 75       # a trial process handed over: start a fresh one (`Recycled`)
EXIT_INTERRUPTED = 130   # Ctrl-C


class UsageError(ValueError):
    """Bad input from the user: what is wrong and what to do, in one line."""


class DataError(ValueError):
    """The data cannot be read; the message says what to do."""


class SystematicFailure(RuntimeError):
    """Trials keep failing the same way, so the search stops; the message says how."""


class SearchError(RuntimeError):
    """An unexpected failure: one line for the user, the traceback in ``<run>/error.log``."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details  # the traceback (printed too with --verbose)

    @classmethod
    def outside(cls, error: BaseException) -> SearchError:
        """An exception outside the search's own handling (say, in the Python it runs on), as one
        line; its traceback in `details`."""
        import traceback

        return cls(f"unexpected {type(error).__name__}: {error}; run the same command again to resume, with "
                   "--verbose to see the traceback", "".join(traceback.format_exception(error)))

    @classmethod
    def unexpected(cls, error: BaseException, folder, what: str = "the search") -> SearchError:
        """One line for an exception nobody expected; its traceback goes to the run folder's
        error.log (`folder.append_error_log`)."""
        import traceback

        details = "".join(traceback.format_exception(error))
        log_path = folder.append_error_log(details)
        first = (str(error).strip().splitlines() or [""])[0][:200]
        return cls(f"{what} failed ({type(error).__name__}{': ' + first if first else ''}); the full traceback is "
                   f"in {log_path}; finished trials are saved: run the same command again to resume", details)


class Recycled(Exception):
    """A trial process handed over to a fresh one (it exits with `EXIT_RECYCLED`)."""


def exit_code(error: BaseException) -> int:
    """The exit status a command ends with on `error`."""
    if isinstance(error, Recycled):
        return EXIT_RECYCLED
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, ValueError):
        return EXIT_BAD_INPUT
    return EXIT_FAILED


def known(error: BaseException) -> BaseException:
    """`error` if it is one of ours (or bad input, or an interrupt); else a `SearchError` saying
    it in one line, with its traceback in ``details``."""
    if isinstance(error, (ValueError, SystematicFailure, SearchError, Recycled, KeyboardInterrupt)):
        return error
    return SearchError.outside(error)


def one_line(error: BaseException) -> str:
    """What a command prints (after ``error: ``) when it ends on `error`."""
    if isinstance(error, SystematicFailure):
        return (f"search stopped: {error}. Fix the cause, then run the same command again: the search goes on, "
                "and these failures no longer count")
    return str(error)
