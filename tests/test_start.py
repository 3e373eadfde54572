"""Starting from what is known: --try and [[try]], --warm-start (and BOHB's evidence from it)."""

import json
import random
import textwrap

import keras_tuner as kt
import pytest

from search_spaces import Sampler, load_space, parse_space
from search_spaces.loader import SpaceError
from tuning.config import SearchConfig
from tuning.engine.algorithms import make_oracle
from tuning.errors import UsageError

from .test_budget import _search
from .test_spaces import FIVE_HALVINGS

TRIES = textwrap.dedent("""
    [[try]]
    name = "six wide"
    depth = 6
    stages = 3
    downsample_at = "3,5"
    base_filters = 8
    optimizer = "adam"

    [[try]]
    name = "too deep"
    depth = 9
    """)


def test_known_configurations_become_values_of_the_space_or_say_why_not():
    cifar = Sampler(load_space("cifar"), (32, 32, 3), 10)
    values, reason = cifar.values_from({"zoo": "cifar_resnet56"})
    assert reason is None and cifar.spec(values).stage_depths == (9, 9, 9)
    assert cifar.describe(values)["layers"] == 56

    small = Sampler(load_space("small"), (8, 8, 1), 10)
    assert small.values_from({"zoo": "cifar_resnet20"}) == (None, "depth = 9 is not in this space: one of 2, 3, 4, 6")
    assert small.values_from({"zoo": "resnet18"})[1] == "stem = 'imagenet' is not in this space: one of cifar"
    values, reason = small.values_from({"depth": 4, "stages": 2, "downsample_at": "3", "learning_rate": 0.05,
                                        "optimizer": "sgd"})
    assert reason is None and small.spec(values).stage_depths == (2, 2)
    offered = small.canonical(values)["learning_rate"]  # the space offers a log range as values: the nearest
    assert abs(offered - 0.05) < 0.01 and values["batch_size"] == 32  # a value not given: the space's default
    assert small.values_from({"depth": 4, "learning_rate": 5.0})[1].startswith("learning_rate = 5.0 is not in this")
    wide = small.values_from({"depth": 6, "stages": 3, "base_filters": 32, "growth": 2.0, "block": "bottleneck"})
    assert wide[0] is None and "over max_params" in wide[1]  # valid values, but over the space's cost limits


def test_try_tables_are_checked_when_the_space_is_read(tmp_path):
    space = parse_space(FIVE_HALVINGS + TRIES, tmp_path / "s.toml")
    assert [t["name"] for t in space.tries] == ["six wide", "too deep"]
    with pytest.raises(SpaceError, match=r"\[\[try\]\] number 1 has unknown key\(s\) \['deepth'\]"):
        parse_space(FIVE_HALVINGS + "[[try]]\ndeepth = 6\n", tmp_path / "s.toml")
    with pytest.raises(SpaceError, match=r"zoo = 'resnet7' is not a zoo name"):
        parse_space(FIVE_HALVINGS + "[[try]]\nzoo = \"resnet7\"\n", tmp_path / "s.toml")


def test_try_names_and_warm_starts_are_checked(tiny_space, tmp_path):
    assert SearchConfig(space=tiny_space, tries=("resnet20", "resnet18")).resolve()[0].tries == (
        "cifar_resnet20", "resnet18")
    with pytest.raises(UsageError, match="try 'resnet7' is not an architecture of the zoo: choose from resnet18"):
        SearchConfig(space=tiny_space, tries=("resnet7",)).resolve()
    with pytest.raises(UsageError, match="is not a search run \\(it has no run.json\\)"):
        SearchConfig(space=tiny_space, warm_start=str(tmp_path)).resolve()


def _oracle(directory, algorithm="hyperband"):
    from .test_oracle import space

    oracle = make_oracle(algorithm, objective=kt.Objective("val_accuracy", "max"), max_epochs=9, factor=3,
                         hyperband_iterations=1, seed=1, hyperparameters=space())
    oracle._set_project_dir(str(directory), "tuner")
    oracle._display.verbose = 0
    return oracle


def _first_values(oracle, n):
    """The values of the next `n` new configurations (promotions run but are not counted)."""
    out = []
    while len(out) < n:
        trial = oracle.create_trial("tuner0")
        if not trial.hyperparameters.values.get("tuner/round"):
            out.append({k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")})
        oracle.update_trial(trial.trial_id, {"val_accuracy": random.Random(trial.trial_id).random()}, step=1)
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    return out


@pytest.mark.parametrize("algorithm", ["hyperband", "bohb", "asha"])
def test_known_configurations_are_drawn_first_and_the_random_draws_follow_unchanged(tmp_path, algorithm):
    cold = _first_values(_oracle(tmp_path / "cold", algorithm), 6)
    known = [{"block": "bottleneck", "depth": 8, "optimizer": "adam"}, dict(cold[0])]  # the second: already drawn
    oracle = _oracle(tmp_path / "warm", algorithm)
    oracle.seeded = known
    first = _first_values(oracle, 2)
    again = _oracle(tmp_path / "warm", algorithm)  # a fresh process goes on from the oracle's state
    again.reload()
    assert again.seeded_used == 2
    rest = _first_values(again, 4)
    assert first == known and rest == cold[1:5]  # a known one already drawn is not drawn twice


def test_a_warm_start_and_tries_start_a_new_search(finished_run, tiny_space, tmp_path):
    _, _, results = finished_run
    earlier = results / "tiny-digits"
    space = tmp_path / "tries.toml"
    space.write_text(FIVE_HALVINGS + TRIES)
    done = _search("--space", str(space), "--results-dir", str(tmp_path / "r"), "--seed", "1", "--algorithm", "bohb",
                   "--warm-start", str(earlier), "--try", "resnet20")
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "r" / "tries-digits"
    start = json.loads((run / "run.json").read_text())["start"]
    records = [json.loads((earlier / "trials" / f"{i:04d}.json").read_text()) for i in range(5)]
    best_earlier = max((r for r in records if r["status"] == "COMPLETED"),
                       key=lambda r: (r["score"], -r["epochs"], -int(r["trial_id"])))
    assert start["warm_start"] == str(earlier) and start["tried_first"][0] == "six wide"
    assert start["tried_first"][1] == f"trial {best_earlier['trial_id']} of tiny-digits"
    assert start["left_out"][:2] == ["too deep (depth = 9 is not in this space: one of 2, 6)",
                                     "cifar_resnet20 (depth = 9 is not in this space: one of 2, 6)"]
    assert start["model_evidence"] == sum(r["status"] == "COMPLETED" for r in records)
    # the [[try]] table, then as many of the earlier run's best as the first round holds (2 here)
    assert len(start["tried_first"]) == 3
    assert "first: 3 known configuration(s) before any random draw: six wide, trial" in done.stdout
    assert "left out 2 that do not fit this space or input: too deep (depth = 9" in done.stdout
    trial0 = json.loads((run / "trials" / "0000.json").read_text())["hyperparameters"]
    assert (trial0["depth"], trial0["downsample_at"], trial0["base_filters"], trial0["optimizer"]) == (6, "3,5", 8,
                                                                                                       "adam")
    trial1 = json.loads((run / "trials" / "0001.json").read_text())["hyperparameters"]
    assert {k: trial1[k] for k in ("depth", "block", "base_filters", "preact", "shortcut")} == {
        k: best_earlier["hyperparameters"][k] for k in ("depth", "block", "base_filters", "preact", "shortcut")}
    assert "| started from | six wide, trial " in (run / "report" / "report.md").read_text()
    oracle = json.loads((run / "tuner" / "oracle.json").read_text())
    assert len(oracle["prior"]) == start["model_evidence"] and oracle["seeded_used"] == 3

    # Resumed with another warm start: the run keeps where it started from, and says so.
    again = _search("--space", str(space), "--results-dir", str(tmp_path / "r"), "--seed", "1", "--algorithm", "bohb")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"note: {run} started from {earlier}; --warm-start applies when a run starts" in again.stdout
