import os

# Quiet TensorFlow's C++ start-up log before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def seed() -> int:
    """One seed for every random thing in a test (numpy, Python, Keras)."""
    import keras

    keras.utils.set_random_seed(1234)
    return 1234


@pytest.fixture
def rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def tiny_space(tmp_path_factory) -> str:
    """A 2-epoch Hyperband space (5 trials on digits) that allows 5 halvings of an 8x8 input."""
    from .test_spaces import FIVE_HALVINGS

    path = tmp_path_factory.mktemp("space") / "tiny.toml"
    path.write_text(FIVE_HALVINGS)
    return str(path)


@pytest.fixture(scope="session")
def finished_run(tiny_space, tmp_path_factory):
    """(SearchResult, progress lines, results dir) of one finished tiny search, shared by the tests."""
    import tuning

    results = tmp_path_factory.mktemp("results")
    lines: list[str] = []
    result = tuning.run_search(space=tiny_space, results_dir=results, seed=0, log=lines.append)
    return result, lines, results


BLOCK_TENSORFLOW = '''"""Makes TensorFlow unimportable in this interpreter, as if it were not installed."""
import importlib.abc
import sys


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoTensorFlow())
'''


def without_tensorflow(tmp_path, backend: str = "jax") -> dict:
    """Environment for a subprocess in which `import tensorflow` fails (ModuleNotFoundError), as
    on a machine without TensorFlow, and Keras uses `backend`. Child processes inherit it."""
    import pathlib

    shim = pathlib.Path(tmp_path) / "no_tensorflow"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "sitecustomize.py").write_text(BLOCK_TENSORFLOW)
    root = str(pathlib.Path(__file__).resolve().parents[1])
    path = [str(shim), root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "KERAS_BACKEND": backend}


@pytest.fixture
def no_tf_env(tmp_path) -> dict:
    """`without_tensorflow(tmp_path)`: a JAX environment where TensorFlow cannot be imported."""
    return without_tensorflow(tmp_path)
