"""The run folder: everything a search writes under ``results/<name>/``, and its lock.

- ``run.json``: what the run is (space, dataset, seed, budget); a resumed run must match it.
- ``state.json``: the sessions of the run (wall time of each), so a resumed run adds them up.
- ``trials/<id>.json``: one `TrialRecord` per finished trial (our own, next to keras-tuner's state).
- ``leaderboard.csv`` / ``leaderboard.md``: one row per trial, best first.
- ``best.json``: the best trial, its spec and its test accuracy (evaluated once).
- ``summary.json``: trials, wall and fit seconds, best accuracies, dataset, seed, versions.
- ``error.log``: the tracebacks of unexpected failures, kept across sessions.
- ``tuner/``: keras-tuner's own state (oracle, trials, checkpoints), so the run can resume.
- ``tensorboard/``: one run per configuration plus the HParams experiment.
- ``report/``: the report's plots and text.
- ``.lock``: one search per folder (see `RunFolder.lock`).

Every file is written to a temporary name and renamed, so none is ever half-written.

The lock is ``fcntl.flock`` on the open ``.lock`` file, so the kernel releases it the moment
its holder dies, kill -9 included, and a dead or unreaped (zombie) process can never hold a
folder. The supervisor takes it and its trial processes inherit the open file, so the folder
stays locked until the last of them has exited. The file's text (PID, host, command, start
time) is only for the message that refuses a second search. Across hosts sharing a
filesystem, ``flock`` may not reach the other host, so a lock file that names another host is
honoured as held until that host's search removes its name (or a person removes the file).

Nothing here imports TensorFlow, Keras or keras-tuner (`tuning.engine.restore` rebuilds models).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import io
import json
import os
import pathlib
import shutil
import socket
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import field
from typing import Any

from .engine.checkpoints import CHECKPOINT_NAME
from .errors import UsageError
from .ranking import best_record, record_key
from .runtime import write_atomic, write_json

LOCK_NAME = ".lock"
ENDING = ".ending"  # trials/<id>.ending: a trial's record kept while the oracle saves its end (`save_ending`)
DYING_WAIT = 10.0  # seconds to wait for a holder that is dead or dying to let go

FIXED_COLUMNS = ("trial_id", "run", "bracket", "round", "status", "epochs", "val_accuracy", "params", "flops",
                 "seconds")

# The order of a trial file's keys: the order in which a trial fills them in.
_FILE_ORDER = ("trial_id", "run", "parent", "bracket", "round", "initial_epoch", "epochs", "params", "flops", "spec",
               "values", "hyperparameters", "started", "resumed_from_epoch", "epoch_seconds", "checkpoint_seconds",
               "oom_retry_batch_size", "build_seconds", "compile_seconds", "compile_measure", "fit_seconds",
               "history", "worker", "seconds", "status",
               "val_accuracy", "best_step", "error")
# Keys today's trial files carry even when null, and the field that says they apply: a trial that
# ran names its parent (null in a first round); an ended trial its score and best step (null if it failed).
_NULL_KEPT = {"parent": "run", "val_accuracy": "status", "best_step": "status"}


@dataclasses.dataclass
class TrialRecord:
    """One ``trials/<id>.json``; the engine fills it while the trial runs."""

    trial_id: str
    run: str | None = None                   # the configuration's TensorBoard run (trial_<first trial>)
    parent: str | None = None                # the trial Hyperband promoted this one from
    bracket: int | None = None
    round: int | None = None
    initial_epoch: int = 0
    epochs: int | None = None                # every epoch of the configuration, earlier rounds included
    params: int | None = None
    flops: int | None = None
    spec: dict | None = None
    values: dict | None = None               # keras-tuner's names
    hyperparameters: dict = field(default_factory=dict)
    started: float | None = None
    worker: str | None = None                # keras-tuner's tuner id of the process that ran it
    status: str | None = None
    val_accuracy: float | None = None
    best_step: int | None = None
    seconds: float | None = None
    fit_seconds: float = 0.0
    build_seconds: float = 0.0
    compile_seconds: float = 0.0             # part of fit_seconds: tracing and compiling the train/test steps
    compile_measure: str | None = None       # "measured" (JAX's compile events) or "estimated" (first batches)
    checkpoint_seconds: float = 0.0
    epoch_seconds: list = field(default_factory=list)
    history: dict = field(default_factory=dict)
    resumed_from_epoch: int | None = None
    oom_retry_batch_size: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON of the file, keys in the order a trial fills them in. Keys whose value is None
        are left out, except those the files have always carried (``parent`` of a trial that ran,
        ``val_accuracy`` and ``best_step`` of one that ended)."""
        out = dataclasses.asdict(self)
        keys = sorted(out, key=lambda k: _FILE_ORDER.index(k) if k in _FILE_ORDER else len(_FILE_ORDER))
        return {k: out[k] for k in keys
                if out[k] is not None or (k in _NULL_KEPT and out[_NULL_KEPT[k]] is not None)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialRecord:
        """A record from a trial file's JSON, of any version: unknown keys are ignored, a null
        where the field has a default takes the default."""
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            value = d[f.name]
            if value is None and (f.default is not None or f.default_factory is not dataclasses.MISSING):
                continue
            kwargs[f.name] = value
        return cls(**kwargs)

    @property
    def completed(self) -> bool:
        return self.status == "COMPLETED" and self.val_accuracy is not None


def _read_json(path: pathlib.Path, strict: bool = False) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        if strict:
            raise UsageError(f"{path} is unreadable ({e}); rerun the search to rewrite it") from None
        return None


class RunFolder:
    """``results/<name>``: the files of one search and their readers and writers."""

    def __init__(self, path: str | os.PathLike):
        self.path = p = pathlib.Path(path)
        self.run_json, self.state_json, self.best_json = p / "run.json", p / "state.json", p / "best.json"
        self.summary_json, self.error_log, self.lock_path = p / "summary.json", p / "error.log", p / LOCK_NAME
        self.trials_dir, self.tuner_dir, self.tensorboard_dir = p / "trials", p / "tuner", p / "tensorboard"
        self.report_dir = p / "report"

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, RunFolder) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    def exists(self) -> bool:
        return self.path.exists()

    def trial_dir(self, trial_id: str) -> pathlib.Path:
        """keras-tuner's folder of a trial (its state and checkpoints)."""
        return self.tuner_dir / f"trial_{trial_id}"

    def checkpoint(self, trial_id: str) -> pathlib.Path:
        """The trial's best-epoch checkpoint."""
        return self.trial_dir(trial_id) / CHECKPOINT_NAME

    # ----- JSON files ---------------------------------------------------------------------------
    def read(self, name: str, *, strict: bool = False) -> dict[str, Any] | None:
        """A JSON file of the folder (``"run.json"``); None when it is missing. When it is
        unreadable: None, or with `strict` a UsageError naming it and the fix."""
        return _read_json(self.path / name, strict)

    def write(self, name: str, data: Mapping[str, Any]) -> None:
        """Write a JSON file of the folder atomically."""
        write_json(self.path / name, dict(data))

    def records(self) -> dict[str, TrialRecord]:
        """Every trial record, by trial id (files that cannot be read are skipped)."""
        out = {}
        for path in sorted(self.trials_dir.glob("*.json")):
            data = _read_json(path)  # a record is only ever replaced atomically: skip anything unreadable
            if not isinstance(data, dict) or "trial_id" not in data:
                continue
            out[data["trial_id"]] = TrialRecord.from_dict(data)
        return out

    def save_record(self, record: TrialRecord) -> None:
        """Write the trial's record; it supersedes the copy saved as it ended (`save_ending`)."""
        write_json(self.trials_dir / f"{record.trial_id}.json", record.to_dict())
        (self.trials_dir / f"{record.trial_id}{ENDING}").unlink(missing_ok=True)

    def save_ending(self, record: TrialRecord) -> None:
        """Keep a trial's record as it stands just before the oracle saves the trial as ended, so
        that a kill between that save and `save_record` loses nothing (`ending_records`). It is
        not a record (`records` does not read it) until then."""
        write_json(self.trials_dir / f"{record.trial_id}{ENDING}", record.to_dict())

    def ending_records(self) -> dict[str, TrialRecord]:
        """The records saved by `save_ending` and not yet superseded, by trial id."""
        out = {}
        for path in sorted(self.trials_dir.glob(f"*{ENDING}")):
            data = _read_json(path)
            if isinstance(data, dict) and "trial_id" in data:
                out[data["trial_id"]] = TrialRecord.from_dict(data)
            else:  # unreadable (written atomically, so damaged afterwards): no evidence of anything
                path.unlink(missing_ok=True)
        return out

    def drop_ending(self, trial_id: str) -> None:
        (self.trials_dir / f"{trial_id}{ENDING}").unlink(missing_ok=True)

    def write_leaderboard(self, records: Iterable[TrialRecord]) -> None:
        """``leaderboard.csv`` and ``leaderboard.md``: one row per trial, best first."""
        columns, rows = leaderboard_rows(records)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        write_atomic(self.path / "leaderboard.csv", buf.getvalue())
        md_cols = [c for c in columns if c != "error" or any(r["error"] for r in rows)]
        lines = ["| " + " | ".join(md_cols) + " |", "|" + "---|" * len(md_cols)]
        for row in rows:
            lines.append("| " + " | ".join(_fmt(row[c]).replace("|", "/") for c in md_cols) + " |")
        write_atomic(self.path / "leaderboard.md", "# Leaderboard\n\nOne row per trial, best validation accuracy "
                     "first. `epochs` counts every epoch the configuration has trained, earlier rounds included.\n\n"
                     + "\n".join(lines) + "\n")

    def append_error_log(self, text: str) -> pathlib.Path:
        """Add `text` to ``error.log`` (kept across sessions: nothing on disk is lost); returns
        where it went (a temporary file when the folder is not writable)."""
        path = self.error_log
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(f"----- {time.strftime('%Y-%m-%d %H:%M:%S')} (pid {os.getpid()})\n{text.rstrip()}\n")
        except OSError:  # an unwritable folder: keep the traceback somewhere the user can read it
            import tempfile

            fd, tmp = tempfile.mkstemp(prefix="tuning-error-", suffix=".log")
            with os.fdopen(fd, "w") as f:
                f.write(text)
            path = pathlib.Path(tmp)
        return path

    def clear(self) -> None:
        """--overwrite: delete the old run's files (the lock, which the caller holds, stays)."""
        for child in self.path.iterdir():
            if child.name == LOCK_NAME:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    # ----- the lock -----------------------------------------------------------------------------
    def check_lock(self) -> None:
        """Refuse at once (UsageError) if another search holds the folder's lock; take nothing."""
        if self.lock_path.exists():
            os.close(_acquire(self.lock_path, self.path))  # closing the descriptor releases the lock

    @contextlib.contextmanager
    def lock(self):
        """Hold ``.lock`` for the duration; refuse (UsageError) if another search holds it.

        Yields the locked file descriptor: pass it to child processes (``pass_fds``) that must
        keep the folder locked for as long as they live. Folders it had to create are removed
        again if nothing but the lock was written to them.
        """
        run_dir = self.path
        created = [p for p in (run_dir, *run_dir.parents) if not p.exists()]  # innermost first
        run_dir.mkdir(parents=True, exist_ok=True)
        path = self.lock_path
        try:
            fd = _acquire(path, run_dir)
        except BaseException:
            _remove_empty(created)
            raise
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        try:
            yield fd
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # no name left behind for another host to honour
            _remove_empty(created)  # refused or stopped before writing anything: leave no empty folder behind
            os.close(fd)


def best_so_far(records: Iterable[TrialRecord], clock) -> list[tuple[float, float | None]]:
    """(``clock(end time)``, best validation accuracy so far or None) after every ended trial
    (one with ``started`` and ``seconds``), in the order they ended."""
    ended = sorted((r for r in records if r.started is not None and r.seconds is not None),
                   key=lambda r: (r.started + r.seconds, r.trial_id))
    best, out = None, []
    for r in ended:
        if r.completed and (best is None or r.val_accuracy > best):
            best = float(r.val_accuracy)
        out.append((clock(r.started + r.seconds), best))
    return out


def leaderboard_rows(records: Iterable[TrialRecord]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of the leaderboard, best first (`tuning.ranking`'s order)."""
    recs = sorted(records, key=record_key)
    hp_cols: list[str] = []
    for rec in recs:
        for k in rec.hyperparameters:
            if k not in hp_cols:
                hp_cols.append(k)
    columns = [*FIXED_COLUMNS, *hp_cols, "error"]
    rows = []
    for rec in recs:
        row = {c: getattr(rec, c) for c in FIXED_COLUMNS}
        row.update({c: rec.hyperparameters.get(c) for c in hp_cols})
        row["error"] = rec.error if rec.error is not None else ""
        rows.append(row)
    return columns, rows


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3g}"
    return str(v)


# ----- the lock's parts ---------------------------------------------------------------------------
def _holder(path: pathlib.Path) -> dict:
    """What the lock file says of its holder ({} if it is empty, gone or unreadable)."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie (dead, not yet reaped by its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _refusal(run_dir: pathlib.Path, holder: dict) -> UsageError:
    host = holder.get("host")
    where = "" if host in (None, socket.gethostname()) else \
        f" on {host} (if it is gone, remove {run_dir / LOCK_NAME})"
    return UsageError(f"{run_dir} is in use by process {holder.get('pid', '?')}{where} "
                      f"(`{holder.get('command', '?')}`, since {holder.get('since', '?')}); wait for it to finish or "
                      "stop it, or use another --name")


def _acquire(path: pathlib.Path, run_dir: pathlib.Path) -> int:
    """Open and flock the lock file; return the descriptor, or raise the refusal."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        deadline = None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(path)
                pid = holder.get("pid")
                # Its recorded holder is gone: a trial process it left is being killed with it
                # (it dies with its supervisor). Or the holder has not written its name yet.
                # Give it a moment rather than refuse.
                dying = not holder or (holder.get("host") == socket.gethostname() and isinstance(pid, int)
                                       and not _running(pid))
                if deadline is None:
                    deadline = time.monotonic() + (DYING_WAIT if dying else 0.0)
                if time.monotonic() >= deadline:
                    raise _refusal(run_dir, holder) from None
                time.sleep(0.05)
        holder = _holder(path)
        if holder.get("host") not in (None, socket.gethostname()):
            raise _refusal(run_dir, holder)  # another host's search, which our flock may not see
        return fd
    except BaseException:
        os.close(fd)
        raise


def _remove_empty(created: list[pathlib.Path]) -> None:
    """Remove the folders the lock created (innermost first) if nothing but the lock is in them."""
    with contextlib.suppress(OSError):
        for folder in created:
            if [p.name for p in folder.iterdir()] in ([LOCK_NAME], []):
                (folder / LOCK_NAME).unlink(missing_ok=True)
            folder.rmdir()


# ----- a finished (or interrupted) run, for export, the report and the benchmarks ----------------
@dataclasses.dataclass
class Run:
    """A run folder's metadata and trial records (no Keras needed)."""

    folder: RunFolder
    info: dict[str, Any]                     # run.json
    records: dict[str, TrialRecord]          # trials/<id>.json
    best: dict[str, Any] | None              # best.json, if the search got that far
    summary: dict[str, Any] | None           # summary.json

    @property
    def run_dir(self) -> pathlib.Path:
        return self.folder.path

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def backend(self) -> str:
        """The Keras backend the run was searched on (runs from before the choice: TensorFlow)."""
        return self.info.get("backend") or (self.info.get("config") or {}).get("backend") or "tensorflow"

    def completed(self) -> list[TrialRecord]:
        return [r for r in self.records.values() if r.completed]

    def best_trial_id(self) -> str:
        if self.best and self.best.get("trial_id") in self.records:
            return self.best["trial_id"]
        return best_record(self.completed()).trial_id

    def values(self, trial_id: str) -> dict[str, Any]:
        """The trial's hyperparameter values under keras-tuner's names."""
        values = self.records[trial_id].values
        if values is None:  # fall back on keras-tuner's own record of the trial
            state = _read_json(self.folder.trial_dir(trial_id) / "trial.json", strict=True) or {}
            values = state.get("hyperparameters", {}).get("values", {})
        return {k: v for k, v in values.items() if not k.startswith("tuner/")}

    def checkpoint(self, trial_id: str) -> pathlib.Path:
        return self.folder.checkpoint(trial_id)


def open_run(run_dir: str | os.PathLike, *, need_completed: bool = True) -> Run:
    """Read a run folder. `UsageError` if it is missing, not a run, or (optionally) has no
    completed trial."""
    folder = RunFolder(run_dir)
    run_dir = folder.path
    if not run_dir.exists():
        raise UsageError(f"results folder {run_dir} does not exist; run `python -m tuning.search` first, or give "
                         "the folder it printed (results/<name>)")
    if not run_dir.is_dir() or not folder.run_json.exists():
        raise UsageError(f"{run_dir} is not a search results folder (no run.json); give results/<name> as "
                         "written by `python -m tuning.search`")
    info = folder.read("run.json", strict=True) or {}
    run = Run(folder, info, folder.records(), folder.read("best.json", strict=True),
              folder.read("summary.json", strict=True))
    if need_completed and not run.completed():
        raise UsageError(f"{run_dir} has no completed trial yet; let the search finish a trial first "
                         f"(python -m tuning.search resumes it)")
    return run
