"""Named search spaces (TOML data files) and the one sampler that turns them into ResNet specs.

A space is data, never a Python class: ``load_space("small")`` reads ``small.toml`` from this
folder, ``load_space("path/to/mine.toml")`` reads a user's file the same way.
"""

from .loader import (
    Param,
    Space,
    SpaceError,
    list_spaces,
    load_space,
    load_space_file,
    named_spaces,
    parse_space,
)
from .sampler import InvalidConfig, Sampler, TrainConfig, format_positions, parse_positions

__all__ = [
    "InvalidConfig", "Param", "Sampler", "Space", "SpaceError", "TrainConfig", "format_positions",
    "list_spaces", "load_space", "load_space_file", "named_spaces", "parse_positions", "parse_space",
]
