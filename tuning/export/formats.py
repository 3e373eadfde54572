"""The formats an export writes besides ``model.keras``: a TensorFlow SavedModel and TFLite, which
need TensorFlow (where it is not installed they are left out, or refused when asked for by name).
A run searched on JAX makes them from ``model.keras`` on the TensorFlow backend, in a subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Sequence

from ..errors import UsageError
from ..runtime import installed

FORMATS = ("keras", "savedmodel", "tflite")
DEFAULT_FORMATS = ("keras", "savedmodel")
TENSORFLOW_FORMATS = ("savedmodel", "tflite")


def check_formats(formats: Sequence[str] | None, log) -> tuple[str, ...]:
    """The formats asked for (None: the default ones that can be made here), without repeats,
    with ``keras`` first if it was left out. TensorFlow's formats without TensorFlow: refused
    when asked for by name."""
    if formats is None:
        formats = DEFAULT_FORMATS
        if not installed("tensorflow"):
            log("note: TensorFlow is not installed, so the export has no SavedModel (pip install tensorflow to "
                "get one); model.keras loads on any Keras backend")
            formats = tuple(f for f in formats if f not in TENSORFLOW_FORMATS)
    formats = tuple(dict.fromkeys(formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"unknown format(s) {bad or formats}; choose from {', '.join(FORMATS)}")
    need_tf = [f for f in formats if f in TENSORFLOW_FORMATS]
    if need_tf and not installed("tensorflow"):
        raise UsageError(f"format {need_tf[0]} needs TensorFlow, which is not installed here; install it (pip install "
                         "tensorflow) or export --format keras, which loads on any Keras backend")
    if "keras" not in formats:
        formats = ("keras", *formats)  # the card's accuracy is measured on the .keras file
    return formats


def save_tensorflow_formats(model, folder: pathlib.Path, formats: Sequence[str], verbose: bool) -> dict[str, str]:
    """SavedModel and/or TFLite of `model` (on the TensorFlow backend) into `folder`."""
    files = {}
    if "savedmodel" in formats:
        with contextlib.redirect_stdout(sys.stderr if verbose else open(os.devnull, "w")):
            model.export(str(folder / "savedmodel"), format="tf_saved_model", verbose=verbose)
        files["savedmodel"] = "savedmodel/"
    if "tflite" in formats:
        _to_tflite(folder / "savedmodel" if "savedmodel" in formats else None, model, folder / "model.tflite")
        files["tflite"] = "model.tflite"
    return files


_TF_SCRIPT = """
import json, pathlib, sys
from tuning.runtime import import_keras
import_keras("tensorflow", verbose=sys.argv[4] == "1")
import keras
from tuning.export.formats import save_tensorflow_formats
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
print(json.dumps(save_tensorflow_formats(model, pathlib.Path(sys.argv[2]), sys.argv[3].split(","), sys.argv[4] == "1")))
"""


def tensorflow_formats_in_subprocess(keras_path: pathlib.Path, folder: pathlib.Path, formats: Sequence[str],
                                      verbose: bool) -> dict[str, str]:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run([sys.executable, "-c", _TF_SCRIPT, str(keras_path), str(folder), ",".join(formats),
                           "1" if verbose else "0"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"making {', '.join(formats)} on the TensorFlow backend failed: "
                           f"{(done.stderr.strip().splitlines() or ['no message'])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _to_tflite(saved_model: pathlib.Path | None, model, path: pathlib.Path) -> None:
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as scratch:
        if saved_model is None:
            saved_model = pathlib.Path(scratch) / "sm"
            with contextlib.redirect_stdout(open(os.devnull, "w")):
                model.export(str(saved_model), format="tf_saved_model", verbose=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite's notes about its move to LiteRT
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
            path.write_bytes(converter.convert())
