"""Whole searches under ``--algorithm asha`` and ``bohb``: kill -9 and resume, the summary's
anytime curve and worker times, the report's anytime plot."""

import json
import signal
import time

import pytest

from .test_reliability import cli, released, run
from .test_spaces import FIVE_HALVINGS


def resume_epochs(run_dir):
    """{trial: last completed epoch} of the trials that are running now."""
    out = {}
    for p in (run_dir / "tuner").glob("trial_*/resume.json"):
        try:
            out[p.parent.name] = json.loads(p.read_text())["epoch"]
        except (OSError, ValueError, KeyError):
            pass
    return out


def test_asha_search_killed_with_9_resumes_and_spends_its_budget(tmp_path):
    space = tmp_path / "asha.toml"
    space.write_text(FIVE_HALVINGS.replace("max_epochs = 2", "max_epochs = 3").replace("factor = 2", "factor = 3"))
    results = tmp_path / "results"
    args = ["--space", str(space), "--results-dir", str(results), "--algorithm", "asha", "--seed", "0"]
    run_dir = results / "asha-digits"
    # Rungs of 1 and 3 epochs: whichever trial first trains epoch 2 of 3 (a promoted one) stops
    # after it: kill there.
    first = cli(*args, faults={f"{i:04d}": "hang@1" for i in range(100)})
    t0 = time.time()
    while 1 not in resume_epochs(run_dir).values():
        assert first.poll() is None, first.communicate()[1][-3000:]
        assert time.time() - t0 < 300
        time.sleep(0.2)
    killed = next(t for t, e in resume_epochs(run_dir).items() if e == 1).removeprefix("trial_")
    time.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    first.wait()

    code, out, err = run(*args)  # the same command at once
    assert code == 0, err[-3000:]
    assert "resuming" in out and released(run_dir)
    records = {p.stem: json.loads(p.read_text()) for p in (run_dir / "trials").glob("*.json")}
    assert records[killed]["resumed_from_epoch"] == 2 and records[killed]["round"] == 1
    assert records[killed]["parent"] is not None and records[records[killed]["parent"]]["round"] == 0
    assert all(r["status"] == "COMPLETED" for r in records.values())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["algorithm"] == "asha" and summary["trials"] == len(records)
    asha = summary["asha"]
    assert asha["rungs"] == [1, 3] and asha["budget_epochs"] <= asha["epochs_started"] < asha["budget_epochs"] + 3
    assert asha["epochs_started"] == sum(r["epochs"] - r["initial_epoch"] for r in records.values())
    anytime = summary["anytime"]
    assert len(anytime) == len(records) and [t for t, _ in anytime] == sorted(t for t, _ in anytime)
    assert anytime[-1][1] == summary["best_val_accuracy"] and anytime[-1][0] <= summary["wall_seconds"]
    workers = summary["workers"]
    assert workers["count"] == 1 and 0 < workers["busy_share"] <= 1
    assert (run_dir / "report" / "anytime.png").stat().st_size > 1000
    assert json.loads((run_dir / "run.json").read_text())["algorithm"] == "asha"
    # The best trial's checkpoint was kept: its model exports and scores as the search said.
    from tuning.export import export

    card = export(run_dir, formats=("keras",), command="test", log=lambda s: None).card
    assert card["trial_id"] == summary["best_trial"]
    assert card["test_accuracy"] == pytest.approx(summary["best_test_accuracy"], abs=1e-6)
    # The same folder under another algorithm is another run: refused in one line, nothing changed.
    code, _, err = run(*[a if a != "asha" else "bohb" for a in args])
    assert code == 2 and "algorithm 'asha' (now 'bohb')" in err and len(err.strip().splitlines()) == 1


def test_the_anytime_curve_counts_the_runs_own_wall_time_and_workers_busy_time():
    from tuning.run.records import TrialRecord
    from tuning.run.sessions import anytime_points as anytime_curve
    from tuning.run.sessions import run_elapsed
    from tuning.search.finish import worker_time

    # Two sessions of one run, an hour apart: the hour between them is not the run's time.
    sessions = [{"t0": 1000.0, "wall_seconds": 100.0}, {"t0": 5000.0, "wall_seconds": 50.0}]
    assert run_elapsed(sessions, 1030.0) == 30.0 and run_elapsed(sessions, 5010.0) == 110.0
    records = [
        TrialRecord("0000", started=1000.0, seconds=20.0, status="COMPLETED", val_accuracy=0.5, worker="tuner0"),
        TrialRecord("0001", started=1010.0, seconds=50.0, status="FAILED", worker="tuner1"),
        TrialRecord("0002", started=5000.0, seconds=30.0, status="COMPLETED", val_accuracy=0.7, worker="tuner0"),
        TrialRecord("0003", started=1020.0, seconds=10.0, status="COMPLETED", val_accuracy=0.4, worker="tuner1"),
    ]
    assert anytime_curve(records, sessions) == [[20.0, 0.5], [30.0, 0.5], [60.0, 0.5], [130.0, 0.7]]
    assert anytime_curve(records[1:2], sessions) == [[60.0, None]]  # no best before a trial completed
    workers = worker_time(records, 150.0)
    assert workers["count"] == 2 and workers["busy_share"] == round(110 / 300, 3)
    assert workers["per_worker"]["tuner0"] == {"busy_seconds": 50.0, "trials": 2, "idle_seconds": 100.0}
    assert workers["per_worker"]["tuner1"] == {"busy_seconds": 60.0, "trials": 2, "idle_seconds": 90.0}


def test_a_worker_counts_the_runs_time_as_its_chief_keeps_it(tmp_path):
    """A worker process (started at any moment: hand-overs, restarts) reports the run's elapsed
    time from the chief's saved sessions, not its own age."""
    import time

    from tuning.run.folder import RunFolder
    from tuning.run.sessions import Sessions

    folder = RunFolder(tmp_path)
    now = time.time()
    folder.write("state.json", {"sessions": [{"t0": now - 500, "wall_seconds": 100.0, "role": "chief"},
                                             {"t0": now - 30, "wall_seconds": 28.0, "role": "chief"}]})
    worker = Sessions(folder, "worker", t_start=now - 2, resuming=False)
    assert 129 < worker.elapsed() < 131  # 100 s before the kill, 30 s of the chief's current session
    worker.save()  # a worker never writes the chief's books
    assert len(folder.read("state.json")["sessions"]) == 2
    (tmp_path / "state.json").unlink()  # no books yet (another host's chief): its own time
    assert 1.9 < worker.elapsed() < 3


def test_a_distributed_runs_wall_time_starts_with_the_command(monkeypatch, tmp_path):
    """The chief counts the run's time from when the command started, as a standalone search
    does, not from its own start (which comes after its imports)."""
    from tuning.processes.protocol import parser
    from tuning.search import workers as distributed

    seen = {}

    def chief(name, cmd, env, out, lock_fd):
        seen["args"] = parser().parse_args(cmd[3:])
        raise RuntimeError("stop here")

    monkeypatch.setattr(distributed, "_named", chief)
    class Seat:  # a worker that never got "go"
        waiting = True

        def close(self):
            pass

    monkeypatch.setattr(distributed, "_worker_seat", lambda *a: Seat())
    monkeypatch.setattr(distributed, "listening", lambda *a: True)
    from tuning.config import SearchConfig
    from tuning.run.folder import RunFolder

    with pytest.raises(RuntimeError, match="stop here"):
        distributed.launch(RunFolder(tmp_path), SearchConfig(), 2, print, 0, False, started=1234.5)
    assert seen["args"].role == "chief" and seen["args"].started == 1234.5
