"""Best validation accuracy against wall time (`tuning.report.curves.anytime_curve`), in the report and across
runs (`tuning.report.comparison.write_comparison`), on fake run folders: JSON files only, no training."""

import json
import math
import os
import pathlib
import struct
import subprocess
import sys

import numpy as np
import pytest

from tuning.report import write_comparison, write_report
from tuning.report.__main__ import main
from tuning.report.curves import algorithm_bands, anytime_curve, best_at, curve_from_records, time_to_best
from tuning.run.opened import open_run
from tuning.run.records import TrialRecord

ROOT = pathlib.Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# (trial_id, started, seconds, status, val_accuracy): they end at 5, 10, 25, 15 s after the first start (100);
# 0005 is still running (no seconds) and is left out.
TRIALS = [("0001", 100.0, 5.0, "FAILED", None), ("0002", 100.0, 10.0, "COMPLETED", 0.5),
          ("0003", 105.0, 20.0, "COMPLETED", 0.9), ("0004", 110.0, 5.0, "COMPLETED", 0.8),
          ("0005", 130.0, None, None, None)]
FROM_RECORDS = [(5.0, None), (10.0, 0.5), (15.0, 0.8), (25.0, 0.9)]
ANYTIME = [[3.0, None], [12.5, 0.6], [20.0, 0.6], [31.0, 0.95]]
WORKERS = {"count": 2, "wall_seconds": 120.0, "busy_share": 0.75,
           "per_worker": {"tuner0": {"busy_seconds": 90.0, "idle_seconds": 30.0, "trials": 3},
                          "tuner1": {"busy_seconds": 90.0, "idle_seconds": 30.0, "trials": 1}}}


def make_run(root: pathlib.Path, name: str, trials=TRIALS, summary: dict | None = None, seed: int = 0):
    """A run folder with run.json, trials/<id>.json and (when given) summary.json."""
    folder = root / name
    (folder / "trials").mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"space": "small", "dataset": "digits", "seed": seed,
                                                 "max_epochs": 3, "factor": 3, "iterations": 1}))
    for i, (tid, started, seconds, status, val) in enumerate(trials):
        rec = TrialRecord(trial_id=tid, run=f"trial_{tid}", bracket=0, round=0, epochs=1, params=1000 * (i + 1),
                          flops=20000 * (i + 1), hyperparameters={"depth": 2 + i % 2, "learning_rate": 0.01 * (i + 1)},
                          started=started, seconds=seconds, status=status, val_accuracy=val,
                          history={"val_accuracy": [val]} if val is not None else {})
        (folder / "trials" / f"{tid}.json").write_text(json.dumps(rec.to_dict()))
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps({"name": name, "seed": seed, **summary}))
    return folder


def finished(root, name, *, algorithm=None, seed=0, anytime=ANYTIME, test=0.93, workers=None):
    """A finished run: a summary.json as the search writes it (optionally without the newer keys)."""
    best = max(v for _, v in anytime if v is not None)
    summary = {"trials": len(anytime), "wall_seconds": anytime[-1][0] + 4, "best_val_accuracy": best,
               "best_test_accuracy": test, "anytime": anytime}
    if algorithm is not None:
        summary["algorithm"] = algorithm
    if workers is not None:
        summary["workers"] = workers
    return make_run(root, name, summary=summary, seed=seed)


def png_size(path: pathlib.Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    return struct.unpack(">II", data[16:24])


def table_rows(md: str) -> dict[str, list[str]]:
    """The comparison table's rows by run name (cells stripped)."""
    rows = [line.strip("|").split("|") for line in md.splitlines() if line.startswith("| ")]
    header, body = [c.strip() for c in rows[0]], rows[1:]
    assert header[0] == "run"
    return {cells[0].strip(): [c.strip() for c in cells] for cells in body}


# ----- the curve -----------------------------------------------------------------------------------
def test_curve_from_summary_first(tmp_path):
    run = open_run(make_run(tmp_path, "r", summary={"anytime": ANYTIME}))
    curve = anytime_curve(run)
    assert curve == [(3.0, None), (12.5, 0.6), (20.0, 0.6), (31.0, 0.95)]
    assert all(isinstance(t, float) for t, _ in curve)
    assert time_to_best(curve) == (31.0, 0.95)


@pytest.mark.parametrize("summary", [None, {"trials": 4}, {"anytime": []}], ids=["no summary", "older", "empty"])
def test_curve_from_records_when_summary_lacks_it(tmp_path, summary):
    run = open_run(make_run(tmp_path, "r", summary=summary))
    assert anytime_curve(run) == FROM_RECORDS
    assert curve_from_records(run.records.values()) == FROM_RECORDS
    assert time_to_best(FROM_RECORDS) == (25.0, 0.9)


def test_curve_null_entries_and_edges():
    assert time_to_best([(1.0, None), (2.0, None)]) is None
    assert time_to_best([(1.0, None), (2.0, 0.7), (3.0, 0.9), (4.0, 0.9)]) == (3.0, 0.9)  # first reached
    assert curve_from_records([]) == []
    failed = TrialRecord(trial_id="0001", started=50.0, seconds=2.0, status="FAILED")
    assert curve_from_records([failed]) == [(2.0, None)]
    # Best so far at given times: NaN before a trial completed, the last value after the run's end.
    got = best_at([(5.0, None), (10.0, 0.5), (15.0, 0.8)], [0, 5, 9.9, 10, 14, 15, 100])
    np.testing.assert_array_equal(got, [np.nan, np.nan, np.nan, 0.5, 0.5, 0.8, 0.8])
    assert np.isnan(best_at([], [1.0])).all()


def test_algorithm_bands_median_and_quartiles():
    a = [(10.0, 0.5), (20.0, 0.8)]
    b = [(5.0, None), (15.0, 0.6), (30.0, 0.9)]
    times = [0, 10, 15, 20, 30]
    bands = algorithm_bands({"hyperband": [a, b], "asha": [a]}, times)
    assert list(bands) == ["hyperband"]  # one run of asha: no band
    med, lo, hi = bands["hyperband"]
    np.testing.assert_allclose(med, [np.nan, np.nan, 0.55, 0.7, 0.85])  # NaN until both runs have a value
    np.testing.assert_allclose(lo, [np.nan, np.nan, 0.525, 0.65, 0.825])
    np.testing.assert_allclose(hi, [np.nan, np.nan, 0.575, 0.75, 0.875])


# ----- the report ----------------------------------------------------------------------------------
def test_report_has_anytime_section_and_png(tmp_path):
    run_dir = finished(tmp_path, "asha-run", algorithm="asha", workers=WORKERS)
    out = write_report(run_dir)
    assert png_size(out / "anytime.png")[0] >= 600
    md = (out / "report.md").read_text()
    section = md.split("## Best validation accuracy against wall time\n", 1)[1].split("\n## ", 1)[0]
    assert "![anytime](anytime.png)" in section
    assert "Algorithm: asha" in section and "from summary.json" in section
    assert "Best 0.9500, first reached after 31 s (0:00:31)" in section
    assert "Workers: 2, busy 75% of the time" in section
    assert "| tuner0 | 90 | 30 | 3 |" in section and "| tuner1 | 90 | 30 | 1 |" in section
    assert 'src="anytime.png"' in (out / "report.html").read_text()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_report_of_older_run_uses_records(tmp_path):
    out = write_report(make_run(tmp_path, "old", summary=None))
    assert png_size(out / "anytime.png")[0] >= 600
    md = (out / "report.md").read_text()
    section = md.split("## Best validation accuracy against wall time\n", 1)[1].split("\n## ", 1)[0]
    assert "Algorithm: hyperband" in section and "from the trial records" in section
    assert "Best 0.9000, first reached after 25 s" in section
    assert "Workers:" not in section and "| worker |" not in section


def test_report_one_worker_has_no_table(tmp_path):
    one = {"count": 1, "wall_seconds": 35.0, "busy_share": 0.9,
           "per_worker": {"tuner0": {"busy_seconds": 31.5, "idle_seconds": 3.5, "trials": 4}}}
    md = (write_report(finished(tmp_path, "solo", workers=one)) / "report.md").read_text()
    assert "Workers: 1, busy 90% of the time" in md and "| worker |" not in md


# ----- across runs ---------------------------------------------------------------------------------
def test_comparison_of_two_runs(tmp_path):
    finished(tmp_path, "hb", seed=0, workers=WORKERS)  # no "algorithm": Hyperband
    finished(tmp_path, "as", algorithm="asha", seed=1, test=0.97,
             anytime=[[2.0, 0.4], [8.0, 0.85], [250.0, 0.85]])
    make_run(tmp_path, "unfinished", summary=None)  # no summary.json: not compared
    (tmp_path / "notes").mkdir()
    md_path = write_comparison(tmp_path)
    assert md_path == tmp_path / "comparison.md"
    assert png_size(tmp_path / "comparison.png")[0] >= 600
    md = md_path.read_text()
    assert "![comparison](comparison.png)" in md and "median" not in md  # one run per algorithm: no band
    rows = table_rows(md)
    assert set(rows) == {"hb", "as"}
    assert rows["hb"] == ["hb", "hyperband", "val_accuracy", "0", "4", "0:00:35", "0.9500", "0.9300", "0:00:31", "75%"]
    assert rows["as"] == ["as", "asha", "val_accuracy", "1", "3", "0:04:14", "0.8500", "0.9700", "0:00:08", ""]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_no_comparison_for_one_run(tmp_path):
    finished(tmp_path, "only")
    make_run(tmp_path, "unfinished", summary=None)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert write_comparison(tmp_path) is None
    assert write_comparison(tmp_path / "missing") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_comparison_median_band_when_runs_share_an_algorithm(tmp_path):
    finished(tmp_path, "bohb-0", algorithm="bohb", seed=0, anytime=[[10.0, 0.5], [20.0, 0.8]])
    finished(tmp_path, "bohb-1", algorithm="bohb", seed=1, anytime=[[5.0, None], [15.0, 0.6], [30.0, 0.9]])
    finished(tmp_path, "hb-0", seed=0)
    md = write_comparison(tmp_path).read_text()
    assert "median and interquartile range" in md
    width, _ = png_size(tmp_path / "comparison.png")
    assert width >= 1300  # two panels
    rows = table_rows(md)
    assert [rows[n][1:4:2] for n in ("bohb-0", "bohb-1", "hb-0")] == [["bohb", "0"], ["bohb", "1"], ["hyperband", "0"]]
    assert rows["bohb-1"][8] == "0:00:30" and rows["bohb-0"][6] == "0.8000"


def test_cli_on_a_results_folder(tmp_path):
    finished(tmp_path, "a", seed=0)
    finished(tmp_path, "b", algorithm="asha", seed=1)
    proc = subprocess.run([sys.executable, "-m", "tuning.report", str(tmp_path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"comparison: {tmp_path / 'comparison.md'}" in proc.stdout
    assert png_size(tmp_path / "comparison.png")[0] >= 600
    assert not (tmp_path / "a" / "report").exists()  # a folder of runs is compared, not reported


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    finished(tmp_path, "only")
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "1 finished run(s) (only)" in err and "at least 2" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "comparison.md").exists()
    # A run folder itself still gets its report.
    assert main([str(tmp_path / "only")]) == 0
    assert "report:" in capsys.readouterr().out and (tmp_path / "only" / "report" / "anytime.png").exists()
    assert math.isclose(0.95, max(v for _, v in anytime_curve(open_run(tmp_path / "only")) if v is not None))
