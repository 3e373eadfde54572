"""Progress: one line per finished trial (`progress_line`), and inside a trial its epoch, images per
second, and the trial's and the search's time left.

A trial's Keras callback (`progress_callbacks`) says where the trial is once its fit has run for
``TUNING_PROGRESS_AFTER`` seconds (default `PROGRESS_AFTER`). How depends on ``TUNING_PROGRESS``,
which the search's top-level process sets (`rendering`) and every child process inherits:

- ``live`` (the search's output is a terminal): the callback logs event lines (`EVENT` and compact
  JSON) at most every `EVENT_EVERY` seconds during an epoch, at each epoch's end, and an end event
  when its fit ends; the top-level process draws them as one status line, refreshed in place
  under the ordinary lines (with rich) and gone when the trial ends.
- ``plain`` (a log file, a pipe, a notebook, a caller's own log function): one line per epoch,
  ``  trial 0003 epoch 4/9: 1,234 images/s, trial ~0:00:12 left, search ~0:03:40 left``.
- ``off`` (``--quiet``): nothing inside trials; the top-level process also keeps only the lines
  in `QUIET_KEEPS` (each finished trial's line, the result, warnings, errors, an interruption).

A trial process's stdout is a pipe to its supervisor, which passes every line to the top-level
log, so events travel as lines. This module imports neither Keras nor rich until it needs them:
the top-level process of a search never imports Keras.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO

from ..config import fmt_time
from ..run.records import TrialRecord, best_record

PROGRESS_ENV = "TUNING_PROGRESS"
AFTER_ENV = "TUNING_PROGRESS_AFTER"
MODES = ("live", "plain", "off")
PROGRESS_AFTER = 5.0   # seconds of a trial's fit before its progress shows
EVENT_EVERY = 0.5      # live: seconds between events within an epoch
EVENT = "\x1eprogress "  # an event line's prefix (ASCII record separator: never in ordinary output)
# What --quiet keeps: each finished trial's line, the result, and what reports a problem.
QUIET_KEEPS = ("trial ", "best: ", "results: ", "view the trials: ", "warning: ", "error: ", "interrupted ",
               "[launcher] ")
_CHILD_NAME = re.compile(r"^\[(chief|worker\d+)\] ")  # the prefix of a --workers child's lines


def stdout_log() -> Callable[[str], None]:
    """A progress printer to this process's stdout as it is now: keras-tuner's own prints are
    silenced later by redirecting `sys.stdout`, and progress lines must not be."""
    stdout = sys.stdout

    def log(line: str) -> None:
        print(line, file=stdout, flush=True)

    return log


def current_mode() -> str:
    """This process's mode: ``TUNING_PROGRESS`` (plain when unset or not one of `MODES`)."""
    value = os.environ.get(PROGRESS_ENV, "plain")
    return value if value in MODES else "plain"


def progress_after() -> float:
    """Seconds of a trial's fit before its progress shows: ``TUNING_PROGRESS_AFTER``, else `PROGRESS_AFTER`."""
    try:
        return float(os.environ.get(AFTER_ENV, PROGRESS_AFTER))
    except ValueError:
        return PROGRESS_AFTER


def top_level_mode(quiet: bool, terminal: bool) -> str:
    """The mode of a search's top-level process: off when `quiet`; else ``TUNING_PROGRESS`` when set
    (live only on a `terminal`); else live on a terminal, plain elsewhere."""
    if quiet:
        return "off"
    chosen = current_mode() if PROGRESS_ENV in os.environ else "live"
    return "plain" if chosen == "live" and not terminal else chosen


def describe(event: dict, steps: bool = False) -> str:
    """The text of a progress event: ``trial 0003 epoch 4/9: 1,234 images/s, trial ~0:00:12 left, ...``
    (`steps`: with the step within the epoch, for the live line)."""
    where = f"trial {event['trial']} epoch {event['epoch']}/{event['epochs']}"
    if steps and event.get("steps"):
        where += f", step {event['step']}/{event['steps']}"
    figures = []
    if event.get("images_per_s") is not None:
        figures.append(f"{event['images_per_s']:,.0f} images/s")
    if event.get("trial_left") is not None:
        figures.append(f"trial ~{fmt_time(event['trial_left'])} left")
    if event.get("search_left") is not None:
        figures.append(f"search ~{fmt_time(event['search_left'])} left")
    return where + (": " + ", ".join(figures) if figures else "")


# ----- after each trial -----------------------------------------------------------------------
def search_work(planned: list, records: Iterable[TrialRecord]) -> tuple[int, int]:
    """(work done by the finished `records`, work of the `planned` trials): work is epochs trained
    plus one epoch's worth of per-trial overhead."""
    done = sum((r.epochs or 1) - r.initial_epoch + 1 for r in records)
    return done, sum(e - s + 1 for _, _, e, s in planned)


def time_left(elapsed: float, done: float, total: float) -> float:
    """Seconds left for the work not `done` of `total`, at the pace of `elapsed` so far."""
    return elapsed / max(1, done) * max(0, total - done)


def progress_line(planned: list, records: dict[str, TrialRecord], record: TrialRecord, elapsed: float,
                  time_budget: float | None = None) -> str:
    """One line per finished trial: its score, the best so far, trials done, time left (with a
    time budget, to its deadline)."""
    remaining = time_left(elapsed, *search_work(planned, records.values()))
    if time_budget is not None:
        remaining = time_budget - elapsed
    top = best_record(records.values())
    best = f"{top.score:.4f}" if top is not None else "-"
    if record.status == "COMPLETED":
        what = f"{record.objective} {record.score:.4f}"
    else:
        what = f"{(record.status or '?').lower()}: {(record.error or '')[:120]}"
    trials = f"{len(records)}/{len(planned)}" if time_budget is None else str(len(records))
    return (f"trial {record.trial_id} (bracket {record.bracket}, round {record.round}, {record.epochs} epochs) "
            f"{what} | best {best} | {trials} trials | {fmt_time(elapsed)} elapsed, "
            f"~{fmt_time(remaining)} left")


# ----- in the process that trains ---------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Reporter:
    """What a trial's progress needs from its search.

    Attributes:
        log: where its lines go (the session's log).
        search_left: the search's seconds left, given the epochs of the running trial done so far
            (a fraction within an epoch).
    """

    log: Callable[[str], None]
    search_left: Callable[[float], float]


class TrialProgress:
    """The hooks of a trial's progress callback (`progress_callbacks` makes it a Keras callback).

    Args:
        reporter: its search's `Reporter`.
        trial_id: the trial.
        epochs, initial_epoch: the fit's, as Hyperband counts them (a promoted trial trains epochs
            ``initial_epoch + 1 .. epochs``).
        batch_size: images per training step (every replica's).
        mode: ``live`` (events) or ``plain`` (a line per epoch).
        after: seconds of the fit before anything shows.
        clock: seconds, monotonic.
    """

    params: dict | None = None  # Keras sets it before the fit (its "steps": training steps per epoch)

    def __init__(self, reporter: Reporter, trial_id: str, *, epochs: int, initial_epoch: int, batch_size: int,
                 mode: str, after: float, clock: Callable[[], float] = time.monotonic):
        super().__init__()  # Keras' Callback in the class `progress_callbacks` makes
        self.reporter, self.trial_id, self.epochs, self.initial_epoch = reporter, trial_id, epochs, initial_epoch
        self.batch_size, self.mode, self.after, self.clock = batch_size, mode, after, clock
        self.shown = False
        self._t_fit = self._t_epoch = self._t_batch = self._t_event = 0.0
        self._epoch, self._batch = initial_epoch, 0

    @property
    def _steps(self) -> int:
        return (self.params or {}).get("steps") or 0

    def on_train_begin(self, logs=None):
        self._t_fit = self.clock()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._batch, self._t_epoch = epoch, 0, self.clock()

    def on_train_batch_end(self, batch, logs=None):
        self._batch, self._t_batch = batch + 1, self.clock()
        last = bool(self._steps) and self._batch >= self._steps  # the epoch's end says it
        if self.mode == "live" and not last and self._due() and self._t_batch - self._t_event >= EVENT_EVERY:
            self._emit()

    def on_epoch_end(self, epoch, logs=None):
        if self._due():
            self._emit()

    def close(self) -> None:
        """The end of the fit, however it ended: live, an end event (the status line goes)."""
        if self.mode == "live" and self.shown:
            self.reporter.log(EVENT + json.dumps({"trial": self.trial_id, "end": True}, separators=(",", ":")))
        self.shown = False

    def _due(self) -> bool:
        return self.clock() - self._t_fit >= self.after

    def figures(self) -> dict:
        """Where the trial is: its epoch (1-based, absolute), step, images per second this epoch,
        and the trial's and the search's seconds left (None where not known yet)."""
        now, steps, batch = self.clock(), self._steps, self._batch
        train_seconds = self._t_batch - self._t_epoch
        done = (self._epoch - self.initial_epoch) * steps + batch  # steps of this fit
        trial_left = None
        if steps and done:
            trial_left = ((self.epochs - self._epoch) * steps - batch) * (now - self._t_fit) / done
        epochs_done = self._epoch - self.initial_epoch + (batch / steps if steps else 0.0)
        return {"trial": self.trial_id, "epoch": self._epoch + 1, "epochs": self.epochs, "step": batch, "steps": steps,
                "images_per_s": batch * self.batch_size / train_seconds if batch and train_seconds > 0 else None,
                "trial_left": trial_left, "search_left": self.reporter.search_left(epochs_done)}

    def _emit(self) -> None:
        event = self.figures()
        if self.mode == "live":
            self.reporter.log(EVENT + json.dumps(event, separators=(",", ":")))
        else:
            self.reporter.log("  " + describe(event))
        self._t_event, self.shown = self.clock(), True


@functools.cache
def _callback_class() -> type:
    import keras

    return type("TrialProgressCallback", (TrialProgress, keras.callbacks.Callback), {})


@contextlib.contextmanager
def progress_callbacks(reporter: Reporter | None, trial_id: str, *, epochs: int, initial_epoch: int,
                       batch_size: int) -> Iterator[list]:
    """The Keras callbacks that show a trial's progress (none when progress is off), for one fit.

    Yields:
        The callbacks for the fit inside the ``with`` block; on leaving it, however the fit ended
        (Keras skips ``on_train_end`` when fit raises), the live status line is taken down.
    """
    if reporter is None or current_mode() == "off":
        yield []
        return
    callback = _callback_class()(reporter, trial_id, epochs=epochs, initial_epoch=initial_epoch,
                                 batch_size=batch_size, mode=current_mode(), after=progress_after())
    try:
        yield [callback]
    finally:
        callback.close()


# ----- in the top-level process -----------------------------------------------------------------
class Renderer:
    """The top-level log of a search in a mode: a callable taking each line (from this process or,
    through the supervisor, from its children), from any thread.

    live: events update one status line refreshed in place (rich's `Live`, transient) on `console`
    (a `rich.console.Console` on a terminal); other lines are printed above it unchanged. plain:
    events are dropped, other lines go to `log`. off: only the lines in `QUIET_KEEPS` go to `log`.
    `close()` takes the status line down.
    """

    def __init__(self, log: Callable[[str], None], mode: str, console=None):
        self.log, self.mode, self.console = log, mode, console
        self._lock = threading.Lock()
        self._live = None

    def __call__(self, line: str) -> None:
        with self._lock:
            if self.mode == "live":
                self._live_line(line)
            elif EVENT in line:
                return
            elif self.mode == "plain" or _kept_when_quiet(line):
                self.log(line)

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _live_line(self, line: str) -> None:
        from rich.text import Text

        if not line.startswith(EVENT):
            self.console.print(Text(line), soft_wrap=True)
            return
        try:
            event = json.loads(line[len(EVENT):])
        except ValueError:
            return
        if event.get("end"):
            self._stop()
            return
        if self._live is None:
            from rich.live import Live

            self._live = Live(console=self.console, transient=True, auto_refresh=False, redirect_stdout=False,
                              redirect_stderr=False)
            self._live.start()
        self._live.update(Text(describe(event, steps=True), no_wrap=True, overflow="ellipsis"), refresh=True)

    def _stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def _kept_when_quiet(line: str) -> bool:
    return _CHILD_NAME.sub("", line, count=1).startswith(QUIET_KEEPS)


@contextlib.contextmanager
def rendering(log: Callable[[str], None], mode: str, stream: IO[str] | None = None) -> Iterator[Renderer]:
    """`log` wrapped in a `Renderer` for `mode`, with ``TUNING_PROGRESS`` set to `mode` meanwhile so that
    every child process inherits it. On leaving (an error and Ctrl-C included) the status line is
    taken down and ``TUNING_PROGRESS`` restored.

    Args:
        log: where ordinary lines go in the plain and off modes.
        mode: ``live`` (drawn on `stream`, a terminal; default this process's stdout), ``plain`` or ``off``.
    """
    console = None
    if mode == "live":
        from rich.console import Console

        console = Console(file=stream or sys.stdout, highlight=False, markup=False, emoji=False)
    before = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = mode
    renderer = Renderer(log, mode, console)
    try:
        yield renderer
    finally:
        renderer.close()
        if before is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = before
