"""Run folders written by earlier versions of this package resume and export."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "run-9c47662"  # see its README.md


def _command(*args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TUNING_FAULTS", "KERAS_BACKEND")}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
                          capture_output=True, text=True, timeout=900)


def _records(run_dir: pathlib.Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((run_dir / "trials").glob("*.json"))}


def test_a_run_folder_from_before_the_split_by_concern_resumes_and_exports(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(FIXTURE / "results", results)
    run_dir = results / "tiny-digits"
    before = _records(run_dir)
    assert sorted(before) == ["0000", "0001", "0002"] and not (run_dir / "best.json").exists()

    done = _command("tuning.search", "--space", str(FIXTURE / "tiny.toml"), "--results-dir", str(results),
                    "--seed", "0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming {run_dir}: 3 of 5 trials already done" in done.stdout
    after = _records(run_dir)
    assert sorted(after) == ["0000", "0001", "0002", "0003", "0004"]
    assert {k: after[k] for k in before} == before  # the earlier trials' records, as they were
    assert after["0003"]["resumed_from_epoch"] == 1  # the interrupted trial went on after its first epoch
    assert all(r["status"] == "COMPLETED" for r in after.values())
    # A run from before objectives resumes as val_accuracy, and its new trials say so.
    assert all(after[k]["objective"] == "val_accuracy" and after[k]["score"] == after[k]["val_accuracy"]
               for k in ("0003", "0004"))
    best = json.loads((run_dir / "best.json").read_text())
    assert json.loads((run_dir / "summary.json").read_text())["trials"] == 5

    exported = _command("tuning.export", str(run_dir), "--format", "keras")
    assert exported.returncode == 0, exported.stderr[-3000:]
    card = json.loads((run_dir / "export" / "model_card.json").read_text())
    assert card["trial_id"] == best["trial_id"]
    assert card["test_accuracy"] == pytest.approx(best["test_accuracy"], abs=1e-6)
