"""The shape of the code, read from its source: short functions, imports that point down only
(no circle, lazy and TYPE_CHECKING imports included), keras-tuner's private modules in one
module and every private member of it listed, no Keras in the supervising process, and one of
each (exit-code mapping, parser class, reader of process facts, meaning of a name)."""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tuning"

# `tuning`'s parts from the top down: a module may import its own package's modules and those of
# any lower layer, never one of its own layer's other packages or of a layer above.
LAYERS = [
    ["tuning"],
    ["tuning.bench"],
    ["tuning.search"],
    ["tuning.export", "tuning.report"],
    ["tuning.engine"],
    ["tuning.data", "tuning.observe"],
    ["tuning.run"],
    ["tuning.processes"],
    ["tuning.command", "tuning.config"],
    ["tuning.faults", "tuning.runtime"],
    ["tuning.errors"],
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}
SAME_MEANING = {"main", "build_parser"}  # every command's entry point and parser
OS_MODULES = ("os", "sys")  # their private members (os._exit) are not keras-tuner's


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _tree(path: pathlib.Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _imports(name: str, path: pathlib.Path) -> set[str]:
    """The modules of `tuning` that module `name` imports, anywhere in it (lazily, under
    TYPE_CHECKING or under ``__main__`` too): ``from X import y`` counts as importing ``X.y``
    where that is a module, else ``X``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "tuning"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "tuning":
                continue
            subs = {f"{module}.{a.name}" for a in node.names} & MODULES.keys()
            out |= subs if len(subs) == len(node.names) else subs | {module}
    return out - {name}


GRAPH = {m: _imports(m, p) & MODULES.keys() for m, p in MODULES.items()}


def _unit(module: str) -> str:
    """The part of `tuning` a module belongs to: its package below `tuning`, or itself at the top."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_function_is_longer_than_60_lines():
    long = []
    for folder in ("tuning", "search_spaces"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(_tree(path)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                    long.append(f"{path.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long


def test_every_part_of_the_package_has_a_layer():
    assert {_unit(m) for m in MODULES} == set(LAYER)


def test_no_import_circle():
    state: dict[str, int] = {}

    def visit(m, trail):
        state[m] = 1
        for d in sorted(GRAPH[m]):
            assert state.get(d) != 1, "import circle: " + " -> ".join([*trail, m, d])
            if d not in state:
                visit(d, [*trail, m])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [])


def test_no_import_points_back_up():
    up = [f"{m} -> {d}" for m, deps in sorted(GRAPH.items()) for d in sorted(deps)
          if _unit(d) != _unit(m) and LAYER[_unit(d)] <= LAYER[_unit(m)]]
    assert not up, up


def test_the_import_checks_see_lazy_and_type_checking_imports(tmp_path):
    """The collector itself: a lazy import and one under TYPE_CHECKING both count."""
    (tmp_path / "tuning" / "run").mkdir(parents=True)
    path = tmp_path / "tuning" / "run" / "folder.py"
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..search import runner\n"
                    "def f():\n    from ..engine.tuner import ResNetTuner\n")
    assert _imports("tuning.run.folder", path) == {"tuning.search.runner", "tuning.engine.tuner"}


def test_keras_tuner_private_modules_are_imported_in_one_module():
    users = {p.relative_to(ROOT).as_posix() for p in MODULES.values()
             if any(isinstance(n, (ast.Import, ast.ImportFrom)) and "keras_tuner.src" in ast.unparse(n)
                    for n in ast.walk(_tree(p)))}
    assert users == {"tuning/engine/kt_internals.py"}


def _kt_classes():
    import keras_tuner as kt
    from keras_tuner.src.distribute import oracle_chief

    from tuning.engine.kt_internals import HyperbandOracle

    # An oracle instance: some members it relies on are made in its __init__.
    oracle = HyperbandOracle(objective=kt.Objective("val_accuracy", "max"), max_epochs=3, factor=3, seed=1)
    return {"HyperbandOracle": oracle, "Tuner": kt.Tuner, "oracle_chief": oracle_chief}


def test_every_keras_tuner_private_member_used_is_listed_and_exists():
    from tuning.engine.kt_internals import PRIVATE_MEMBERS

    kt_parts = _kt_classes()
    missing = [f"{part}.{m}" for part, members in PRIVATE_MEMBERS.items() for m in members
               if not hasattr(kt_parts[part], m)]
    assert not missing, f"listed but not in keras-tuner: {missing}"
    listed = {m for members in PRIVATE_MEMBERS.values() for m in members}

    def of_keras_tuner(member: str) -> bool:
        return any(hasattr(part, member) for part in kt_parts.values())

    used = set()
    for path in MODULES.values():
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ClassDef):  # a private method of ours that overrides keras-tuner's
                used |= {f.name for f in node.body if isinstance(f, ast.FunctionDef) and _private(f.name)
                         and of_keras_tuner(f.name)}
            elif isinstance(node, ast.Attribute) and _private(node.attr) and ast.unparse(node.value) not in OS_MODULES:
                used.add(node.attr)
    nodes = [n for p in MODULES.values() for n in ast.walk(_tree(p))]
    ours = {n.name for n in nodes if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    ours |= {n.attr for n in nodes if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)
             and not of_keras_tuner(n.attr)}
    unlisted = sorted({m for m in used if m not in ours or of_keras_tuner(m)} - listed)
    assert not unlisted, f"keras-tuner private members used but not in kt_internals.PRIVATE_MEMBERS: {unlisted}"


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_the_supervising_process_never_imports_keras():
    """What the process that runs a search (and hands its trials to trial processes) imports."""
    modules = ["tuning", "tuning.search.cli", *(m for m in MODULES if _unit(m) in ("tuning.run", "tuning.processes")),
               "tuning.search.runner", "tuning.search.supervise", "tuning.search.workers", "tuning.report"]
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'keras_tuner') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def _docstrings(tree: ast.Module) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}


def test_one_module_reads_process_facts():
    readers = set()
    for name, path in MODULES.items():
        tree = _tree(path)
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None
            if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
                text = node.values[0].value
            if (text or "").startswith("/proc") and id(node) not in docs:
                readers.add(name)
            if isinstance(node, (ast.Import, ast.ImportFrom)) and "psutil" in ast.unparse(node):
                readers.add(name)
    assert readers == {"tuning.processes.system"}


def test_one_exit_code_mapping_and_one_parser_class():
    literal_exits, parsers = [], []
    for name, path in MODULES.items():
        for node in ast.walk(_tree(path)):
            if name != "tuning.errors" and isinstance(node, ast.Return) and isinstance(node.value, ast.Constant) \
                    and type(node.value.value) is int:
                literal_exits.append(f"{name}:{node.lineno}")
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("sys.exit", "exit", "os._exit") \
                    and node.args and isinstance(node.args[0], ast.Constant):
                literal_exits.append(f"{name}:{node.lineno}")
            made = isinstance(node, ast.Call) and ast.unparse(node.func).endswith("ArgumentParser")
            derived = isinstance(node, ast.ClassDef) and any("ArgumentParser" in ast.unparse(b) for b in node.bases)
            if name != "tuning.command" and (made or derived):
                parsers.append(f"{name}:{node.lineno}")
    assert not literal_exits, f"exit statuses outside tuning.errors: {literal_exits}"
    assert not parsers, f"argument parsers that are not tuning.command.Parser: {parsers}"


def test_no_private_name_is_imported_across_modules():
    crossing = [f"{name}: {node.module} {a.name}" for name, path in MODULES.items() for node in ast.walk(_tree(path))
                if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("tuning"))
                for a in node.names if a.name.startswith("_")]
    assert not crossing, crossing


def test_no_name_means_two_things():
    """A function, class or constant defined at the top of two modules is one thing defined twice
    or two things under one name."""
    where: dict[str, list[str]] = {}
    for name, path in MODULES.items():
        for node in _tree(path).body:
            names = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else \
                [t.id for t in getattr(node, "targets", [getattr(node, "target", None)]) if isinstance(t, ast.Name)] \
                if isinstance(node, (ast.Assign, ast.AnnAssign)) else []
            for n in names:
                if not n.startswith("__"):
                    where.setdefault(n, []).append(name)
    twice = {n: ms for n, ms in where.items() if len(ms) > 1 and n not in SAME_MEANING}
    assert not twice, twice


@pytest.mark.parametrize("command", ["search", "export", "report", "bench"])
def test_each_command_enters_through_its_package_main(command):
    main = PACKAGE / command / "__main__.py"
    assert main.is_file()
    assert any(isinstance(n, ast.If) and ast.unparse(n.test) == "__name__ == '__main__'" for n in _tree(main).body)
