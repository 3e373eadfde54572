"""`SearchConfig`: every option of a search, validated once, with one definition of each default.

The command line (`tuning.search.cli`) takes its defaults from the fields below; a Python caller
passes the same names to `tuning.run_search`. A search writes its resolved config to
``run.json``, and every trial process, chief and worker reads it back from there.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import re
from typing import Any

from search_spaces import load_space

from .errors import UsageError
from .runtime import check, configured

PRECISIONS = ("auto", "float32", "mixed", "bfloat16")
STRATEGIES = ("data-parallel", "mirrored")
# What a run is: a resumed run must match these (the other options may change between sessions;
# a larger budget, `iterations`, extends a run: tuning.run.owner).
RUN_KEYS = ("space", "dataset", "seed", "algorithm", "max_epochs", "factor", "image_size", "backend", "objective",
            "class_weight")
# What a run folder written before a key existed holds for it.
RUN_KEY_BEFORE = {"backend": "tensorflow", "algorithm": "hyperband", "objective": "val_accuracy"}
ALGORITHMS = ("hyperband", "bohb", "asha")  # the oracles: tuning.engine.algorithms
# What a search selects on, and which way: every metric is computed for every epoch, on the whole
# validation split (the class-averaged ones from its confusion matrix), whichever is the objective.
OBJECTIVES = {"val_accuracy": "max", "val_loss": "min", "val_balanced_accuracy": "max", "val_macro_f1": "max"}
DEFAULT_OBJECTIVE = "val_accuracy"
CLASS_WEIGHTS = ("balanced",)  # balanced: the loss weighted by inverse class frequency of the training split


def maximized(objective: str | None) -> bool:
    """Whether a higher value of `objective` is better (None: a run from before objectives, val_accuracy)."""
    return OBJECTIVES[objective or DEFAULT_OBJECTIVE] == "max"


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """The options of one search (see ``python -m tuning.search --help`` for each).

    `None` for `dataset`, `max_epochs`, `factor`, `iterations` and `image_size` means "the
    space's"; `resolve()` fills them in (not `iterations` when there is a `time_budget`: the
    search's plan chooses them, and an explicit number caps them).
    """

    space: str = "small"                     # a named space or the path of a .toml file
    dataset: str | None = None
    algorithm: str = "hyperband"             # "hyperband", "bohb" or "asha"
    objective: str | None = None             # one of OBJECTIVES; default: the space's, else val_accuracy
    class_weight: str | None = None          # "balanced" or None (every image counts the same)
    max_epochs: int | None = None
    factor: int | None = None
    iterations: int | None = None          # with a time budget: a cap (default none: the plan's, then more)
    time_budget: float | None = None       # seconds of the run's wall time (`parse_duration`); None: no limit
    image_size: tuple[int, int] | None = None
    warm_start: str | None = None            # an earlier run's folder: its best configurations first
    tries: tuple[str, ...] = ()              # zoo names (`python -m resnet`) evaluated before any random draw
    results_dir: str = "results"
    name: str | None = None                  # default: <space>-<dataset>
    backend: str | None = None               # "tensorflow" or "jax"; default: Keras' configured backend
    seed: int = 0
    overwrite: bool = False
    verbose: bool = False
    quiet: bool = False                      # only each finished trial's line and the result
    skip_bad_images: bool = False
    image_cache: bool = True                 # a folder: keep its resized images in <run>/data/
    precision: str = "auto"
    jit: bool | None = None                  # default: on a GPU only
    gpus: str | None = None                  # e.g. "0,1"; default: all visible
    strategy: str | None = None              # "data-parallel", "mirrored" (TensorFlow only) or None
    recycle_mb: int = 150                    # 0: every trial in the calling process

    # ----- validation and defaults -----------------------------------------------------------
    def validate(self) -> SearchConfig:
        """Check every value; UsageError naming the option, the value and what is allowed."""
        for key, minimum in (("max_epochs", 1), ("factor", 2), ("iterations", 1), ("seed", 0),
                             ("recycle_mb", 0)):
            _check_int(key, getattr(self, key), minimum)
        if self.time_budget is not None and (isinstance(self.time_budget, bool) or not isinstance(
                self.time_budget, (int, float)) or not 0 < self.time_budget < math.inf):
            raise UsageError(f"time_budget = {self.time_budget!r} is invalid: give seconds > 0 (on the command line "
                             "a duration such as 90s, 45m, 2h or 1h30m)")
        for name in self.tries:
            zoo_name(name)
        if self.warm_start is not None and not (pathlib.Path(self.warm_start) / "run.json").is_file():
            raise UsageError(f"warm_start = {self.warm_start!r} is not a search run (it has no run.json): give the "
                             "folder of an earlier search, such as results/small-digits")
        if self.objective is not None and self.objective not in OBJECTIVES:
            raise UsageError(f"objective = {self.objective!r} is invalid: choose from {', '.join(OBJECTIVES)}")
        if self.class_weight not in (None, *CLASS_WEIGHTS):
            raise UsageError(f"class_weight = {self.class_weight!r} is invalid: choose {' or '.join(CLASS_WEIGHTS)} "
                             "(or leave it out)")
        if self.algorithm not in ALGORITHMS:
            raise UsageError(f"algorithm = {self.algorithm!r} is invalid: choose from {', '.join(ALGORITHMS)}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision = {self.precision!r} is invalid: choose from {', '.join(PRECISIONS)}")
        if self.strategy not in (None, *STRATEGIES):
            raise UsageError(f"strategy = {self.strategy!r} is invalid: choose {' or '.join(STRATEGIES)} (or leave "
                             "it out)")
        if self.strategy == "mirrored" and self.backend not in (None, "tensorflow"):
            raise UsageError(f"strategy = 'mirrored' is TensorFlow's MirroredStrategy and the backend is "
                             f"{self.backend}: use --strategy data-parallel (every GPU, on either backend)")
        if self.gpus is not None and not all(g.strip().isdigit() for g in str(self.gpus).split(",")):
            raise UsageError(f"gpus = {self.gpus!r} is invalid: give GPU indices such as 0 or 0,1")
        if self.name is not None and (not self.name or "/" in self.name or self.name in (".", "..")):
            raise UsageError(f"name = {self.name!r} is invalid: give a plain folder name")
        return self

    def resolve(self):
        """This config with the space's defaults filled in, checked; and the loaded space.

        Returns:
            (config, space): `space` is the `search_spaces.Space`.
        """
        cfg = dataclasses.replace(self, space=str(self.space), image_size=_image_size(self.image_size),
                                  tries=tuple(zoo_name(n) for n in self.tries),
                                  warm_start=str(pathlib.Path(self.warm_start).resolve()) if self.warm_start else None,
                                  backend=check(self.backend or configured()),
                                  results_dir=str(self.results_dir),
                                  strategy=None if self.strategy == "none" else self.strategy).validate()
        sp = load_space(cfg.space)
        dataset = cfg.dataset or sp.dataset
        if not dataset:
            raise UsageError(f"space {sp.name!r} has no default dataset; give one with --dataset (a keras dataset "
                             "name or a folder of class subfolders of images)")
        if cfg.objective is None and sp.objective not in (None, *OBJECTIVES):
            raise UsageError(f"{sp.path}: [defaults] objective = {sp.objective!r} is invalid: choose from "
                             f"{', '.join(OBJECTIVES)}")
        cfg = dataclasses.replace(
            cfg, dataset=dataset, image_size=cfg.image_size or _image_size(sp.image_size),
            max_epochs=cfg.max_epochs or sp.max_epochs, factor=cfg.factor or sp.factor,
            iterations=cfg.iterations or (None if cfg.time_budget else sp.iterations),
            name=cfg.name or f"{sp.name}-{_slug(dataset)}",
            objective=cfg.objective or sp.objective or DEFAULT_OBJECTIVE)
        return cfg.validate(), sp

    # ----- where it lives ----------------------------------------------------------------------
    @property
    def run_dir(self) -> pathlib.Path:
        if self.name is None:
            raise ValueError("resolve() the config first: the run's name comes from its space and dataset")
        return pathlib.Path(self.results_dir) / self.name

    def identity(self, space_name: str) -> dict[str, Any]:
        """The values a resumed run must match (RUN_KEYS), as written to run.json."""
        ident = {k: getattr(self, k) for k in RUN_KEYS}
        ident["space"] = space_name
        ident["image_size"] = list(self.image_size) if self.image_size else None
        return ident

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size) if self.image_size else None
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names}).replace(
            image_size=_image_size(data.get("image_size")), tries=tuple(data.get("tries") or ()))

    def replace(self, **changes) -> SearchConfig:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown search option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)


def default(name: str) -> Any:
    """The default of one option (for the command line's help and defaults)."""
    return next(f.default for f in dataclasses.fields(SearchConfig) if f.name == name)


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")


def parse_duration(text: str) -> float:
    """Seconds of a duration such as ``90s``, ``45m``, ``2h``, ``1h30m`` or ``90`` (seconds).

    Raises:
        UsageError: not such a duration, or not more than 0 seconds.
    """
    match = _DURATION.fullmatch(str(text).strip().lower())
    if match is None or not any(match.groups()):
        raise UsageError(f"time budget {text!r} is not a duration: give one such as 90s, 45m, 2h or 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise UsageError(f"time budget {text!r} is not more than 0 seconds: give one such as 90s, 45m or 2h")
    return total


def zoo_name(name: str) -> str:
    """The zoo's name for `name` (``resnet20`` is ``cifar_resnet20``); UsageError for none."""
    from resnet.zoo import ZOO

    for candidate in (name, f"cifar_{name}"):
        if candidate in ZOO and (candidate == name or name not in ZOO):
            return candidate
    raise UsageError(f"try {name!r} is not an architecture of the zoo: choose from {', '.join(ZOO)} (python -m resnet "
                     "lists them)")


def fmt_time(seconds: float) -> str:
    """Seconds as ``H:MM:SS`` (how durations are shown)."""
    seconds = int(round(max(0.0, seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _check_int(name: str, value, minimum: int) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
        raise UsageError(f"{name} = {value!r} is invalid: it must be an integer >= {minimum}")


def _image_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    try:
        ok = len(size) == 2 and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)
    except TypeError:
        ok = False
    if not ok:
        raise UsageError(f"image_size = {size!r} is invalid: give a positive size or (height, width)")
    return tuple(size)


def _slug(dataset: str) -> str:
    p = pathlib.Path(dataset)
    return p.name or p.resolve().name if (os.sep in dataset or p.exists()) else dataset
