"""Process set-up shared by the CLIs: quiet TensorFlow start-up, seeds, versions, atomic writes."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import platform
import sys
import tempfile
from typing import Any


@contextlib.contextmanager
def _stderr_to_devnull():
    """Send file descriptor 2 to /dev/null (C++ libraries write there, bypassing sys.stderr)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow(verbose: bool = False, gpus: str | None = None):
    """Import TensorFlow and Keras; unless `verbose`, hide their C++ start-up log lines.

    `TF_CPP_MIN_LOG_LEVEL` silences TensorFlow's own runtime messages but not the absl lines
    printed while the shared libraries load, so those are dropped by pointing stderr at
    /dev/null for the duration of the import.

    `gpus` (``"0,1"``) restricts this process to those GPU indices; an index that does not
    exist is refused (UsageError naming the GPUs there are). It must be given on the first call.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    ctx = contextlib.nullcontext() if verbose else _stderr_to_devnull()
    with ctx:
        import tensorflow as tf  # noqa: I001 (TensorFlow first, then Keras on top of it)
        import keras  # noqa: F401

        devices = tf.config.list_physical_devices("GPU")
        if gpus is not None:  # before the runtime starts: visibility cannot change afterwards
            require_gpus(gpus, [d.name for d in devices])
            wanted = {int(g) for g in gpus.split(",") if g.strip()}
            tf.config.set_visible_devices([d for i, d in enumerate(devices) if i in wanted], "GPU")
        # Also before the runtime starts (afterwards it cannot change): each process takes GPU memory
        # as it needs it, so workers, and a trial process and its standby, can share a GPU.
        for device in tf.config.get_visible_devices("GPU"):
            with contextlib.suppress(RuntimeError, ValueError):
                tf.config.experimental.set_memory_growth(device, True)
        tf.constant(0)  # initialises the runtime (device discovery logs) while stderr is muted
    if not verbose:
        tf.get_logger().setLevel("ERROR")
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    return tf


def require_gpus(gpus: str, available: list[str]) -> None:
    """Refuse (UsageError) GPU indices in `gpus` ("0,1") beyond the `available` devices' count."""
    from .errors import UsageError

    if not all(g.strip().isdigit() for g in str(gpus).split(",")):
        raise UsageError(f"--gpus {gpus!r} is invalid: give GPU indices such as 0 or 0,1")
    missing = [g.strip() for g in gpus.split(",") if g.strip() and int(g) >= len(available)]
    if not missing:
        return
    there = (f"this machine has {len(available)} GPU(s): "
             + ", ".join(f"{i} ({name})" for i, name in enumerate(available))) if available else \
        "this machine has no GPU that TensorFlow can use"
    raise UsageError(f"--gpus {gpus}: no GPU {', '.join(missing)}; {there}. Give indices that exist, or leave "
                     "--gpus out to use what there is (the CPU when there is no GPU)")


def check_keras_tuner() -> None:
    """The search uses keras-tuner's internals as of 1.4: refuse another minor version in one line."""
    from importlib import metadata

    from .errors import UsageError

    try:
        version = metadata.version("keras-tuner")
    except metadata.PackageNotFoundError:
        version = "none"
    if not version.startswith("1.4."):
        raise UsageError(f"keras-tuner {version} is installed, but this package was tested with 1.4 and relies on its "
                         "internals; install it with: pip install 'keras-tuner>=1.4.7,<1.5'")


def dtype_policy(precision: str, on_gpu: bool) -> str:
    """The Keras dtype policy of a precision choice: ``auto`` is mixed float16 on a GPU and
    float32 on a CPU; ``mixed`` is mixed float16 on a GPU and mixed bfloat16 on a CPU (float16
    has no fast CPU kernels); ``bfloat16`` is mixed bfloat16; ``float32`` is float32."""
    if precision == "auto":
        return "mixed_float16" if on_gpu else "float32"
    if precision == "mixed":
        return "mixed_float16" if on_gpu else "mixed_bfloat16"
    if precision == "bfloat16":
        return "mixed_bfloat16"
    if precision == "float32":
        return "float32"
    raise ValueError(f"precision={precision!r} is invalid: expected auto, float32, mixed or bfloat16")


def setup_devices(precision: str = "auto", jit: bool | None = None) -> dict:
    """Memory growth on every GPU (so several workers can share one; `import_tensorflow` already
    set it), the precision policy and XLA. ``auto`` means mixed precision and XLA on a GPU, float32
    and no XLA on a CPU.

    Returns what was chosen: ``{"gpus", "policy", "jit"}``.
    """
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        with contextlib.suppress(RuntimeError):  # already initialised: growth can no longer change
            tf.config.experimental.set_memory_growth(gpu, True)
    policy = dtype_policy(precision, bool(gpus))
    keras.mixed_precision.set_global_policy(policy)
    return {"gpus": [g.name for g in gpus], "policy": policy, "jit": bool(gpus) if jit is None else jit}


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a run depends on."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("tensorflow", "keras", "keras-tuner", "tensorboard", "numpy", "scikit-learn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    out["machine"] = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    return out


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process (Linux), in MB."""
    with open(f"/proc/{pid}/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` via a temporary file and rename, so readers never see half a file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, pathlib.Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def stdout_log():
    """A progress printer to this process's stdout as it is now: keras-tuner's own prints are
    silenced later by redirecting `sys.stdout`, and progress lines must not be."""
    stdout = sys.stdout

    def log(line: str) -> None:
        print(line, file=stdout, flush=True)

    return log
