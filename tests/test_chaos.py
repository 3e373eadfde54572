"""The chaos test of the whole search (see tests/chaos.py): random SIGKILLs of the main process
or the trial process, each followed at once by the same command, must end as an uninterrupted run."""

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
