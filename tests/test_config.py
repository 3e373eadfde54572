"""The search's config, its command line, the child-process protocol, and the engine's shape."""

import ast
import dataclasses
import pathlib

import pytest

from tuning.cli import build_parser, config_from_args
from tuning.config import SearchConfig
from tuning.engine.trial_process import _parser as trial_process_parser
from tuning.engine.trial_process import command_args
from tuning.errors import DataError, SearchError, SystematicFailure, UsageError
from tuning.outcome import raise_outcome, read_outcome, write_outcome

ROOT = pathlib.Path(__file__).resolve().parents[1]


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
    from tuning.engine import trial_process
    from tuning.outcome import INTERRUPTED_EXIT

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


def _functions(folder: str):
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(ROOT), node.name, node.end_lineno - node.lineno + 1


def test_no_function_of_the_application_is_longer_than_60_lines():
    long = [f"{p}:{name} ({n} lines)" for folder in ("tuning", "search_spaces") for p, name, n in _functions(folder)
            if n > 60]
    assert not long, long


def _imports(path: pathlib.Path, package: str) -> set[str]:
    """Modules of the package that `path` imports (lazily too; not under TYPE_CHECKING or __main__)."""
    tree = ast.parse(path.read_text().split('\nif __name__ == "__main__":')[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            node.body = []
    here = path.relative_to(ROOT).with_suffix("").parts
    here = here[:-1] if here[-1] == "__init__" else here
    base = here if path.name == "__init__.py" else here[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            mod = ".".join(base[:len(base) - node.level + 1] + ((node.module,) if node.module else ()))
            out |= {f"{mod}.{a.name}" for a in node.names} | {mod}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(package):
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_no_import_cycles_in_tuning():
    modules = {}
    for path in (ROOT / "tuning").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {m: {d for d in _imports(p, "tuning") if d in modules and d != m} for m, p in modules.items()}
    state: dict[str, int] = {}

    def visit(m, trail):
        state[m] = 1
        for d in graph[m]:
            assert state.get(d) != 1, " -> ".join([*trail, m, d])
            if d not in state:
                visit(d, [*trail, m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])
    assert graph["tuning.processes"] == set()  # a leaf


def test_keras_tuner_private_modules_are_imported_in_one_module():
    users = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tuning").rglob("*.py")
             if any(isinstance(n, (ast.Import, ast.ImportFrom)) and "keras_tuner.src" in ast.unparse(n)
                    for n in ast.walk(ast.parse(p.read_text())))}
    assert users == {"tuning/engine/kt_internals.py"}


def test_every_config_field_has_a_command_line_option():
    dests = {a.dest for a in build_parser()._actions}
    assert {f.name for f in dataclasses.fields(SearchConfig)} <= dests


def test_the_keras_tuner_members_the_engine_relies_on_exist():
    import keras_tuner as kt

    from tuning.engine.kt_internals import PRIVATE_MEMBERS, HyperbandOracle

    oracle = HyperbandOracle(objective=kt.Objective("val_accuracy", "max"), max_epochs=3, factor=3, seed=1)
    missing = [f"HyperbandOracle.{m}" for m in PRIVATE_MEMBERS["HyperbandOracle"] if not hasattr(oracle, m)]
    missing += [f"Tuner.{m}" for m in PRIVATE_MEMBERS["Tuner"] if not hasattr(kt.Tuner, m)]
    from keras_tuner.src.distribute import oracle_chief

    missing += [f"oracle_chief.{m}" for m in PRIVATE_MEMBERS["oracle_chief"] if not hasattr(oracle_chief, m)]
    assert not missing, missing


def test_the_supervising_process_never_imports_keras_or_tensorflow():
    import subprocess
    import sys

    code = ("import sys, tuning, tuning.cli, tuning.search, tuning.supervisor, tuning.store, tuning.faults, "
            "tuning.distributed, tuning.outcome; print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"
