"""The search's config, its command line, and the child-process protocol."""

import dataclasses
import pathlib

import pytest

from tuning.config import SearchConfig
from tuning.errors import DataError, SearchError, SystematicFailure, UsageError
from tuning.processes.protocol import command_args, raise_outcome, read_outcome, write_outcome
from tuning.processes.protocol import parser as trial_process_parser
from tuning.search.cli import build_parser, config_from_args


def test_command_line_defaults_are_the_config_defaults():
    assert config_from_args(build_parser().parse_args([])) == SearchConfig()
    args = build_parser().parse_args(["--seed", "3", "--image-size", "16", "--no-jit", "--recycle-mb", "0"])
    assert config_from_args(args) == SearchConfig(seed=3, image_size=(16, 16), jit=False, recycle_mb=0)


def test_resolve_fills_the_space_defaults_and_round_trips(tiny_space):
    cfg, space = SearchConfig(space=tiny_space, results_dir=pathlib.Path("r"), image_size=8).resolve()
    assert (cfg.max_epochs, cfg.factor, cfg.iterations) == (space.max_epochs, space.factor, space.iterations)
    assert cfg.dataset == space.dataset and cfg.name == f"{space.name}-{space.dataset}"
    assert cfg.image_size == (8, 8) and cfg.results_dir == "r" and cfg.run_dir == pathlib.Path("r", cfg.name)
    assert SearchConfig.from_dict(cfg.to_dict()) == cfg
    assert SearchConfig.from_dict({**cfg.to_dict(), "from_a_newer_version": 1}) == cfg
    assert cfg.identity(space.name)["image_size"] == [8, 8]


@pytest.mark.parametrize("change, word", [
    ({"factor": 1}, "factor"), ({"max_epochs": 0}, "max_epochs"), ({"seed": -1}, "seed"),
    ({"recycle_mb": True}, "recycle_mb"), ({"precision": "fp8"}, "precision"), ({"strategy": "ring"}, "strategy"),
    ({"gpus": "a"}, "gpus"), ({"name": "a/b"}, "name"), ({"image_size": (0, 8)}, "image_size"),
])
def test_bad_values_are_refused_naming_the_option(change, word):
    with pytest.raises(UsageError, match=word):
        SearchConfig(**change).resolve()


def test_an_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="max_epoch"):
        SearchConfig().replace(max_epoch=3)


def test_a_child_gets_its_role_and_folder_from_its_arguments():
    args = trial_process_parser().parse_args(command_args("results/x", "worker", outcome="o.json", handover=True,
                                                          started=12.5))
    assert (args.run_dir, args.role, args.outcome, args.handover, args.started) == ("results/x", "worker",
                                                                                   "o.json", True, 12.5)
    assert not (args.resuming or args.continuing or args.standby or args.config)
    assert trial_process_parser().parse_args(command_args("results/x", "worker", config="c.json")).config == "c.json"
    assert trial_process_parser().parse_args(command_args("results/x", "worker", standby="imported")).standby == \
        "imported"
    with pytest.raises(SystemExit):
        trial_process_parser().parse_args(["results/x", "--role", "boss"])


def test_an_interrupted_worker_says_nothing_more_than_that_it_was_interrupted(monkeypatch, capsys):
    """A worker or chief (no outcome file) stopped by Ctrl-C has logged where it stopped: no
    empty "error:" line after it."""
    from tuning.errors import EXIT_INTERRUPTED as INTERRUPTED_EXIT
    from tuning.search import trial_process

    def interrupted(args, t_start):
        raise KeyboardInterrupt

    monkeypatch.setattr(trial_process, "run", interrupted)
    assert trial_process.main(["results/x", "--role", "worker"]) == INTERRUPTED_EXIT
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("error", [UsageError("bad --x"), DataError("no images"), SystematicFailure("same error"),
                                   SearchError("boom", "Traceback ...")])
def test_an_outcome_is_raised_again_as_the_same_error(tmp_path, error):
    write_outcome(tmp_path / "o.json", error)
    with pytest.raises(type(error), match=str(error)) as raised:
        raise_outcome(read_outcome(tmp_path / "o.json"), 1, "killed")
    assert getattr(raised.value, "details", "") == getattr(error, "details", "")


def test_no_word_from_a_child_is_a_search_error_and_ctrl_c_is_an_interrupt(tmp_path):
    assert read_outcome(tmp_path / "missing.json") == {}
    with pytest.raises(SearchError, match="was killed"):
        raise_outcome({}, -9, "the trial process was killed by SIGKILL")
    with pytest.raises(KeyboardInterrupt):
        raise_outcome({}, 130, "")
    write_outcome(tmp_path / "o.json", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        raise_outcome(read_outcome(tmp_path / "o.json"), 1, "")


def test_every_config_field_has_a_command_line_option():
    dests = {a.dest for a in build_parser()._actions}
    assert {f.name for f in dataclasses.fields(SearchConfig)} <= dests
