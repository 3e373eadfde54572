"""What a process of this package runs on: the Keras backend, chosen before Keras is imported and
started quietly; its devices and precision; its out-of-memory errors; the library versions.

A search runs on TensorFlow (the default) or JAX. The backend is fixed once per process by
``KERAS_BACKEND``, which Keras reads when it is first imported, so `select` sets it before
anything imports Keras, in the search's own process and (inherited) in every trial process and
worker. Importing this module imports no backend.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pathlib
import platform
import sys

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
    ``import_keras``, which checks) and of every process it starts."""
    os.environ["KERAS_BACKEND"] = name


@contextlib.contextmanager
def quiet_stderr():
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
    ctx = contextlib.nullcontext() if verbose else quiet_stderr()
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


def require_gpus(gpus: str, available: list[str], wanted_visible: bool = False) -> None:
    """Refuse (UsageError) GPU indices in `gpus` ("0,1") beyond the `available` devices' count
    (`wanted_visible`: `available` are the wanted GPUs that were found, in the wanted order)."""
    if not all(g.strip().isdigit() for g in str(gpus).split(",")):
        raise UsageError(f"--gpus {gpus!r} is invalid: give GPU indices such as 0 or 0,1")
    wanted = [g.strip() for g in gpus.split(",") if g.strip()]
    missing = wanted[len(available):] if wanted_visible else [g for g in wanted if int(g) >= len(available)]
    if not missing:
        return
    there = (f"this machine has {len(available)} GPU(s): "
             + ", ".join(f"{i} ({name})" for i, name in enumerate(available))) if available else \
        "this machine has no GPU that the Keras backend can use"
    raise UsageError(f"--gpus {gpus}: no GPU {', '.join(missing)}; {there}. Give indices that exist, or leave "
                     "--gpus out to use what there is (the CPU when there is no GPU)")


def check_keras_tuner() -> None:
    """The search uses keras-tuner's internals as of 1.4: refuse another minor version in one line."""
    from importlib import metadata

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


def import_keras(backend: str, verbose: bool = False, gpus: str | None = None, cache_dir=None):
    """Import Keras on `backend` (``tensorflow`` or ``jax``), quietly unless `verbose`.

    `gpus` (``"0,1"``) restricts this process to those GPU indices (refused with a UsageError
    naming the GPUs there are when one does not exist). `cache_dir` is where compiled steps are
    kept (JAX's persistent compilation cache; TensorFlow's XLA cache when XLA is on), so a
    configuration trained again (a promotion, a resumed trial, a fresh trial process) loads its
    compiled step instead of compiling it again. Returns the backend's module (``tensorflow``
    or ``jax``).
    """
    select(backend)
    if backend == "tensorflow":
        flags = os.environ.get("TF_XLA_FLAGS", "")
        if cache_dir is not None and "--tf_xla_persistent_cache_directory" not in flags:
            # With XLA (--jit), TensorFlow's own persistent cache of compiled steps, read when
            # TensorFlow first compiles; it makes the folder when it first writes.
            os.environ["TF_XLA_FLAGS"] = f"{flags} --tf_xla_persistent_cache_directory={cache_dir}".strip()
        module = import_tensorflow(verbose, gpus)
    else:
        module = _import_jax(verbose, gpus, cache_dir)
    import keras

    if keras.backend.backend() != backend:
        raise UsageError(f"Keras is already imported with the {keras.backend.backend()} backend in this process, "
                         f"so a search cannot run on {backend} here; set KERAS_BACKEND={backend} before importing "
                         "Keras, or run the search from the command line")
    return module


def _import_jax(verbose: bool, gpus: str | None, cache_dir):
    # Take GPU memory as needed (as TensorFlow's memory growth): workers, and a trial process and
    # its standby, can then share a GPU.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    with contextlib.nullcontext() if verbose else quiet_stderr():
        import jax

        if gpus is not None:  # before the backend starts: visibility cannot change afterwards
            jax.config.update("jax_cuda_visible_devices", ",".join(g.strip() for g in gpus.split(",")))
        if cache_dir is not None:
            jax.config.update("jax_compilation_cache_dir", str(cache_dir))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        try:
            found = [str(d) for d in jax.devices("gpu")]
        except RuntimeError:  # no GPU platform here
            found = []
        import keras  # noqa: F401
    if gpus is not None:
        require_gpus(gpus, found, wanted_visible=True)
    compile_clock.install()
    return jax


def gpu_names() -> list[str]:
    """The GPUs this process's backend uses (none on a CPU)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform == "gpu"]
    import tensorflow as tf

    return [g.name for g in tf.config.list_physical_devices("GPU")]


class _CompileClock:
    """Seconds JAX has spent tracing, lowering and compiling (or loading compiled) steps in
    this process, from JAX's own monitoring events."""

    EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
              "/jax/core/compile/backend_compile_duration")

    def __init__(self):
        self.seconds, self._installed = 0.0, False

    def install(self) -> None:
        if self._installed:
            return
        import jax

        jax.monitoring.register_event_duration_secs_listener(self._on_duration)
        self._installed = True

    @property
    def exact(self) -> bool:
        """Whether compile time is measured (JAX), not estimated from the first batches."""
        return self._installed

    def _on_duration(self, event: str, duration: float, **kwargs) -> None:
        if event in self.EVENTS:
            self.seconds += duration


compile_clock = _CompileClock()


def setup_devices(precision: str = "auto", jit: bool | None = None) -> dict:
    """The precision policy and XLA for this process's backend (GPU memory growth is already
    set by `import_keras`). ``auto`` means mixed precision on a GPU and float32 on a CPU; XLA on
    a GPU on TensorFlow, always on JAX (whose steps are always compiled).

    Returns what was chosen: ``{"backend", "gpus", "policy", "jit"}``.
    """
    import keras

    backend = keras.backend.backend()
    gpus = gpu_names()
    policy = dtype_policy(precision, bool(gpus))
    keras.mixed_precision.set_global_policy(policy)
    default_jit = True if backend == "jax" else bool(gpus)
    return {"backend": backend, "gpus": gpus, "policy": policy, "jit": default_jit if jit is None else jit}


def out_of_memory(message: str) -> Exception:
    """The error this process's backend raises when a device runs out of memory."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.errors.JaxRuntimeError(f"RESOURCE_EXHAUSTED: {message}")
    import tensorflow as tf

    return tf.errors.ResourceExhaustedError(None, None, message)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is a device running out of memory, on either backend (TensorFlow's
    ResourceExhaustedError; XLA's RESOURCE_EXHAUSTED status, which JAX raises as a runtime error)."""
    return (type(error).__name__ == "ResourceExhaustedError"
            or (isinstance(error, RuntimeError) and str(error).startswith("RESOURCE_EXHAUSTED")))


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a run depends on."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("tensorflow", "jax", "jaxlib", "keras", "keras-tuner", "tensorboard", "numpy", "scikit-learn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    out["machine"] = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"
    return out
