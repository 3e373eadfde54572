"""Load and check a search space file (TOML).

A space file has these tables (see `small.toml` for a commented example):

- top level: ``description`` (one line, shown by ``--list-spaces``);
- ``[defaults]``: ``dataset``, ``augment`` (``"none"`` or ``"pad_crop_flip"``), ``image_size``,
  ``objective`` (what the search selects on, e.g. ``"val_balanced_accuracy"``; checked by the search);
- ``[hyperband]``: ``max_epochs``, ``factor``, ``iterations``;
- ``[limits]``: optional ``max_params`` and ``max_flops`` (multiply-adds per image);
- ``[architecture]``: the network's hyperparameters;
- ``[training]``: the optimiser's, with per-optimiser and per-schedule sub-tables.

Every hyperparameter value is written as one of:

- a scalar (``block = "basic"``): fixed;
- a list (``base_filters = [8, 16, 32]``): a choice;
- a table (``learning_rate = {min = 1e-3, max = 0.1, log = true}``, optional ``step``):
  a range, integer when ``min`` and ``max`` are integers.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import tomllib
from collections.abc import Mapping
from typing import Any

from resnet.spec import BLOCKS, BOTTLENECK_STRIDES, SHORTCUTS, STEMS, ResNetSpec
from resnet.zoo import ZOO

from .training import train_defaults

SPACES_DIR = pathlib.Path(__file__).resolve().parent

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "plateau", "constant")
AUGMENTS = ("none", "pad_crop_flip")
# Keys each optimiser / schedule uses; its sub-table may set these and no others.
OPTIMIZER_USES = {
    "sgd": ("learning_rate", "momentum", "nesterov", "weight_decay"),
    "adam": ("learning_rate",),
    "adamw": ("learning_rate", "weight_decay"),
}
SCHEDULE_USES = {"cosine": ("warmup_epochs",), "plateau": ("plateau_factor", "plateau_patience"), "constant": ()}
MAX_POSITION_SETS = 2000


class SpaceError(ValueError):
    """A space that cannot be used; the message names the file, the key and the fix."""


@dataclasses.dataclass(frozen=True)
class Param:
    """One hyperparameter's domain: fixed value, choice, or (log-)range."""

    kind: str                         # "fixed" | "choice" | "int" | "float"
    values: tuple = ()                # fixed: (value,); choice: the options
    min: float | int | None = None
    max: float | int | None = None
    step: float | int | None = None
    log: bool = False

    @property
    def options(self) -> tuple:
        """Every value a fixed/choice param can take (ranges: just the bounds)."""
        return self.values if self.kind in ("fixed", "choice") else (self.min, self.max)

    @property
    def default(self):
        return self.values[0] if self.kind in ("fixed", "choice") else self.min


# (key, allowed value check, description of what is allowed)
def _pos_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _nonneg_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _pos_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _nonneg_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _in(options):
    return lambda v: isinstance(v, str) and v in options


def _bool(v):
    return isinstance(v, bool)


ARCH_KEYS: dict[str, tuple[Any, str]] = {
    "stem": (_in(STEMS), f"one of {list(STEMS)}"),
    "depth": (_pos_int, "positive integers (total residual blocks)"),
    "stages": (_pos_int, "positive integers (number of stages = halvings after the stem + 1)"),
    "blocks_per_stage": (_pos_int, "positive integers"),
    "base_filters": (_pos_int, "positive integers"),
    "growth": (_pos_num, "positive numbers (2.0 doubles the width at each downsample)"),
    "width_multiplier": (_pos_num, "positive numbers"),
    "block": (_in(BLOCKS), f"one of {list(BLOCKS)}"),
    "preact": (_bool, "true or false"),
    "shortcut": (_in(SHORTCUTS), f"one of {list(SHORTCUTS)}"),
    "bottleneck_stride": (_in(BOTTLENECK_STRIDES), f"one of {list(BOTTLENECK_STRIDES)}"),
    "expansion": (_pos_int, "positive integers"),
}
TRAIN_KEYS: dict[str, tuple[Any, str]] = {
    "optimizer": (_in(OPTIMIZERS), f"one of {list(OPTIMIZERS)}"),
    "learning_rate": (_pos_num, "positive numbers"),
    "momentum": (lambda v: _nonneg_num(v) and v < 1, "numbers in [0, 1)"),
    "nesterov": (_bool, "true or false"),
    "weight_decay": (_nonneg_num, "non-negative numbers"),
    "schedule": (_in(SCHEDULES), f"one of {list(SCHEDULES)}"),
    "warmup_epochs": (_nonneg_int, "non-negative integers"),
    "plateau_factor": (lambda v: _pos_num(v) and v < 1, "numbers in (0, 1)"),
    "plateau_patience": (_nonneg_int, "non-negative integers"),
    "batch_size": (_pos_int, "positive integers"),
    "label_smoothing": (lambda v: _nonneg_num(v) and v < 1, "numbers in [0, 1)"),
}
# What a space gets for a key it leaves out: stated once, as the field defaults of `ResNetSpec`
# (every ARCH_KEYS entry but depth, stages and blocks_per_stage, which a space must give) and of
# `TrainConfig` (every TRAIN_KEYS entry).
ARCH_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ResNetSpec) if f.name in ARCH_KEYS}
TRAIN_DEFAULTS = train_defaults()


@dataclasses.dataclass(frozen=True)
class Space:
    """A parsed search space."""

    name: str
    path: pathlib.Path
    description: str
    dataset: str | None
    augment: str
    image_size: tuple[int, int] | None
    objective: str | None
    max_epochs: int
    factor: int
    iterations: int
    max_params: int | None
    max_flops: int | None
    arch: Mapping[str, Param]          # every ARCH_KEYS entry that applies, plus downsample_at
    downsample_sets: tuple[tuple[int, ...], ...] | None   # explicit position sets, or None = any
    train: Mapping[str, Param]         # shared training params
    per_optimizer: Mapping[str, Mapping[str, Param]]   # optimizer -> its own params
    per_schedule: Mapping[str, Mapping[str, Param]]
    layout: str                        # "positions" (depth + stages + downsample_at) or "per_stage"
    uniform_stages: bool               # per_stage layout: one depth shared by all stages
    text: str                          # the file's text, recorded with every run
    tries: tuple[Mapping[str, Any], ...] = ()  # [[try]]: configurations evaluated before any random draw


def _where(path: pathlib.Path, key: str) -> str:
    return f"{path}: [{key.rsplit('.', 1)[0]}] {key.rsplit('.', 1)[-1]}" if "." in key else f"{path}: {key}"


def parse_param(value: Any, key: str, path: pathlib.Path, check=None, allowed: str = "") -> Param:
    """Turn a TOML value into a `Param`, checking every value it can take."""
    def fail(msg: str) -> SpaceError:
        return SpaceError(f"{_where(path, key)} = {value!r} is invalid: {msg}")

    if isinstance(value, dict):
        unknown = set(value) - {"min", "max", "step", "log"}
        if unknown or "min" not in value or "max" not in value:
            raise fail("a range needs min and max (optional step, log); "
                       f"unknown keys {sorted(unknown)}" if unknown else "a range needs both min and max")
        lo, hi, step, log = value["min"], value["max"], value.get("step"), value.get("log", False)
        for v in (lo, hi):
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise fail("min and max must be numbers")
            if check and not check(v):
                raise fail(f"expected {allowed}")
        if lo > hi:
            raise fail(f"min ({lo}) is greater than max ({hi})")
        if not isinstance(log, bool):
            raise fail("log must be true or false")
        if log and lo <= 0:
            raise fail("a log range needs min > 0")
        if step is not None and (not isinstance(step, (int, float)) or isinstance(step, bool) or step <= 0):
            raise fail("step must be a positive number")
        if log and step is not None:
            raise fail("give either step or log = true, not both")
        is_int = all(isinstance(v, int) for v in (lo, hi)) and (step is None or isinstance(step, int))
        if lo == hi:
            return Param("fixed", (lo,))
        return Param("int" if is_int else "float", min=lo, max=hi, step=step, log=log)
    values = value if isinstance(value, list) else [value]
    if not values:
        raise fail("an empty list; give at least one value")
    for v in values:
        if isinstance(v, (list, dict)):
            raise fail("expected a value, a list of values or a {min, max} table")
        if check and not check(v):
            raise fail(f"{v!r} is not allowed; expected {allowed}")
    if len(set(map(repr, values))) != len(values):
        raise fail("values repeat")
    return Param("fixed" if len(values) == 1 else "choice", tuple(values))


def _table(data: Mapping, key: str, path: pathlib.Path, allowed_keys) -> dict:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise SpaceError(f"{path}: [{key}] must be a table")
    unknown = sorted(set(table) - set(allowed_keys))
    if unknown:
        raise SpaceError(f"{path}: [{key}] has unknown key(s) {unknown}; allowed: {sorted(allowed_keys)}")
    return table


def _sub_table(train_t: Mapping, key: str, uses: tuple, who: str, path: pathlib.Path) -> dict[str, Param]:
    """A ``[training.<optimizer or schedule>]`` table: only the keys `who` uses."""
    sub = train_t.get(key, {})
    if not isinstance(sub, dict):
        raise SpaceError(f"{path}: [training.{key}] must be a table")
    bad = sorted(set(sub) - set(uses))
    if bad:
        raise SpaceError(f"{path}: [training.{key}] has key(s) {bad} that {who} does not use; allowed: {list(uses)}")
    return {k: parse_param(v, f"training.{key}.{k}", path, *TRAIN_KEYS[k]) for k, v in sub.items()}


def _int_setting(table: Mapping, key: str, table_name: str, path: pathlib.Path, default, minimum: int):
    v = table.get(key, default)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise SpaceError(f"{path}: [{table_name}] {key} = {v!r} is invalid: expected an integer >= {minimum}")
    return v


def load_space_file(path: str | pathlib.Path, name: str | None = None) -> Space:
    """Read and check one space file. Raises `SpaceError` naming the file and the key."""
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise SpaceError(f"cannot read space file {path}: {e.strerror or e}") from None
    return parse_space(text, path, name)


def parse_space(text: str, path: str | pathlib.Path, name: str | None = None) -> Space:
    """Check a space's TOML `text`; `path` names it in error messages (a run stores the text)."""
    path = pathlib.Path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpaceError(f"{path} is not valid TOML: {e}") from None
    # Keyword arguments are evaluated left to right: the sections are checked in this order.
    space = Space(
        name=name or path.stem, path=path, text=text, description=_description(data, path),
        **_defaults_section(data, path), **_hyperband_section(data, path), **_limits_section(data, path),
        **_architecture_section(data, path), **_training_section(data, path), tries=_tries(data, path),
    )
    _check_position_counts(space)
    return space


def _description(data: Mapping, path: pathlib.Path) -> str:
    """Top level: only the known tables, and a one-line description."""
    top = {"description", "defaults", "hyperband", "limits", "architecture", "training", "try"}
    unknown = sorted(set(data) - top)
    if unknown:
        raise SpaceError(f"{path}: unknown top-level key(s) {unknown}; allowed: {sorted(top)}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise SpaceError(f"{path}: description must be a string")
    return description


def _defaults_section(data: Mapping, path: pathlib.Path) -> dict[str, Any]:
    """``[defaults]``: the dataset, its augmentation and image size, and the objective."""
    defaults = _table(data, "defaults", path, ("dataset", "augment", "image_size", "objective"))
    dataset = defaults.get("dataset")  # None: the user must give one (e.g. an image folder)
    if dataset is not None and (not isinstance(dataset, str) or not dataset):
        raise SpaceError(f"{path}: [defaults] dataset = {dataset!r} is invalid: expected a dataset name or folder")
    augment = defaults.get("augment", "none")
    if augment not in AUGMENTS:
        raise SpaceError(f"{path}: [defaults] augment = {augment!r} is invalid: expected one of {list(AUGMENTS)}")
    image_size = defaults.get("image_size")
    if image_size is not None:
        if isinstance(image_size, int) and not isinstance(image_size, bool):
            image_size = [image_size, image_size]
        if (not isinstance(image_size, list) or len(image_size) != 2
                or not all(_pos_int(v) for v in image_size)):
            raise SpaceError(f"{path}: [defaults] image_size = {image_size!r} is invalid: "
                             "expected a positive integer or [height, width]")
        image_size = tuple(image_size)
    objective = defaults.get("objective")
    if objective is not None and (not isinstance(objective, str) or not objective):
        raise SpaceError(f"{path}: [defaults] objective = {objective!r} is invalid: expected a name such as "
                         "\"val_balanced_accuracy\"")
    return {"dataset": dataset, "augment": augment, "image_size": image_size, "objective": objective}


TRY_KEYS = ("name", "zoo", *ARCH_KEYS, "downsample_at", *TRAIN_KEYS)


def _tries(data: Mapping, path: pathlib.Path) -> tuple[Mapping[str, Any], ...]:
    """``[[try]]``: known configurations to evaluate first, each a zoo name (``zoo = "cifar_resnet20"``)
    and/or values of the space's hyperparameters (the space's defaults fill in the rest). Whether each
    fits the space and the input is checked when a search starts (`Sampler.values_from`)."""
    tries = data.get("try", [])
    if not isinstance(tries, list) or not all(isinstance(t, dict) for t in tries):
        raise SpaceError(f"{path}: try must be an array of tables ([[try]] sections)")
    for i, table in enumerate(tries, 1):
        unknown = sorted(set(table) - set(TRY_KEYS))
        if unknown:
            raise SpaceError(f"{path}: [[try]] number {i} has unknown key(s) {unknown}; allowed: name, zoo, and the "
                             "space's architecture and training keys")
        if "zoo" in table and table["zoo"] not in ZOO:
            raise SpaceError(f"{path}: [[try]] number {i}: zoo = {table['zoo']!r} is not a zoo name; choose from "
                             f"{', '.join(ZOO)}")
    return tuple(tries)


def _hyperband_section(data: Mapping, path: pathlib.Path) -> dict[str, int]:
    """``[hyperband]``: the budget of the search."""
    hb = _table(data, "hyperband", path, ("max_epochs", "factor", "iterations"))
    return {
        "max_epochs": _int_setting(hb, "max_epochs", "hyperband", path, 9, 1),
        "factor": _int_setting(hb, "factor", "hyperband", path, 3, 2),
        "iterations": _int_setting(hb, "iterations", "hyperband", path, 1, 1),
    }


def _limits_section(data: Mapping, path: pathlib.Path) -> dict[str, int | None]:
    """``[limits]``: optional cost limits per configuration."""
    limits = _table(data, "limits", path, ("max_params", "max_flops"))
    return {
        "max_params": _int_setting(limits, "max_params", "limits", path, None, 1),
        "max_flops": _int_setting(limits, "max_flops", "limits", path, None, 1),
    }


def _architecture_section(data: Mapping, path: pathlib.Path) -> dict[str, Any]:
    """``[architecture]``: the network's params, its block layout and the downsample position sets."""
    arch_t = _table(data, "architecture", path, (*ARCH_KEYS, "downsample_at", "uniform_stages"))
    arch: dict[str, Param] = {}
    for key, (check, allowed) in ARCH_KEYS.items():
        if key in arch_t:
            arch[key] = parse_param(arch_t[key], f"architecture.{key}", path, check, allowed)
        elif key in ARCH_DEFAULTS:
            arch[key] = Param("fixed", (ARCH_DEFAULTS[key],))
    layout, uniform = _layout(arch, arch_t, path)
    return {"arch": arch, "layout": layout, "uniform_stages": uniform,
            "downsample_sets": _downsample_sets(arch_t, layout, path)}


def _layout(arch: Mapping[str, Param], arch_t: Mapping, path: pathlib.Path) -> tuple[str, bool]:
    """``"positions"`` (depth + stages + downsample_at) or ``"per_stage"``, and ``uniform_stages``."""
    if "stages" not in arch:
        raise SpaceError(f"{path}: [architecture] stages is missing; give the number of stages, e.g. [2, 3]")
    if ("depth" in arch) == ("blocks_per_stage" in arch):
        raise SpaceError(f"{path}: [architecture] give exactly one of depth (total blocks, with downsample_at) "
                         "or blocks_per_stage")
    layout = "positions" if "depth" in arch else "per_stage"
    uniform = arch_t.get("uniform_stages", False)
    if not isinstance(uniform, bool):
        raise SpaceError(f"{path}: [architecture] uniform_stages = {uniform!r} is invalid: expected true or false")
    if layout == "positions" and "uniform_stages" in arch_t:
        raise SpaceError(f"{path}: [architecture] uniform_stages only applies with blocks_per_stage")
    for key in ("depth", "stages", "blocks_per_stage"):
        if key in arch and arch[key].kind == "float":
            raise SpaceError(f"{path}: [architecture] {key} must be integers")
    return layout, uniform


def _downsample_sets(arch_t: Mapping, layout: str, path: pathlib.Path) -> tuple[tuple[int, ...], ...] | None:
    """The explicit ``downsample_at`` position sets, or None for ``"any"``."""
    sets = arch_t.get("downsample_at", "any")
    if layout == "per_stage" and "downsample_at" in arch_t:
        raise SpaceError(f"{path}: [architecture] downsample_at only applies with depth (not blocks_per_stage)")
    if sets == "any":
        return None
    if (not isinstance(sets, list) or not sets
            or not all(isinstance(s, list) and all(_pos_int(p) and p >= 2 for p in s) for s in sets)):
        raise SpaceError(f"{path}: [architecture] downsample_at = {sets!r} is invalid: expected \"any\" or a "
                         "list of position lists, e.g. [[4, 8, 14], [3, 7, 13]] (block indices from 2)")
    downsample_sets = tuple(tuple(s) for s in sets)
    for s in downsample_sets:
        if list(s) != sorted(set(s)):
            raise SpaceError(f"{path}: [architecture] downsample_at set {list(s)} must be strictly increasing")
    return downsample_sets


def _training_section(data: Mapping, path: pathlib.Path) -> dict[str, Any]:
    """``[training]``: shared params, then the per-optimiser and per-schedule sub-tables."""
    train_t = _table(data, "training", path, (*TRAIN_KEYS, *OPTIMIZERS, *SCHEDULES))
    train: dict[str, Param] = {}
    for key, (check, allowed) in TRAIN_KEYS.items():
        if key in train_t:
            train[key] = parse_param(train_t[key], f"training.{key}", path, check, allowed)
        else:
            train[key] = Param("fixed", (TRAIN_DEFAULTS[key],))
    per_optimizer = {opt: _sub_table(train_t, opt, OPTIMIZER_USES[opt], opt, path) for opt in OPTIMIZERS}
    per_schedule = {sched: _sub_table(train_t, sched, SCHEDULE_USES[sched], f"the {sched} schedule", path)
                    for sched in SCHEDULES}
    return {"train": train, "per_optimizer": per_optimizer, "per_schedule": per_schedule}


def _check_position_counts(space: Space) -> None:
    """Enumerating every downsample set must stay small enough to be a Choice."""
    if space.layout != "positions" or space.downsample_sets is not None:
        return
    for d in int_options(space.arch["depth"]):
        for s in int_options(space.arch["stages"]):
            if s <= d and math.comb(d - 1, s - 1) > MAX_POSITION_SETS:
                raise SpaceError(
                    f"{space.path}: [architecture] depth {d} with {s} stages has {math.comb(d - 1, s - 1)} possible "
                    f"downsample_at sets (limit {MAX_POSITION_SETS}); list the sets you want in downsample_at, "
                    "or use blocks_per_stage"
                )


def int_options(p: Param) -> list[int]:
    if p.kind in ("fixed", "choice"):
        return list(p.values)
    step = p.step or 1
    return list(range(int(p.min), int(p.max) + 1, int(step)))


def named_spaces() -> dict[str, pathlib.Path]:
    return {p.stem: p for p in sorted(SPACES_DIR.glob("*.toml"))}


def load_space(name_or_path: str | pathlib.Path) -> Space:
    """Load a named space (``small``, ``cifar``, ``imagenet``) or a user's own TOML file."""
    spaces = named_spaces()
    key = str(name_or_path)
    if key in spaces:
        return load_space_file(spaces[key], name=key)
    p = pathlib.Path(key)
    if p.suffix == ".toml" or p.exists() or "/" in key:
        if not p.is_file():
            raise SpaceError(f"space file {p} does not exist; give a named space ({', '.join(spaces)}) "
                             "or the path of a .toml file")
        return load_space_file(p)
    raise SpaceError(f"unknown space {key!r}; named spaces: {', '.join(spaces)} (or give the path of a .toml file)")


def list_spaces() -> list[tuple[str, str]]:
    """(name, one-line description) of every named space."""
    return [(name, load_space_file(p, name).description) for name, p in named_spaces().items()]
