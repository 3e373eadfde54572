"""The machine a benchmark ran on, as its figures record it."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from ..processes.system import cpu_model
from ..runtime import versions


def accelerators() -> list[str]:
    """The GPUs the current Keras backend sees (empty on a CPU)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform == "gpu"]
    if keras.backend.backend() == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def machine() -> dict[str, Any]:
    import keras

    info = versions()
    info["keras_backend"] = keras.backend.backend()
    if info["keras_backend"] in ("jax", "torch"):
        info[info["keras_backend"]] = metadata.version(info["keras_backend"])
    info["devices"] = accelerators() or ["CPU"]
    info["cpu"] = cpu_model()
    return info
