"""The one walk over a spec's layers that both the builder and the cost model follow.

`plan(spec, input_shape)` lists every block with its input/output channels, stride and
the spatial size it sees, so `build_resnet` and `count_cost` cannot disagree on shapes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from .spec import ResNetSpec


@dataclasses.dataclass(frozen=True)
class BlockPlan:
    name: str          # e.g. "stage2_block1"
    in_channels: int
    width: int         # filters of the 3x3 conv(s)
    out_channels: int
    stride: int
    in_size: tuple[int, int]   # spatial size of the block's input

    @property
    def out_size(self) -> tuple[int, int]:
        return halve(self.in_size, self.stride)

    @property
    def shape_changes(self) -> bool:
        return self.stride != 1 or self.in_channels != self.out_channels


@dataclasses.dataclass(frozen=True)
class Plan:
    stem_filters: int
    stem_conv_size: tuple[int, int]   # spatial size after the stem conv
    stem_out_size: tuple[int, int]    # after the stem (and its pool)
    blocks: tuple[BlockPlan, ...]

    @property
    def out_channels(self) -> int:
        return self.blocks[-1].out_channels


def halve(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """Spatial size after a 'same'-padded op of this stride."""
    return (math.ceil(size[0] / stride), math.ceil(size[1] / stride))


def plan(spec: ResNetSpec, input_shape: Sequence[int]) -> Plan:
    spec.validate(input_shape)
    size = (int(input_shape[0]), int(input_shape[1]))
    stem_filters = spec.stem_filters()
    if spec.stem == "imagenet":
        conv_size = halve(size, 2)
        out_size = halve(conv_size, 2)
    else:
        conv_size = out_size = size
    blocks = []
    channels = stem_filters
    size = out_size
    for s, (depth, width, out) in enumerate(
        zip(spec.stage_depths, spec.stage_widths(), spec.stage_out_channels()), start=1
    ):
        for b in range(1, depth + 1):
            stride = 2 if (s > 1 and b == 1) else 1
            bp = BlockPlan(f"stage{s}_block{b}", channels, width, out, stride, size)
            blocks.append(bp)
            channels, size = out, bp.out_size
    return Plan(stem_filters, conv_size, out_size, tuple(blocks))
