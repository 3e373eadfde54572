"""The data of a search: the datasets and their seeded splits (`datasets`), the one pipeline of
every backend (`pipeline`), and folders of images streamed from disk (`images`; `decode` reads one
image as the search does)."""

from .datasets import BUILTIN, Data, load_data
from .images import decode

__all__ = ["BUILTIN", "Data", "decode", "load_data"]
