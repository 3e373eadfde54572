"""Fault injection, for tests only: make a chosen trial fail the way real trials do (the callbacks
that do it are in `tuning.engine.callbacks`; this module imports nothing heavy).

Set ``TUNING_FAULTS`` to a JSON object mapping trial ids to a fault, e.g.
``{"0002": "raise", "0003": "nan", "0004": "oom"}``:

- ``raise``: an exception in training (any bug in build or fit);
- ``nan``: the weights turn NaN, so the loss does (``TerminateOnNaN`` stops the trial);
- ``oom``: ``ResourceExhaustedError`` at the trial's sampled batch size only (the retry at half
  the batch size then succeeds); ``oom-always``: at every batch size;
- ``killed``: the process kills itself with SIGKILL as the trial's training starts, every time
  (as the kernel's out-of-memory killer would, for a configuration too large for the memory);
- ``hang@E``: sleep for an hour after epoch E completes (a window to kill the process in);
  ``deaf@E``: the same, but the first Ctrl-C is lost, as Python loses one that lands while it
  runs a finaliser.

Keys that act on the whole search:

- ``"handover": "every-trial"``: a supervised trial process hands over to a fresh one after
  every trial (``--recycle-mb`` measures growth from the end of a process's first trial, so
  even 1 MB hands over after every second trial only);
- ``"standby": "always"``: the supervisor starts the next trial process's standby at once,
  however little the current one has grown (so that every hand-over goes through a standby);
- ``"crash": "after-trials"``: an unexpected error once every trial has ended (before the best
  trial is evaluated), as a bug there would raise;
- ``"score_step"`` (e.g. ``0.5``): every trial's validation accuracy is rounded to a multiple of
  the step before the search sees it, so that ties are everywhere;
- ``"kill": "ended@ID"``: the process kills itself with SIGKILL once the oracle has saved trial
  ID as ended, before its record is saved (the narrowest window a kill -9 can land in).
"""

from __future__ import annotations

import json
import os

FAULTS_ENV = "TUNING_FAULTS"


def _faults() -> dict:
    text = os.environ.get(FAULTS_ENV)
    return json.loads(text) if text else {}


def fault_for(trial_id: str) -> str | None:
    return _faults().get(trial_id)


def crash_point(name: str) -> None:
    if _faults().get("crash") == name:
        raise RuntimeError(f"injected crash at {name}")


def kill_point(name: str) -> None:
    if _faults().get("kill") == name:
        kill_self()


def kill_self() -> None:
    """SIGKILL this process, as the kernel's out-of-memory killer would."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def handover_every_trial() -> bool:
    return _faults().get("handover") == "every-trial"


def standby_always() -> bool:
    return _faults().get("standby") == "always"


def score_step() -> float | None:
    return _faults().get("score_step")
