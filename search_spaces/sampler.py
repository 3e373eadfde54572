"""Turn a `Space` into keras-tuner hyperparameters, and their values into a spec + training config.

How configurations that cannot be built are kept out of the search (they must never become
failed trials, since keras-tuner stops after 3 consecutive failures):

1. Restrict up front: stage counts that need more halvings than the input allows are never
   declared (an 8x8 input allows 3, so a space asking for up to 6 stages gets at most 4), and
   downsample positions are declared per (depth, stages) pair, so every position set offered
   fits its depth. This removes nearly all invalid points without distorting the rest.
2. Resample: what is left (a depth smaller than the stage count, a stem that takes too many
   halvings, a configuration over `max_params` / `max_flops`) is caught by `check`, which the
   search's oracle calls on every random draw, drawing again until the configuration is valid.
   Resampling keeps the distribution uniform over the valid points; repairing (clipping to the
   nearest valid value) would pile probability onto the boundary.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from resnet import ResNetSpec, count_cost, positions_to_depths
from resnet.cost import Cost
from resnet.spec import STEM_HALVINGS, depths_to_positions, max_halvings
from resnet.zoo import zoo_spec

from .loader import OPTIMIZER_USES, SCHEDULE_USES, Param, Space, SpaceError, int_options
from .training import TrainConfig, train_config_from


class InvalidConfig(ValueError):
    """A point of the space that cannot be built for this input or is over the cost limits."""


def format_positions(positions: Sequence[int]) -> str:
    return ",".join(map(str, positions)) if positions else "none"


def parse_positions(text: str) -> tuple[int, ...]:
    return () if text == "none" else tuple(int(p) for p in text.split(","))


def _register(hp, name: str, param: Param):
    """Declare one hyperparameter in keras-tuner's terms."""
    if param.kind == "fixed":
        return hp.Fixed(name, param.values[0])
    if param.kind == "choice" and all(isinstance(v, bool) for v in param.values):
        return hp.Boolean(name, default=param.values[0])
    if param.kind == "choice":
        values = list(param.values)
        if any(isinstance(v, float) for v in values) and all(isinstance(v, (int, float)) for v in values):
            values = [float(v) for v in values]  # keras-tuner wants one type per Choice
        return hp.Choice(name, values, ordered=all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   for v in values))
    sampling = "log" if param.log else "linear"
    if param.kind == "int":
        return hp.Int(name, int(param.min), int(param.max), step=int(param.step) if param.step else None,
                      sampling=sampling)
    return hp.Float(name, float(param.min), float(param.max), step=param.step, sampling=sampling)


def _options_param(options: Sequence) -> Param:
    return Param("fixed" if len(options) == 1 else "choice", tuple(options))


def _scope(hp, parent: str, values: Sequence, parent_param: Param, needed: bool = True):
    """`hp.conditional_scope` when the parent can take other values too, else nothing."""
    if needed and parent_param.kind != "fixed":
        return hp.conditional_scope(parent, list(values))
    return contextlib.nullcontext()


class Sampler:
    """The one sampler: declares a space's hyperparameters and reads a trial's values back.

    Args:
        space: the parsed space.
        input_shape: ``(height, width, channels)`` of the dataset's images.
        num_classes: number of classes.

    Raises:
        SpaceError: no configuration of the space fits the input (images too small).
    """

    def __init__(self, space: Space, input_shape: Sequence[int], num_classes: int):
        self.space = space
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = num_classes
        allowed = max_halvings(min(self.input_shape[:2]))
        stems = list(space.arch["stem"].options)
        least_stem = min(STEM_HALVINGS[s] for s in stems)
        stage_opts = int_options(space.arch["stages"])
        self.stage_options = [s for s in stage_opts if least_stem + s - 1 <= allowed]
        self.dropped_stages = [s for s in stage_opts if s not in self.stage_options]
        h, w = self.input_shape[:2]
        if not self.stage_options:
            need = least_stem + min(stage_opts) - 1
            raise SpaceError(
                f"images of {h}x{w} are too small for every configuration of space {space.name!r}: "
                f"it needs at least {need} halvings and {h}x{w} allows {allowed}; "
                "use larger images (--image-size) or a space with fewer stages"
            )
        self.note = (
            f"space {space.name!r} allows up to {max(stage_opts)} stages, but a {h}x{w} input with the "
            f"{'/'.join(stems)} stem fits at most {max(self.stage_options)}; stages {self.dropped_stages} are left out"
            if self.dropped_stages else ""
        )
        self.stages_param = _options_param(self.stage_options)
        self.aliases: dict[str, str] = {}
        if space.layout == "positions":
            # Depths that cannot be split into any allowed stage count are left out up front.
            self.depth_options = [d for d in int_options(space.arch["depth"])
                                  if any(self.position_sets(d, s) for s in self.stage_options)]
            if not self.depth_options:
                raise SpaceError(f"space {space.name!r}: no depth in {int_options(space.arch['depth'])} can be "
                                 f"split into {self.stage_options} stages for a {h}x{w} input; "
                                 "allow more blocks or fewer stages")
            self.depth_param = _options_param(self.depth_options)
        import keras_tuner as kt

        self.declare(kt.HyperParameters())  # fills `aliases`, also for a search resumed from disk

    # ----- declaring ------------------------------------------------------------------
    def _alias(self, name: str, canonical: str) -> str:
        """Record that keras-tuner's `name` is one registration of the hyperparameter `canonical`.

        A hyperparameter with several conditional domains (stages per depth, learning rate per
        optimiser) gets one keras-tuner name per domain: keras-tuner 1.4's
        `HyperParameters.ensure_active_values` drops a value when *any* registration sharing its
        name is inactive, so shared names lose their values.
        """
        self.aliases[name] = canonical
        return name

    def canonical(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's values under their canonical names (``learning_rate``, ``stages``, ...)."""
        return {self.aliases.get(k, k): v for k, v in values.items() if v is not None}

    def declare(self, hp) -> None:
        """Register every hyperparameter of the space (parents before their children).

        The order of registration fixes what a seed draws: keep it.
        """
        _register(hp, "stem", self.space.arch["stem"])
        if self.space.layout == "positions":
            self._declare_positions(hp)
        else:
            self._declare_per_stage(hp)
        self._declare_widths(hp)
        self._declare_optimizer(hp)
        self._declare_schedule(hp)
        _register(hp, "batch_size", self.space.train["batch_size"])
        _register(hp, "label_smoothing", self.space.train["label_smoothing"])

    def _declare_positions(self, hp) -> None:
        """depth -> stages (only counts this depth can be split into) -> positions for both."""
        _register(hp, "depth", self.depth_param)
        for d in self.depth_options:
            stage_opts = [s for s in self.stage_options if self.position_sets(d, s)]
            stages = _options_param(stage_opts)
            per_depth = len(self.depth_options) > 1
            stages_name = self._alias(f"stages_depth{d}" if per_depth else "stages", "stages")
            with _scope(hp, "depth", [d], self.depth_param):
                _register(hp, stages_name, stages)
                for s in stage_opts:
                    sets = self.position_sets(d, s)
                    with _scope(hp, stages_name, [s], stages):
                        name = self._alias(f"downsample_at_depth{d}_stages{s}", "downsample_at")
                        _register(hp, name, _options_param([format_positions(p) for p in sets]))

    def _declare_per_stage(self, hp) -> None:
        """stages -> blocks per stage (one shared count, or one per stage that exists)."""
        blocks = self.space.arch["blocks_per_stage"]
        _register(hp, "stages", self.stages_param)
        if self.space.uniform_stages:
            _register(hp, "blocks_per_stage", blocks)
        else:
            for i in range(1, max(self.stage_options) + 1):
                with _scope(hp, "stages", [s for s in self.stage_options if s >= i], self.stages_param):
                    _register(hp, f"stage{i}_blocks", blocks)

    def _declare_widths(self, hp) -> None:
        """Widths and block type; the bottleneck's own keys only under the bottleneck block."""
        a = self.space.arch
        for key in ("base_filters", "growth", "width_multiplier", "block", "preact", "shortcut"):
            _register(hp, key, a[key])
        if "bottleneck" in a["block"].options:
            for key in ("bottleneck_stride", "expansion"):
                with _scope(hp, "block", ["bottleneck"], a["block"]):
                    _register(hp, key, a[key])

    def _declare_optimizer(self, hp) -> None:
        """The optimiser, then each of its keys under the optimisers that use it."""
        t = self.space.train
        opt_param = t["optimizer"]
        _register(hp, "optimizer", opt_param)
        opts = list(opt_param.options)
        for key in ("learning_rate", "momentum", "nesterov", "weight_decay"):
            users = [o for o in opts if key in OPTIMIZER_USES[o]]
            # Optimisers that share a domain for this key share one hyperparameter.
            groups: dict[Param, list[str]] = {}
            for o in users:
                groups.setdefault(self.space.per_optimizer[o].get(key, t[key]), []).append(o)
            for param, group in groups.items():
                name = self._alias(f"{key}_{'_'.join(group)}" if len(groups) > 1 else key, key)
                with _scope(hp, "optimizer", group, opt_param, needed=len(group) < len(opts)):
                    _register(hp, name, param)

    def _declare_schedule(self, hp) -> None:
        """The schedule, then each of its keys under that schedule."""
        t = self.space.train
        sched_param = t["schedule"]
        _register(hp, "schedule", sched_param)
        for sched in sched_param.options:
            for key in SCHEDULE_USES[sched]:
                with _scope(hp, "schedule", [sched], sched_param):
                    _register(hp, key, self.space.per_schedule[sched].get(key, t[key]))

    def position_sets(self, depth: int, stages: int) -> list[tuple[int, ...]]:
        """Every downsample position set offered for this depth and stage count."""
        if stages > depth:
            return []
        if self.space.downsample_sets is not None:
            return [s for s in self.space.downsample_sets if len(s) == stages - 1 and (not s or s[-1] <= depth)]
        return list(itertools.combinations(range(2, depth + 1), stages - 1))

    # ----- reading values back ----------------------------------------------------------
    def spec(self, values: Mapping[str, Any]) -> ResNetSpec:
        """The `ResNetSpec` a trial's hyperparameter values describe. Raises `InvalidConfig`."""
        v = self.canonical(values)
        stages = v.get("stages")
        if self.space.layout == "positions":
            depth = v["depth"]
            if v.get("downsample_at") is None:
                raise InvalidConfig(f"depth {depth} cannot be split into {stages} stages")
            positions = parse_positions(v["downsample_at"])
            spec_kw = dict(stage_depths=positions_to_depths(depth, positions))
        elif self.space.uniform_stages:
            spec_kw = dict(stage_depths=(v["blocks_per_stage"],) * stages)
        else:
            spec_kw = dict(stage_depths=tuple(v[f"stage{i}_blocks"] for i in range(1, stages + 1)))
        for key in ("stem", "base_filters", "growth", "width_multiplier", "block", "preact", "shortcut"):
            spec_kw[key] = v[key]
        if v["block"] == "bottleneck":
            spec_kw["bottleneck_stride"] = v["bottleneck_stride"]
            spec_kw["expansion"] = v["expansion"]
        spec_kw["growth"] = float(spec_kw["growth"])
        spec_kw["width_multiplier"] = float(spec_kw["width_multiplier"])
        return ResNetSpec(**spec_kw)

    def train_config(self, values: Mapping[str, Any]) -> TrainConfig:
        """The training config of a trial's values (see `training` for the values of unused keys)."""
        return train_config_from(self.canonical(values))

    def cost(self, spec: ResNetSpec) -> Cost:
        return count_cost(spec, self.input_shape, self.num_classes)

    def resolve(self, values: Mapping[str, Any]) -> tuple[ResNetSpec, TrainConfig, Cost]:
        """Spec, training config and cost of a point, or `InvalidConfig` saying why it is left out."""
        spec = self.spec(values)
        try:
            spec.validate(self.input_shape)
        except ValueError as e:
            raise InvalidConfig(str(e)) from None
        cost = self.cost(spec)
        if self.space.max_params and cost.params > self.space.max_params:
            raise InvalidConfig(f"{cost.params:,} parameters is over max_params={self.space.max_params:,}")
        if self.space.max_flops and cost.flops > self.space.max_flops:
            raise InvalidConfig(f"{cost.flops:,} multiply-adds is over max_flops={self.space.max_flops:,}")
        return spec, self.train_config(values), cost

    def check(self, values: Mapping[str, Any]) -> str | None:
        """None if the point can be trained, else the reason it is left out."""
        try:
            self.resolve(values)
        except InvalidConfig as e:
            return str(e)
        return None

    # ----- known configurations -------------------------------------------------------
    def values_from(self, known: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        """This space's keras-tuner values for a known configuration, or None and why it does not fit.

        `known` holds canonical names (``depth``, ``learning_rate``, ...; an earlier trial's
        ``hyperparameters`` or a ``[[try]]`` table); ``zoo`` names a zoo architecture. A value the
        space does not allow leaves the configuration out; a hyperparameter it does not give
        takes the space's default; the result must then be valid here (input size, cost limits).
        """
        import keras_tuner as kt

        known = {**(spec_values(zoo_spec(known["zoo"])) if "zoo" in known else {}),
                 **{k: v for k, v in known.items() if k not in ("zoo", "name")}}
        declared = kt.HyperParameters()
        self.declare(declared)
        active = kt.HyperParameters()
        for hp in declared.space:  # parents before their children
            active.merge([hp])
            if not active.is_active(hp):
                continue
            name = self.aliases.get(hp.name, hp.name)
            value = _allowed_value(hp, known[name]) if name in known else hp.default
            if value is _NOT_ALLOWED:
                return None, f"{name} = {known[name]!r} is not in this space: {_domain(hp)}"
            active.values[hp.name] = value
        values = dict(active.values)
        reason = self.check(values)
        return (values, None) if reason is None else (None, reason)

    def describe(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Every tuned value plus the derived layout, for TensorBoard and the leaderboard."""
        out = {k: v for k, v in self.canonical(values).items() if not k.startswith("tuner/")}
        try:
            spec = self.spec(values)
        except (InvalidConfig, KeyError):
            return out
        out["depth"] = spec.depth
        out["downsample_at"] = format_positions(spec.downsample_at)
        out["stage_depths"] = "-".join(map(str, spec.stage_depths))
        out["layers"] = spec.num_layers
        return out


_NOT_ALLOWED = object()


def spec_values(spec: ResNetSpec) -> dict[str, Any]:
    """A spec's architecture under the spaces' canonical names (both layouts')."""
    depth, positions = depths_to_positions(spec.stage_depths)
    out = {"stem": spec.stem, "depth": depth, "stages": len(spec.stage_depths),
           "downsample_at": format_positions(positions), "base_filters": spec.base_filters, "growth": spec.growth,
           "width_multiplier": spec.width_multiplier, "block": spec.block, "preact": spec.preact,
           "shortcut": spec.shortcut, "bottleneck_stride": spec.bottleneck_stride, "expansion": spec.expansion}
    if len(set(spec.stage_depths)) == 1:
        out["blocks_per_stage"] = spec.stage_depths[0]
    out.update({f"stage{i}_blocks": d for i, d in enumerate(spec.stage_depths, 1)})
    return out


def _allowed_value(hp, value):
    """`value` as hyperparameter `hp` holds it, or `_NOT_ALLOWED`."""
    import keras_tuner as kt

    kinds = kt.engine.hyperparameters
    if isinstance(hp, kinds.Fixed):
        return hp.value if value == hp.value else _NOT_ALLOWED
    if isinstance(hp, kinds.Boolean):
        return value if isinstance(value, bool) else _NOT_ALLOWED
    if isinstance(hp, kinds.Choice):
        same = [v for v in hp.values if v == value and isinstance(v, str) == isinstance(value, str)]
        if same:
            return same[0]
        numbers = [v for v in hp.values if isinstance(v, float)]
        if len(numbers) == len(hp.values) and _number(value) and min(numbers) <= value <= max(numbers):
            return min(numbers, key=lambda v: abs(v - value))  # a range the space offers as values: the nearest
        return _NOT_ALLOWED
    if not _number(value) or not hp.min_value <= value <= hp.max_value:
        return _NOT_ALLOWED
    if isinstance(hp, kinds.Int):
        if value != int(value) or (hp.step and hp.sampling != "log" and (value - hp.min_value) % hp.step):
            return _NOT_ALLOWED
        return int(value)
    return float(value)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _domain(hp) -> str:
    values = getattr(hp, "values", None)
    if values is not None:
        shown = sorted(values) if all(_number(v) for v in values) else values
        return "one of " + ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in shown)
    if hasattr(hp, "value"):
        return f"only {hp.value}"
    if hasattr(hp, "min_value"):
        return f"{hp.min_value} to {hp.max_value}"
    return "true or false"
