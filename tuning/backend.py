"""The Keras backend of a search: which one, chosen before Keras is imported.

A search runs on TensorFlow (the default) or JAX. The backend is fixed once per process by
``KERAS_BACKEND``, which Keras reads when it is first imported, so `select` sets it before
anything imports Keras, in the search's own process and (inherited) in every trial process and
worker. Nothing here imports Keras, TensorFlow or JAX.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pathlib

from .errors import UsageError

BACKENDS = ("tensorflow", "jax")
INSTALL = {
    "tensorflow": "pip install 'resnet-search[tensorflow]' (or tensorflow[and-cuda] for NVIDIA GPUs)",
    "jax": "pip install 'resnet-search[jax]' (the CPU build; for NVIDIA GPUs pip install 'jax[cuda12]')",
}


def configured() -> str:
    """The backend Keras would use: ``KERAS_BACKEND``, else ``backend`` in
    ``$KERAS_HOME/keras.json`` (default ``~/.keras``), else TensorFlow; as Keras decides it."""
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    home = pathlib.Path(os.environ.get("KERAS_HOME") or pathlib.Path.home() / ".keras")
    with contextlib.suppress(OSError, ValueError, AttributeError):
        name = json.loads((home / "keras.json").read_text()).get("backend")
    return name or "tensorflow"


def installed(name: str) -> bool:
    """Whether the backend's library can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check(name: str) -> str:
    """`name` if it is a backend this package supports and it is installed; else UsageError."""
    if name not in BACKENDS:
        raise UsageError(f"backend = {name!r} is not supported: choose {' or '.join(BACKENDS)} (from --backend, "
                         "KERAS_BACKEND or ~/.keras/keras.json)")
    if not installed(name):
        raise UsageError(f"the {name} backend is not installed here; install it with {INSTALL[name]}, or choose "
                         f"the other backend with --backend {next(b for b in BACKENDS if b != name)}")
    return name


def select(name: str) -> None:
    """Make `name` the Keras backend of this process (if Keras is not imported yet: see
    `tuning.runtime.import_keras`, which checks) and of every process it starts."""
    os.environ["KERAS_BACKEND"] = name
