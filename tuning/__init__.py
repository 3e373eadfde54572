"""The application: data, hypermodel, Hyperband search CLI, TensorBoard logging, export.

``tuning.run_search(space="small", ...)`` runs a search from Python (the options of
`tuning.SearchConfig`, the same as ``python -m tuning.search``). Importing this package does not
import TensorFlow.
"""

from .config import SearchConfig
from .search import SearchResult, run_search

__all__ = ["SearchConfig", "SearchResult", "run_search"]
