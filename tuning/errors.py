"""The errors of the package. The command lines print a `ValueError` (bad input) as one line and
exit 2, the others as one line and exit 1."""

from __future__ import annotations


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
    """A trial process handed over to a fresh one (it exits with `tuning.outcome.RECYCLE_EXIT`)."""
