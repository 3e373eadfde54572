"""Errors the command lines report as one line with exit status 2."""


class UsageError(ValueError):
    """Bad input from the user: what is wrong and what to do, in one line."""


class SystematicFailure(RuntimeError):
    """Trials keep failing the same way, so the search stops; the message says how."""
