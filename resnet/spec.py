"""`ResNetSpec`: a complete, serialisable description of a residual network.

The blocks are stored as per-stage depths. The equivalent "total depth plus the
block indices where the feature map is halved" form (the 2015 paper's ResNet-34 is
16 basic blocks halving at blocks 4, 8 and 14) converts both ways with
`positions_to_depths` / `depths_to_positions`, `ResNetSpec.from_positions` and the
`depth` / `downsample_at` properties.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

STEMS = ("imagenet", "cifar")
BLOCKS = ("basic", "bottleneck")
SHORTCUTS = ("A", "B", "C")
BOTTLENECK_STRIDES = ("3x3", "1x1")

# Halvings of the feature map done by each stem before the first stage.
STEM_HALVINGS = {"imagenet": 2, "cifar": 0}


def positions_to_depths(depth: int, downsample_at: Sequence[int]) -> tuple[int, ...]:
    """Convert a total block count and 1-based halving positions into stage depths.

    Args:
        depth: total number of residual blocks.
        downsample_at: 1-based indices of the blocks that halve the feature map;
            each one starts a new stage. Strictly increasing, each in 2..depth.

    Returns:
        The number of blocks in each stage, e.g. ``(16, [4, 8, 14]) -> (3, 4, 6, 3)``.
    """
    if not _is_int(depth) or depth < 1:
        raise ValueError(f"depth={depth!r} is invalid: it must be a positive integer (total residual blocks)")
    positions = list(downsample_at)
    for p in positions:
        if not _is_int(p) or not 2 <= p <= depth:
            raise ValueError(
                f"downsample_at={positions!r} is invalid: every position must be an integer block index "
                f"in 2..{depth} (block 1 always belongs to the first stage)"
            )
    if any(b <= a for a, b in zip(positions, positions[1:])):
        raise ValueError(f"downsample_at={positions!r} is invalid: positions must be strictly increasing")
    bounds = [1, *positions, depth + 1]
    return tuple(b - a for a, b in zip(bounds, bounds[1:]))


def depths_to_positions(stage_depths: Sequence[int]) -> tuple[int, tuple[int, ...]]:
    """Inverse of `positions_to_depths`: ``(3, 4, 6, 3) -> (16, (4, 8, 14))``."""
    depths = list(stage_depths)
    positions = []
    start = 1
    for d in depths[:-1]:
        start += d
        positions.append(start)
    return sum(depths), tuple(positions)


def max_halvings(size: int) -> int:
    """How many times a side of `size` pixels can be halved ('same' padding) before it is 1."""
    n = 0
    while size > 1:
        size = math.ceil(size / 2)
        n += 1
    return n


def check_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """`input_shape` as a tuple, or `ValueError` unless it is (height, width, channels) > 0."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = input_shape
    if not isinstance(shape, tuple) or len(shape) != 3 or not all(_is_int(s) and s >= 1 for s in shape):
        raise ValueError(
            f"input_shape={shape!r} is invalid: expected (height, width, channels) as positive integers"
        )
    return shape


def _article(n: int) -> str:
    """'an' before numbers read with a leading vowel sound (8, 11, 18, 80-89, 800...)."""
    text = str(n)
    return "an" if text.startswith("8") or (len(text) in (2, 5, 8) and text[:2] in ("11", "18")) else "a"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
    """Everything needed to build one residual network (but not its input or head size).

    Attributes:
        stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max-pool) or ``"cifar"`` (3x3/1 conv).
        stage_depths: residual blocks per stage. Every stage after the first halves the
            feature map in its first block and multiplies the width by `growth`.
        block: ``"basic"`` (two 3x3 convs) or ``"bottleneck"`` (1x1, 3x3, 1x1 x `expansion`).
        base_filters: width of the first stage (and of the stem), before `width_multiplier`.
        growth: width factor applied at each downsample (the paper doubles: 2.0).
        width_multiplier: scales every width (stem included); widths are rounded to integers.
        preact: False for the original post-activation block (v1), True for pre-activation (v2).
        shortcut: ``"A"`` zero-padded identity with strided subsampling (no parameters),
            ``"B"`` 1x1 projection only where the shape changes, ``"C"`` projection on every block.
        bottleneck_stride: where a bottleneck block strides: ``"3x3"`` (torchvision's v1.5)
            or ``"1x1"`` (the original paper: on the first 1x1 conv).
        expansion: output channels of a bottleneck block divided by its inner width.
        bn_momentum: BatchNorm moving-average momentum (Keras convention; 0.9 = PyTorch's 0.1).
        bn_epsilon: BatchNorm epsilon.
    """

    stem: str = "cifar"
    stage_depths: tuple[int, ...] = (3, 3, 3)
    block: str = "basic"
    base_filters: int = 16
    growth: float = 2.0
    width_multiplier: float = 1.0
    preact: bool = False
    shortcut: str = "B"
    bottleneck_stride: str = "3x3"
    expansion: int = 4
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    def __post_init__(self) -> None:
        # Accept lists (e.g. from JSON) but store a hashable tuple.
        if isinstance(self.stage_depths, (list, tuple)):
            object.__setattr__(self, "stage_depths", tuple(self.stage_depths))

    # ----- the two equivalent forms of the block layout ------------------------------
    @classmethod
    def from_positions(cls, depth: int, downsample_at: Sequence[int], **fields: Any) -> "ResNetSpec":
        """Make a spec from a total block count and 1-based halving positions."""
        return cls(stage_depths=positions_to_depths(depth, downsample_at), **fields)

    @property
    def depth(self) -> int:
        """Total number of residual blocks."""
        return sum(self.stage_depths)

    @property
    def downsample_at(self) -> tuple[int, ...]:
        """1-based indices of the blocks that halve the feature map."""
        return depths_to_positions(self.stage_depths)[1]

    @property
    def num_layers(self) -> int:
        """Weighted layers as the papers count them (convs on the main path + the dense head)."""
        per_block = 3 if self.block == "bottleneck" else 2
        return 1 + per_block * self.depth + 1

    @property
    def halvings(self) -> int:
        """Times the feature map is halved between the input and the pooling head."""
        return STEM_HALVINGS.get(self.stem, 0) + len(self.stage_depths) - 1

    # ----- widths -----------------------------------------------------------------------
    def stage_widths(self) -> tuple[int, ...]:
        """Inner width of each stage (the 3x3 convs' filters)."""
        return tuple(
            max(1, int(round(self.base_filters * self.width_multiplier * self.growth**i)))
            for i in range(len(self.stage_depths))
        )

    def stem_filters(self) -> int:
        return max(1, int(round(self.base_filters * self.width_multiplier)))

    def stage_out_channels(self) -> tuple[int, ...]:
        mult = self.expansion if self.block == "bottleneck" else 1
        return tuple(w * mult for w in self.stage_widths())

    # ----- validation -------------------------------------------------------------------
    def validate(self, input_shape: Sequence[int] | None = None) -> "ResNetSpec":
        """Raise `ValueError` naming the field, its value and what is allowed; else return self.

        Args:
            input_shape: optional ``(height, width, channels)``; when given, also checks that
                the downsampling fits the input (a 1x1 map cannot be halved again).
        """
        def bad(field: str, allowed: str) -> ValueError:
            return ValueError(f"{field}={getattr(self, field)!r} is invalid: {allowed}")

        if self.stem not in STEMS:
            raise bad("stem", f"expected one of {', '.join(repr(s) for s in STEMS)}")
        if self.block not in BLOCKS:
            raise bad("block", f"expected one of {', '.join(repr(s) for s in BLOCKS)}")
        if self.shortcut not in SHORTCUTS:
            raise bad("shortcut", "expected 'A' (zero-padded identity), 'B' (projection where the shape "
                                  "changes) or 'C' (projection on every block)")
        if self.bottleneck_stride not in BOTTLENECK_STRIDES:
            raise bad("bottleneck_stride", "expected '3x3' (v1.5) or '1x1' (original paper)")
        if not isinstance(self.preact, bool):
            raise bad("preact", "expected True (pre-activation, v2) or False (post-activation, v1)")
        depths = self.stage_depths
        if (not isinstance(depths, tuple) or not depths
                or not all(_is_int(d) and d >= 1 for d in depths)):
            raise bad("stage_depths", "expected a non-empty list of positive integers (blocks per stage)")
        if not _is_int(self.base_filters) or self.base_filters < 1:
            raise bad("base_filters", "expected a positive integer")
        if not _is_num(self.growth) or self.growth <= 0:
            raise bad("growth", "expected a positive number (2.0 doubles the width at each downsample)")
        if not _is_num(self.width_multiplier) or self.width_multiplier <= 0:
            raise bad("width_multiplier", "expected a positive number")
        if not _is_int(self.expansion) or self.expansion < 1:
            raise bad("expansion", "expected a positive integer (4 in the paper)")
        if not _is_num(self.bn_momentum) or not 0 <= self.bn_momentum < 1:
            raise bad("bn_momentum", "expected a number in [0, 1)")
        if not _is_num(self.bn_epsilon) or self.bn_epsilon <= 0:
            raise bad("bn_epsilon", "expected a positive number")
        if self.shortcut == "A":
            channels = [self.stem_filters(), *self.stage_out_channels()]
            for i, (a, b) in enumerate(zip(channels, channels[1:]), start=1):
                if b < a:
                    raise bad("shortcut", f"shortcut 'A' zero-pads channels, but stage {i} narrows them "
                                          f"from {a} to {b}; use shortcut 'B' or a growth of at least 1")
        if input_shape is not None:
            self.check_input(input_shape)
        return self

    def check_input(self, input_shape: Sequence[int]) -> None:
        """Check that `input_shape` is (height, width, channels) and the network fits it."""
        h, w, _ = check_shape(input_shape)
        allowed = max_halvings(min(h, w))
        if self.halvings > allowed:
            stem_part = STEM_HALVINGS[self.stem]
            max_stages = allowed - stem_part + 1
            fix = (f"use at most {max_stages} stages ({max_stages - 1} downsample positions)"
                   if max_stages >= 1 else "use the 'cifar' stem")
            raise ValueError(
                f"stage_depths={self.stage_depths!r} with stem={self.stem!r} halves the feature map "
                f"{self.halvings} times ({stem_part} in the stem, {len(self.stage_depths) - 1} at "
                f"downsample_at={list(self.downsample_at)}), but {_article(h)} {h}x{w} input allows at most "
                f"{allowed} halvings; {fix}, or a larger input"
            )

    # ----- serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["stage_depths"] = list(self.stage_depths)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ResNetSpec":
        """Inverse of `to_dict`. Also accepts ``depth`` + ``downsample_at`` instead of
        ``stage_depths``. Unknown keys raise `ValueError`."""
        data = dict(data)
        names = {f.name for f in dataclasses.fields(cls)}
        if "depth" in data or "downsample_at" in data:
            if "stage_depths" in data:
                raise ValueError("give either stage_depths or depth + downsample_at, not both")
            if "depth" not in data or "downsample_at" not in data:
                raise ValueError("depth and downsample_at must be given together")
            data["stage_depths"] = positions_to_depths(data.pop("depth"), data.pop("downsample_at"))
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown ResNetSpec field(s) {unknown}; known fields: {sorted(names)}")
        return cls(**data)
