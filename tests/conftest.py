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
