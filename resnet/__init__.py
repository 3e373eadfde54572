"""A pure Keras 3 library of residual networks (He et al. 2015/2016).

Imports `keras` only, so the models run on the TensorFlow, JAX and PyTorch backends, and
saved models use built-in layers only. The spec, cost model and zoo are plain Python:
`build_resnet` imports Keras on first use, so describing and costing networks is instant.
"""

from .cost import Cost, count_cost
from .spec import (
    BLOCKS,
    SHORTCUTS,
    STEMS,
    ResNetSpec,
    depths_to_positions,
    max_halvings,
    positions_to_depths,
)
from .zoo import ZOO, ZooEntry, zoo_entry, zoo_spec

__all__ = [
    "BLOCKS", "SHORTCUTS", "STEMS", "ZOO", "Cost", "ResNetSpec", "ZooEntry", "build_resnet",
    "count_cost", "depths_to_positions", "max_halvings", "positions_to_depths", "zoo_entry", "zoo_spec",
]


def __getattr__(name):
    if name == "build_resnet":
        from .builder import build_resnet

        return build_resnet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
