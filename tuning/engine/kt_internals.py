"""The one module that touches keras-tuner's private modules (``keras_tuner.src``).

keras-tuner is pinned to one minor version (`tuning.runtime.check_keras_tuner`), since these
names are not its public API.
"""

from keras_tuner.src import config as _kt_config
from keras_tuner.src.engine.tuner_utils import SaveBestEpoch, TunerCallback
from keras_tuner.src.tuners.hyperband import HyperbandOracle

__all__ = ["HyperbandOracle", "SaveBestEpoch", "TunerCallback", "keras_tuner_debug"]


def keras_tuner_debug(on: bool) -> None:
    """keras-tuner's DEBUG flag (it prints every failed trial's traceback when on)."""
    _kt_config.DEBUG = on
