"""A saved .keras file loads with plain Keras in a fresh process and predicts the same."""

import json
import subprocess
import sys
import textwrap

import numpy as np

from resnet import ResNetSpec, build_resnet

LOADER = textwrap.dedent(
    """
    import os, sys, json
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, keras
    x = np.load(sys.argv[1])
    layers = []
    for i, path in enumerate(sys.argv[2:]):
        model = keras.saving.load_model(path, safe_mode=True)
        np.save(f"y{i}.npy", model.predict(x, verbose=0))
        layers.append(len(model.layers))
    mine = [m for m in sys.modules if m.split(".")[0] in ("resnet", "tuning", "search_spaces")]
    print(json.dumps({"project_modules": mine, "layers": layers}))
    """
)

VARIANTS = [
    dict(stem="cifar", block="basic", shortcut="A", preact=False),
    dict(stem="imagenet", block="bottleneck", shortcut="B", preact=True),
    dict(stem="cifar", block="bottleneck", shortcut="C", preact=False, bottleneck_stride="1x1"),
]


def test_keras_files_round_trip_in_fresh_process(tmp_path, seed):
    import keras

    shape = (16, 16, 1)
    x = np.random.default_rng(seed).uniform(0, 16, size=(6, *shape)).astype("float32")
    paths, expected, layer_counts = [], [], []
    for i, fields in enumerate(VARIANTS):
        spec = ResNetSpec(stage_depths=(1, 1), base_filters=4, **fields)
        norm = keras.layers.Normalization(mean=8.0, variance=20.0, name="normalize")
        model = build_resnet(spec, shape, 4, preprocessing=[norm])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", jit_compile=False)
        model.fit(x, np.arange(6) % 4, epochs=1, verbose=0)  # non-trivial BN statistics
        path = tmp_path / f"model{i}.keras"
        model.save(path)
        paths.append(str(path))
        expected.append(model.predict(x, verbose=0))
        layer_counts.append(len(model.layers))
    np.save(tmp_path / "x.npy", x)

    script = tmp_path / "load.py"
    script.write_text(LOADER)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "x.npy"), *paths],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["project_modules"] == []
    assert info["layers"] == layer_counts
    for i, want in enumerate(expected):
        np.testing.assert_array_equal(np.load(tmp_path / f"y{i}.npy"), want)
