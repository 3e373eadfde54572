"""`build_resnet`: ResNetSpec -> keras.Model, functional API, Keras built-in layers only.

Layer names are hierarchical (``stem_conv``, ``stage2_block1_conv1``,
``stage2_block1_shortcut_conv``, ``head_dense``) so a model summary and TensorBoard's
graph read like the paper's tables.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence

import keras
from keras import layers

from .layout import BlockPlan, plan
from .spec import ResNetSpec, check_shape


class _Ops:
    """Layer factories bound to one spec's BatchNorm settings."""

    def __init__(self, spec: ResNetSpec):
        self.spec = spec

    def conv(self, x, filters: int, kernel: int, stride: int, name: str):
        if kernel == 1 and stride > 1:
            # The same as a strided 1x1 conv (pixels 0, s, 2s, ...; no padding), as subsampling
            # then a 1x1 conv: TensorFlow's oneDNN CPU kernel for the strided 1x1 conv's gradient
            # corrupts memory for 4-8 input channels and an odd batch of 7 or more.
            x = layers.MaxPooling2D(1, strides=stride, name=f"{name}_subsample")(x)
            stride = 1
        return layers.Conv2D(
            filters, kernel, strides=stride, padding="same", use_bias=False,
            kernel_initializer="he_normal", name=name,
        )(x)

    def bn(self, x, name: str):
        return layers.BatchNormalization(
            momentum=self.spec.bn_momentum, epsilon=self.spec.bn_epsilon, name=name
        )(x)

    def relu(self, x, name: str):
        return layers.ReLU(name=name)(x)

    def conv_bn(self, x, filters: int, kernel: int, stride: int, name: str, index: int):
        """conv -> BN (v1 follows it with ReLU; v2 puts BN-ReLU before the next conv)."""
        return self.bn(self.conv(x, filters, kernel, stride, f"{name}_conv{index}"), f"{name}_bn{index}")

    def shortcut(self, x, pre, bp: BlockPlan, name: str):
        """The skip path. `x` is the block input, `pre` its pre-activation (v2) or `x` (v1)."""
        kind = self.spec.shortcut
        if kind == "C" or (kind == "B" and bp.shape_changes):
            y = self.conv(pre, bp.out_channels, 1, bp.stride, f"{name}_shortcut_conv")
            # In v2 the sum is normalised by the next block's pre-activation BN.
            return y if self.spec.preact else self.bn(y, f"{name}_shortcut_bn")
        if kind == "A":
            y = x
            if bp.stride != 1:  # strided subsampling, x[:, ::2, ::2]
                y = layers.MaxPooling2D(1, strides=bp.stride, name=f"{name}_shortcut_pool")(y)
            pad = bp.out_channels - bp.in_channels
            if pad:  # zero-pad the channel axis (no parameters, built-in layers only)
                h, w = bp.out_size
                y = layers.Reshape((h, w, bp.in_channels, 1), name=f"{name}_shortcut_expand")(y)
                y = layers.ZeroPadding3D(((0, 0), (0, 0), (0, pad)), name=f"{name}_shortcut_pad")(y)
                y = layers.Reshape((h, w, bp.out_channels), name=f"{name}_shortcut_squeeze")(y)
            return y
        return x


def _basic(ops: _Ops, x, bp: BlockPlan, name: str):
    if ops.spec.preact:
        pre = ops.relu(ops.bn(x, f"{name}_preact_bn"), f"{name}_preact_relu")
        y = ops.conv(pre, bp.width, 3, bp.stride, f"{name}_conv1")
        y = ops.relu(ops.bn(y, f"{name}_bn1"), f"{name}_relu1")
        y = ops.conv(y, bp.width, 3, 1, f"{name}_conv2")
        return layers.Add(name=f"{name}_add")([ops.shortcut(x, pre, bp, name), y])
    y = ops.relu(ops.conv_bn(x, bp.width, 3, bp.stride, name, 1), f"{name}_relu1")
    y = ops.conv_bn(y, bp.width, 3, 1, name, 2)
    y = layers.Add(name=f"{name}_add")([ops.shortcut(x, x, bp, name), y])
    return ops.relu(y, f"{name}_out")


def _bottleneck(ops: _Ops, x, bp: BlockPlan, name: str):
    s1, s3 = (1, bp.stride) if ops.spec.bottleneck_stride == "3x3" else (bp.stride, 1)
    if ops.spec.preact:
        pre = ops.relu(ops.bn(x, f"{name}_preact_bn"), f"{name}_preact_relu")
        y = ops.conv(pre, bp.width, 1, s1, f"{name}_conv1")
        y = ops.relu(ops.bn(y, f"{name}_bn1"), f"{name}_relu1")
        y = ops.conv(y, bp.width, 3, s3, f"{name}_conv2")
        y = ops.relu(ops.bn(y, f"{name}_bn2"), f"{name}_relu2")
        y = ops.conv(y, bp.out_channels, 1, 1, f"{name}_conv3")
        return layers.Add(name=f"{name}_add")([ops.shortcut(x, pre, bp, name), y])
    y = ops.relu(ops.conv_bn(x, bp.width, 1, s1, name, 1), f"{name}_relu1")
    y = ops.relu(ops.conv_bn(y, bp.width, 3, s3, name, 2), f"{name}_relu2")
    y = ops.conv_bn(y, bp.out_channels, 1, 1, name, 3)
    y = layers.Add(name=f"{name}_add")([ops.shortcut(x, x, bp, name), y])
    return ops.relu(y, f"{name}_out")


@contextlib.contextmanager
def deep_graph_recursion(num_blocks: int) -> Iterator[None]:
    """Keras walks a functional graph recursively (once to build it, again to load it), about
    ten frames per residual block, so very deep nets (ResNet-1202) pass Python's default
    limit of 1000. Raise the limit for the duration and put it back afterwards."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 2000 + 40 * num_blocks))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


BLOCK_BUILDERS: dict[str, Callable] = {"basic": _basic, "bottleneck": _bottleneck}


def build_resnet(
    spec: ResNetSpec,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    preprocessing: Sequence[keras.layers.Layer] = (),
    name: str | None = None,
) -> keras.Model:
    """Build the network a spec describes.

    Args:
        spec: the architecture; validated against `input_shape` first.
        input_shape: ``(height, width, channels)`` of one raw input image.
        num_classes: outputs of the softmax head.
        preprocessing: Keras layers applied to the raw input before the stem (for example
            ``keras.layers.Resizing`` and a fitted ``keras.layers.Normalization``), so the saved
            model takes raw images. The spec is checked against their output shape.
        name: model name (default ``resnet{layers}``).

    Returns:
        An uncompiled functional ``keras.Model`` that outputs class probabilities (float32).
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} is invalid: expected a positive integer")
    if not isinstance(spec, ResNetSpec):
        raise ValueError(f"spec={spec!r} is invalid: expected a ResNetSpec")
    check_shape(input_shape)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for layer in preprocessing:
        x = layer(x)
    layout = plan(spec, tuple(x.shape[1:]))  # the stem sees the preprocessed (maybe resized) image
    ops = _Ops(spec)
    if spec.stem == "imagenet":
        x = ops.conv(x, layout.stem_filters, 7, 2, "stem_conv")
    else:
        x = ops.conv(x, layout.stem_filters, 3, 1, "stem_conv")
    if not spec.preact:  # v2 leaves the stem linear: the first block normalises it
        x = ops.relu(ops.bn(x, "stem_bn"), "stem_relu")
    if spec.stem == "imagenet":
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)

    block_fn = BLOCK_BUILDERS[spec.block]
    for bp in layout.blocks:
        x = block_fn(ops, x, bp, bp.name)

    if spec.preact:
        x = ops.relu(ops.bn(x, "post_bn"), "post_relu")
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="head_dense")(x)
    with deep_graph_recursion(spec.depth):
        return keras.Model(inputs, outputs, name=name or f"resnet{spec.num_layers}")
