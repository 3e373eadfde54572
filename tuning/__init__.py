"""The application: data, hypermodel, Hyperband search CLI, TensorBoard logging, export.

``tuning.search(space="small", ...)`` runs a search from Python (the same options as
``python -m tuning.search``). Importing this package does not import TensorFlow.
"""


def __getattr__(name):
    # `tuning.search` is both the CLI module and its main function; hand out the function
    # without importing the module at package import (which `python -m tuning.search` runs).
    if name in ("search", "SearchResult"):
        import importlib

        module = importlib.import_module(f"{__name__}.search")
        globals()["search"] = module.search
        globals()["SearchResult"] = module.SearchResult
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
