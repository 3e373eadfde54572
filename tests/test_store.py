"""The run folder (`tuning.run`): trial records as written today, atomic JSON, the leaderboard."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from tuning.errors import UsageError
from tuning.run.files import write_json
from tuning.run.folder import RunFolder
from tuning.run.leaderboard import leaderboard_rows
from tuning.run.lock import LOCK_NAME
from tuning.run.opened import open_run
from tuning.run.records import TrialRecord, best_record, rank_key, record_key

SPEC = {"stem": "cifar", "stage_depths": [1, 1], "block": "bottleneck", "base_filters": 8, "growth": 2.0,
        "width_multiplier": 1.0, "preact": False, "shortcut": "B", "bottleneck_stride": "3x3", "expansion": 4,
        "bn_momentum": 0.9, "bn_epsilon": 1e-05}
VALUES = {"stem": "cifar", "depth": 2, "learning_rate_adam_adamw": 0.00104, "batch_size": 64}
HPS = {"stem": "cifar", "depth": 2, "learning_rate": 0.00104, "batch_size": 64, "stage_depths": "1-1", "layers": 8}
HISTORY = {"accuracy": [0.19, 0.41], "loss": [2.2, 1.9], "val_accuracy": [0.31, 0.5], "val_loss": [2.1, 1.8]}
BEGUN = {"trial_id": "0001", "run": "trial_0001", "parent": None, "bracket": 2, "round": 0, "initial_epoch": 0,
         "epochs": 2, "params": 8258, "flops": 197760, "spec": SPEC, "values": VALUES, "hyperparameters": HPS,
         "started": 1795924108.5356636}

# Every shape of trials/<id>.json that tuning/engine/tuner.py writes (run_trial, its callbacks,
# _build_and_fit_model and _after_trial), keys in the order they are filled in.
SHAPES = {
    "first round, completed": {
        **BEGUN, "epoch_seconds": [2.598, 0.235], "checkpoint_seconds": 0.037, "build_seconds": 0.328,
        "fit_seconds": 2.891, "history": HISTORY, "seconds": 3.61, "status": "COMPLETED", "val_accuracy": 0.5,
        "best_step": 1},
    "promoted, completed": {
        **BEGUN, "trial_id": "0004", "parent": "0001", "round": 1, "initial_epoch": 2, "epochs": 6,
        "epoch_seconds": [2.1, 0.2, 0.2, 0.2], "checkpoint_seconds": 0.08, "build_seconds": 0.3, "fit_seconds": 3.2,
        "history": HISTORY, "seconds": 4.0, "status": "COMPLETED", "val_accuracy": 0.75, "best_step": 5},
    "resumed after a kill, out of memory once": {
        **BEGUN, "resumed_from_epoch": 1, "epoch_seconds": [0.3], "checkpoint_seconds": 0.02,
        "oom_retry_batch_size": 32, "build_seconds": 0.7, "fit_seconds": 0.9, "history": HISTORY, "seconds": 2.5,
        "status": "COMPLETED", "val_accuracy": 0.6, "best_step": 1},
    "killed after its last epoch, before it was recorded": {
        **BEGUN, "resumed_from_epoch": 2, "seconds": 0.4, "status": "COMPLETED", "val_accuracy": 0.55,
        "best_step": 0},
    "failed: NaN loss": {
        **BEGUN, "epoch_seconds": [1.9], "checkpoint_seconds": 0.01, "build_seconds": 0.3, "fit_seconds": 1.9,
        "seconds": 2.4, "status": "FAILED", "val_accuracy": None, "best_step": 0,
        "error": "FailedTrialError: the loss became NaN in epoch 1 (learning rate 3.2); stopped by TerminateOnNaN"},
    "failed before its first epoch": {
        **BEGUN, "build_seconds": 0.0, "fit_seconds": 0.1, "seconds": 0.2, "status": "FAILED",
        "val_accuracy": None, "best_step": 0, "error": "ResourceExhaustedError: out of memory"},
    "ended without running (no record begun)": {
        "trial_id": "0009", "seconds": 0.0, "status": "FAILED", "val_accuracy": None, "best_step": None,
        "error": "ValueError: cannot build"},
}
DEFAULTS = {"initial_epoch": 0, "hyperparameters": {}, "epoch_seconds": [], "checkpoint_seconds": 0.0,
            "build_seconds": 0.0, "compile_seconds": 0.0, "fit_seconds": 0.0, "history": {}}


def file_text(data) -> str:
    """A trial file exactly as the search writes it."""
    return json.dumps(data, indent=2) + "\n"


@pytest.mark.parametrize("shape", SHAPES)
def test_every_existing_record_shape_round_trips(shape, tmp_path):
    original = SHAPES[shape]
    folder = RunFolder(tmp_path)
    (tmp_path / "trials").mkdir()
    (tmp_path / "trials" / f"{original['trial_id']}.json").write_text(file_text(original))
    (record,) = folder.records().values()
    assert record.to_dict() == {**{k: v for k, v in DEFAULTS.items() if k not in original}, **original}
    assert TrialRecord.from_dict(record.to_dict()) == record
    folder.save_record(record)
    again = (tmp_path / "trials" / f"{original['trial_id']}.json").read_text()
    if set(original) >= set(DEFAULTS):  # a record with every timing key: the very same bytes
        assert again == file_text(original)
    assert record.completed == (original["status"] == "COMPLETED")
    assert record_key(record) == rank_key(original.get("val_accuracy"), original.get("epochs"), original["trial_id"],
                                          original.get("status", "COMPLETED") == "COMPLETED")  # the file's rank


def test_to_dict_leaves_out_none_but_keeps_the_nulls_the_files_always_had():
    fresh = TrialRecord("0002")
    assert fresh.to_dict() == {"trial_id": "0002", **DEFAULTS}
    begun = TrialRecord("0002", run="trial_0002", epochs=2)
    assert begun.to_dict()["parent"] is None and "val_accuracy" not in begun.to_dict()
    ended = dataclasses.replace(begun, status="FAILED")
    assert ended.to_dict()["val_accuracy"] is None and ended.to_dict()["best_step"] is None
    assert "error" not in ended.to_dict() and "seconds" not in ended.to_dict()
    from tuning.run.records import FILE_ORDER as _FILE_ORDER

    assert set(_FILE_ORDER) == {f.name for f in dataclasses.fields(TrialRecord)}


def test_from_dict_of_an_old_file_ignores_unknown_keys_and_null_defaults():
    old = {"trial_id": "0003", "status": "COMPLETED", "val_accuracy": 0.9, "epochs": 3, "gpu_name": "x",
           "hyperparameters": None, "history": None, "fit_seconds": None}
    rec = TrialRecord.from_dict(old)
    assert rec == TrialRecord("0003", status="COMPLETED", val_accuracy=0.9, epochs=3)
    assert "gpu_name" not in rec.to_dict()
    assert rec.completed and not TrialRecord("0004", status="COMPLETED").completed


def test_write_is_atomic(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.write("run.json", {"space": "small", "seed": 0})
    assert json.loads(folder.run_json.read_text()) == {"space": "small", "seed": 0}
    assert folder.read("run.json") == {"space": "small", "seed": 0}
    with pytest.raises(TypeError):  # fails half-way through serialising: the old file stays whole
        folder.write("run.json", {"space": "other", "bad": object()})
    assert folder.read("run.json") == {"space": "small", "seed": 0}
    folder.write("run.json", {"space": "other"})
    assert folder.read("run.json") == {"space": "other"}
    assert sorted(p.name for p in folder.path.iterdir()) == ["run.json"]  # no temporary file left behind
    assert oct(folder.run_json.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_read_missing_unreadable_and_strict(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.read("best.json") is None and folder.read("best.json", strict=True) is None
    folder.best_json.write_text('{"trial_id": "00')  # cut short (only a person could leave this)
    assert folder.read("best.json") is None
    with pytest.raises(UsageError, match=r"best\.json is unreadable \(.*\); rerun the search to rewrite it"):
        folder.read("best.json", strict=True)


def test_records_skip_unreadable_files(tmp_path):
    folder = RunFolder(tmp_path)
    good = TrialRecord("0001", run="trial_0001", epochs=2, status="COMPLETED", val_accuracy=0.5, seconds=1.0)
    folder.save_record(good)
    (folder.trials_dir / "0002.json").write_text('{"trial_id": "0002", "sta')
    (folder.trials_dir / "0003.json").write_text("[1, 2]")
    (folder.trials_dir / "0004.json").write_text('{"status": "COMPLETED"}')
    (folder.trials_dir / ".0005.json.x1y2.tmp").write_text("{")  # a write in progress
    assert folder.records() == {"0001": good}
    assert RunFolder(tmp_path / "none").records() == {}


def test_clear_keeps_the_lock_it_holds(tmp_path):
    folder = RunFolder(tmp_path / "run")
    with folder.lock():
        for name in ("run.json", "best.json", "error.log"):
            (folder.path / name).write_text("{}")
        (folder.tuner_dir / "trial_0001").mkdir(parents=True)
        folder.checkpoint("0001").write_bytes(b"x")
        (folder.path / "link").symlink_to(folder.tuner_dir)
        folder.clear()
        assert [p.name for p in folder.path.iterdir()] == [LOCK_NAME]
        with pytest.raises(UsageError, match="in use by process"):
            folder.check_lock()  # still held
    folder.check_lock()


def test_paths_and_error_log(tmp_path):
    folder = RunFolder(tmp_path / "run")
    assert folder.name == "run" and not folder.exists()
    assert folder.checkpoint("0007") == tmp_path / "run" / "tuner" / "trial_0007" / "checkpoint.npz"
    assert folder.lock_path.name == LOCK_NAME and folder.report_dir == folder.path / "report"
    assert folder.append_error_log("Traceback 1\n") == folder.error_log
    folder.append_error_log("Traceback 2")
    text = folder.error_log.read_text()
    assert text.count(f"(pid {os.getpid()})") == 2 and "Traceback 1\n-----" in text and text.endswith("2\n")


def test_leaderboard_order_with_ties(tmp_path):
    recs = [
        TrialRecord("0005", epochs=6, status="COMPLETED", val_accuracy=0.9, hyperparameters={"depth": 2}),
        TrialRecord("0002", epochs=2, status="COMPLETED", val_accuracy=0.9, hyperparameters={"depth": 3}),
        TrialRecord("0001", epochs=2, status="COMPLETED", val_accuracy=0.9, hyperparameters={"depth": 2}),
        TrialRecord("0000", epochs=2, status="FAILED", error="NaN | loss", hyperparameters={"width": 1}),
        TrialRecord("0003", epochs=2, status="COMPLETED", val_accuracy=float("nan")),
        TrialRecord("0004", epochs=6, status="COMPLETED", val_accuracy=0.95),
        TrialRecord("0006", epochs=2, val_accuracy=0.8),  # no status: counts as completed, as in the files
    ]
    order = ["0004", "0001", "0002", "0005", "0006", "0000", "0003"]
    columns, rows = leaderboard_rows(recs)
    assert [r["trial_id"] for r in rows] == order
    assert [r["trial_id"] for r in leaderboard_rows(reversed(recs))[1]] == order  # never the input's order
    assert [r["trial_id"] for r in leaderboard_rows([TrialRecord.from_dict(r.to_dict()) for r in recs])[1]] == order
    assert sorted(reversed(recs), key=record_key)[0].trial_id == "0004"
    assert best_record(recs).trial_id == "0004" and best_record(recs[3:4]) is None
    assert columns[-3:] == ["depth", "width", "error"]
    folder = RunFolder(tmp_path)
    folder.write_leaderboard(recs)
    csv_lines = (tmp_path / "leaderboard.csv").read_text().splitlines()
    assert csv_lines[0] == ("trial_id,run,bracket,round,status,epochs,val_accuracy,params,flops,seconds,depth,width,"
                            "error")
    assert [line.split(",")[0] for line in csv_lines[1:]] == order
    assert csv_lines[6] == "0000,,,,FAILED,2,,,,,,1,NaN | loss"
    md = (tmp_path / "leaderboard.md").read_text().splitlines()
    assert md[0] == "# Leaderboard" and md[4].startswith("| trial_id | run |") and md[4].endswith("| error |")
    assert md[6] == "| 0004 |  |  |  | COMPLETED | 6 | 0.9500 |  |  |  |  |  |  |"
    assert md[11] == "| 0000 |  |  |  | FAILED | 2 |  |  |  |  |  | 1 | NaN / loss |"


def test_open_run_and_run(tmp_path):
    with pytest.raises(UsageError, match="does not exist; run `python -m tuning.search` first"):
        open_run(tmp_path / "missing")
    with pytest.raises(UsageError, match="is not a search results folder"):
        open_run(tmp_path)
    folder = RunFolder(tmp_path / "run")
    folder.write("run.json", {"space": "small"})
    with pytest.raises(UsageError, match="has no completed trial yet"):
        open_run(folder.path)
    assert open_run(folder.path, need_completed=False).completed() == []
    folder.save_record(TrialRecord("0001", epochs=2, status="COMPLETED", val_accuracy=0.7, values={"depth": 2}))
    folder.save_record(TrialRecord("0002", epochs=2, status="COMPLETED", val_accuracy=0.8))
    write_json(folder.trial_dir("0002") / "trial.json",
               {"hyperparameters": {"values": {"depth": 3, "tuner/epochs": 2}}})
    run = open_run(folder.path)
    assert run.run_dir == folder.path and run.name == "run" and run.best is None and run.summary is None
    assert run.best_trial_id() == "0002"
    assert run.values("0001") == {"depth": 2}
    assert run.values("0002") == {"depth": 3}  # keras-tuner's record, without its tuner/ keys
    assert run.checkpoint("0002") == folder.checkpoint("0002")
    folder.write("best.json", {"trial_id": "0001"})
    assert open_run(folder.path).best_trial_id() == "0001"  # best.json decides once written
    folder.summary_json.write_text("{")
    with pytest.raises(UsageError, match="summary.json is unreadable"):
        open_run(folder.path)


def test_importing_the_run_folder_and_the_export_imports_no_tensorflow():
    code = ("import sys, tuning.run.folder, tuning.run.opened, tuning.export.restore; "
            "print([m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'keras_tuner')])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
