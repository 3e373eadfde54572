"""The chaos test of the whole search (see tests/chaos.py): random SIGKILLs of the main process
or the trial process, each followed at once by the same command, must end as an uninterrupted run."""

import json
import random

import pytest

from . import chaos


@pytest.mark.slow
def test_kill_9_at_random_moments_ends_as_an_uninterrupted_run(tmp_path):
    space = tmp_path / "chaos.toml"
    space.write_text(chaos.SPACE)
    reference, wall = chaos.uninterrupted(space, tmp_path / "reference", 0)
    scores = [t["val_accuracy"] for t in chaos.trials(reference).values() if t["status"] == "COMPLETED"]
    assert scores.count(max(scores)) > 1  # rounded scores: the best is a tie
    rng = random.Random(20261128)
    for i in range(2):
        run_dir, events = chaos.chaotic(space, tmp_path / f"run{i}", 0, rng, kills=3, log=lambda line: None,
                                        wall=wall, total=len(chaos.trials(reference)))
        assert sum("killed" in e for e in events) == 3
        chaos.check_same(run_dir, reference)


@pytest.mark.slow
def test_asha_killed_at_random_moments_ends_as_an_uninterrupted_run(tmp_path):
    """ASHA decides what runs next from the results so far, promoting as soon as it can: its
    books must come back from any kill as they were."""
    space = tmp_path / "chaos.toml"
    space.write_text(chaos.SPACE)
    reference, wall = chaos.uninterrupted(space, tmp_path / "reference", 0, "asha")
    assert any(t["parent"] for t in chaos.trials(reference).values())  # it promoted
    run_dir, events = chaos.chaotic(space, tmp_path / "run", 0, random.Random(20261130), kills=3,
                                    log=lambda line: None, wall=wall, total=len(chaos.trials(reference)),
                                    algorithm="asha")
    assert sum("killed" in e for e in events) == 3
    chaos.check_same(run_dir, reference)


@pytest.mark.slow
def test_a_warm_started_bohb_search_with_a_time_budget_killed_at_random_moments_ends_as_an_uninterrupted_run(
        tmp_path):
    """Kills during the calibration, the plan and the seeding of known configurations too (they
    come first): the run keeps its plan and its first configurations, and BOHB its evidence.
    The budget is generous and --iterations 1 caps it, so both end by the cap."""
    space = tmp_path / "chaos.toml"
    space.write_text(chaos.SPACE)
    source, _ = chaos.uninterrupted(space, tmp_path / "source", 1, "bohb")
    extra = ("--time-budget", "20m", "--warm-start", str(source))
    reference, wall = chaos.uninterrupted(space, tmp_path / "reference", 0, "bohb", extra=extra)
    start = json.loads((reference / "run.json").read_text())["start"]
    assert start["tried_first"] and start["model_evidence"] > 0
    # The reference's start-up includes the calibration, which `uninterrupted` counts once a trial:
    # half its estimate keeps the kills within the run.
    run_dir, events = chaos.chaotic(space, tmp_path / "run", 0, random.Random(20261203), kills=3,
                                    log=lambda line: None, wall=wall / 2, total=len(chaos.trials(reference)),
                                    algorithm="bohb", extra=extra)
    assert sum("killed" in e for e in events) == 3
    chaos.check_same(run_dir, reference)
    assert json.loads((run_dir / "run.json").read_text())["start"]["tried_first"] == start["tried_first"]
