"""The search: ``python -m tuning.search`` (`cli`) and `run_search` (`runner`); one process's part
of it (`session`) and its end (`finish`); trial processes supervised (`supervise`, whose children
run `trial_process`); and chief and workers (`workers`). Importing it does not import Keras."""

from .finish import SearchResult
from .runner import run_search

__all__ = ["SearchResult", "run_search"]
