"""Whole searches under ``--algorithm asha`` and ``bohb``: kill -9 and resume, the summary's
anytime curve and worker times, the report's anytime plot."""

import json
import signal
import time

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
    # The same folder under another algorithm is another run: refused in one line, nothing changed.
    code, _, err = run(*[a if a != "asha" else "bohb" for a in args])
    assert code == 2 and "algorithm 'asha' (now 'bohb')" in err and len(err.strip().splitlines()) == 1
