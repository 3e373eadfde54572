"""Parameters and multiply-adds of a spec, computed without building a model."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .layout import BlockPlan, plan
from .spec import ResNetSpec


@dataclasses.dataclass(frozen=True)
class Cost:
    """Cost of one network.

    Attributes:
        params: trainable parameters (conv kernels, BatchNorm gamma/beta, dense kernel + bias).
        non_trainable_params: BatchNorm moving means and variances.
        flops: multiply-adds of one forward pass of one image, counting convolutions and the
            dense head (BatchNorm, ReLU, additions and pooling are elementwise and left out,
            as in torchvision's published figures).
    """

    params: int
    non_trainable_params: int
    flops: int


class _Counter:
    def __init__(self) -> None:
        self.params = 0
        self.bn_channels = 0
        self.flops = 0

    def conv(self, cin: int, cout: int, k: int, out_size: tuple[int, int]) -> None:
        self.params += k * k * cin * cout
        self.flops += out_size[0] * out_size[1] * k * k * cin * cout

    def bn(self, channels: int) -> None:
        self.bn_channels += channels


def _block(c: _Counter, spec: ResNetSpec, bp: BlockPlan) -> None:
    out = bp.out_size
    if spec.preact:
        c.bn(bp.in_channels)
    if spec.block == "basic":
        c.conv(bp.in_channels, bp.width, 3, out)
        c.bn(bp.width)
        c.conv(bp.width, bp.width, 3, out)
        if not spec.preact:
            c.bn(bp.width)
    else:
        first_size = out if spec.bottleneck_stride == "1x1" else bp.in_size
        c.conv(bp.in_channels, bp.width, 1, first_size)
        c.bn(bp.width)
        c.conv(bp.width, bp.width, 3, out)
        c.bn(bp.width)
        c.conv(bp.width, bp.out_channels, 1, out)
        if not spec.preact:
            c.bn(bp.out_channels)
    if spec.shortcut == "C" or (spec.shortcut == "B" and bp.shape_changes):
        c.conv(bp.in_channels, bp.out_channels, 1, out)
        if not spec.preact:
            c.bn(bp.out_channels)


def count_cost(spec: ResNetSpec, input_shape: Sequence[int], num_classes: int) -> Cost:
    """Trainable parameters and multiply-adds of ``build_resnet(spec, input_shape, num_classes)``.

    Raises:
        ValueError: the spec is invalid or does not fit `input_shape`.
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} is invalid: expected a positive integer")
    layout = plan(spec, input_shape)
    c = _Counter()
    k = 7 if spec.stem == "imagenet" else 3
    c.conv(int(input_shape[2]), layout.stem_filters, k, layout.stem_conv_size)
    if not spec.preact:
        c.bn(layout.stem_filters)
    for bp in layout.blocks:
        _block(c, spec, bp)
    if spec.preact:
        c.bn(layout.out_channels)
    c.params += layout.out_channels * num_classes + num_classes
    c.flops += layout.out_channels * num_classes
    return Cost(params=c.params + 2 * c.bn_channels, non_trainable_params=2 * c.bn_channels, flops=c.flops)
