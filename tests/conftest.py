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
