"""The application: data, hypermodel, Hyperband search CLI, TensorBoard logging, export.

``tuning.run_search(space="small", ...)`` runs a search from Python (the options of
`tuning.SearchConfig`, the same as ``python -m tuning.search``). Importing this package does not
import TensorFlow.
"""

from .config import SearchConfig
from .engine.finish import SearchResult

__all__ = ["SearchConfig", "SearchResult", "run_search"]


def run_search(config: SearchConfig | None = None, **kwargs) -> SearchResult | None:
    """`tuning.search.run_search` (imported when called: ``python -m tuning.search`` runs that
    module as the program, so the package must not import it first)."""
    from .search import run_search as run

    return run(config, **kwargs)
