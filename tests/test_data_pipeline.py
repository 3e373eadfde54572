"""The Keras PyDataset pipelines of tuning.data (batch order by seed and epoch, on the real fit loop of
TensorFlow and JAX) and image folders decoded with Pillow."""

import subprocess
import sys

import numpy as np
import pytest

from tuning.data import Data, DataError, load_image_folder

N, BATCH, SEED = 37, 8, 3  # 5 training steps per epoch, the last one of 5 images


def ids_data(n: int = N) -> Data:
    """`n` training images whose every pixel is the image's index; class = index % 3; validation is
    the first 7 of them."""
    x = np.broadcast_to(np.arange(n, dtype="uint8")[:, None, None, None], (n, 2, 3, 1)).copy()
    y = np.arange(n) % 3
    return Data("ids", x, y, x[:7], y[:7], x[:11], y[:11], ["a", "b", "c"], 0, "made up", (0.0, float(n)))


def expected(epoch: int, n: int = N, batch: int = BATCH, seed: int = SEED) -> list[list[int]]:
    """The image indices of each training batch of `epoch`: consecutive slices of the epoch's
    permutation, sorted within a batch."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [sorted(order[s:s + batch].tolist()) for s in range(0, n, batch)]


def ids(x) -> list[int]:
    return np.asarray(x)[:, 0, 0, 0].astype(int).tolist()


def fit_and_record(data: Data, initial_epoch: int, epochs: int) -> tuple[dict, dict]:
    """Fit a tiny model as ResNetHyperModel.fit does (training pipeline, validation pipeline,
    steps_per_epoch, shuffle=False). Returns the image indices of the batches the model itself got,
    per epoch: ``(training, validation)``."""
    import keras

    train_seen: dict = {}
    val_seen: dict = {}
    epoch: list[int] = []

    class Record(keras.layers.Layer):
        def call(self, x, training=None):
            try:
                values = ids(keras.ops.convert_to_numpy(x))
            except Exception:  # symbolic (building the model): nothing to record
                return x
            if epoch:
                (train_seen if training else val_seen).setdefault(epoch[-1], []).append(values)
            return x

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None):
            epoch.append(e)

    model = keras.Sequential([keras.Input(data.input_shape), Record(), keras.layers.Flatten(),
                              keras.layers.Dense(data.num_classes, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy", run_eagerly=True)
    train, steps = data.training_pipeline("train", BATCH, seed=SEED, initial_epoch=initial_epoch, epochs=epochs)
    model.fit(train, validation_data=data.pipeline("validation", 4), epochs=epochs, initial_epoch=initial_epoch,
              steps_per_epoch=steps, shuffle=False, verbose=0, callbacks=[Epochs()])
    return train_seen, val_seen


def check_fit_order() -> None:
    """On the current backend, the real fit loop trains on the expected batches; a fit resumed at
    epoch 1 in a new pipeline trains on the uninterrupted fit's batches; validation is in order."""
    data = ids_data()
    train, val = fit_and_record(data, 0, 3)
    assert train == {e: expected(e) for e in range(3)}
    assert val == {e: [[0, 1, 2, 3], [4, 5, 6]] for e in range(3)}
    resumed, _ = fit_and_record(data, 1, 3)
    assert resumed == {1: train[1], 2: train[2]}


def test_training_batches_depend_only_on_seed_and_epoch():
    data = ids_data()
    ds, steps = data.training_pipeline("train", BATCH, seed=SEED, initial_epoch=0, epochs=3)
    assert steps == 5 and ds.num_batches is None and ds.workers == 1 and not ds.use_multiprocessing
    batches = {}
    for e in range(3):
        ds.on_epoch_begin()
        for s in range(steps):
            x, y = ds[e * steps + s]
            assert x.dtype == np.float32 and y.dtype == np.float32 and x.shape[1:] == (2, 3, 1)
            np.testing.assert_array_equal(y, np.eye(3, dtype="float32")[np.array(ids(x)) % 3])
            batches[e, s] = ids(x)
        ds.on_epoch_end()
    assert [[batches[e, s] for s in range(steps)] for e in range(3)] == [expected(e) for e in range(3)]
    assert [len(b) for b in expected(0)] == [8, 8, 8, 8, 5]
    assert expected(0) != expected(1)
    assert ids(ds[7][0]) == batches[1, 2] and ids(ds[0][0]) == batches[0, 0]  # any order, any time
    resumed, _ = data.training_pipeline("train", BATCH, seed=SEED, initial_epoch=1, epochs=3)
    assert [ids(resumed[i][0]) for i in range(2 * steps)] == [batches[e, s] for e in (1, 2) for s in range(steps)]
    other, _ = data.training_pipeline("train", BATCH, seed=SEED + 1, initial_epoch=0, epochs=3)
    assert ids(other[0][0]) != batches[0, 0]


def test_evaluation_pipeline_in_order_with_last_partial_batch():
    data = ids_data()
    ds = data.pipeline("train", 10)
    assert ds.num_batches == 4
    got = [ds[i] for i in range(ds.num_batches)]
    assert [len(x) for x, _ in got] == [10, 10, 10, 7]
    assert sum((ids(x) for x, _ in got), []) == list(range(N))
    assert all(x.dtype == np.float32 and y.dtype == np.float32 and y.shape[1] == 3 for x, y in got)
    with pytest.raises(IndexError):
        ds[4]
    both = data.pipeline("train+validation", 16)
    assert sum((ids(both[i][0]) for i in range(both.num_batches)), []) == [*range(N), *range(7)]


def test_real_fit_trains_on_the_expected_batches(seed):
    check_fit_order()


def test_jax_without_tensorflow(no_tf_env):
    script = """
import sys

import keras

from tests.test_data_pipeline import check_fit_order
from tuning.data import load_digits

assert keras.backend.backend() == "jax"
check_fit_order()
data = load_digits(0)
model = keras.Sequential([keras.Input(data.input_shape), keras.layers.Rescaling(1 / 16), keras.layers.Flatten(),
                          keras.layers.Dense(data.num_classes, activation="softmax")])
model.compile(optimizer=keras.optimizers.Adam(0.02), loss="categorical_crossentropy", metrics=["accuracy"])
train, steps = data.training_pipeline("train", 64, seed=0, initial_epoch=0, epochs=2)
history = model.fit(train, validation_data=data.pipeline("validation", 256), epochs=2, steps_per_epoch=steps,
                    shuffle=False, verbose=0)
assert len(history.history["val_loss"]) == 2
loss, acc = model.evaluate(data.pipeline("test", 256), verbose=0)
assert acc > 0.5, acc
assert "tensorflow" not in sys.modules
print("jax ok", round(acc, 3))
"""
    proc = subprocess.run([sys.executable, "-c", script], env=no_tf_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "jax ok" in proc.stdout


def write_folder(root, bad: bool):
    """Two classes of five images each, every image one colour (its id), in several formats and
    sizes: PNG (RGB, RGBA, grey), JPEG, BMP and a two-frame GIF. Returns {colour: class}."""
    from PIL import Image

    colours = {}
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i, (ext, mode, size) in enumerate([("png", "RGB", (9, 7)), ("png", "RGBA", (20, 30)),
                                               ("png", "L", (5, 5)), ("jpg", "RGB", (16, 24)),
                                               ("bmp", "RGB", (12, 12))]):
            v = 60 * c + 10 * i + 20
            colour = (v, v, v) if mode == "L" else (v, 255 - v, 100)
            Image.new(mode, size, colour if mode != "L" else v).save(root / name / f"{i}.{ext}", quality=100)
            colours[colour] = c
        first, second = Image.new("RGB", (10, 10), (7 + c, 8, 9)), Image.new("RGB", (10, 10), (250, 0, 0))
        first.save(root / name / "anim.gif", save_all=True, append_images=[second], duration=100)
        colours[(7 + c, 8, 9)] = c
    if bad:
        (root / "dog" / "broken.png").write_bytes(b"not a png")
    return colours


def test_image_folder_decoded_with_pillow(tmp_path):
    from PIL import Image

    root = tmp_path / "pets"
    colours = write_folder(root, bad=True)
    bad = root / "dog" / "broken.png"
    with pytest.raises(DataError) as err:
        load_image_folder(root, (6, 4), seed=0)
    assert str(err.value) == (f"cannot read image {bad} (not an image format Pillow can read); remove it or pass "
                              "--skip-bad-images to go on without it")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(bad)
    bad.write_bytes(bad.read_bytes()[:1000])  # a truncated PNG: Pillow opens it, then fails to decode it
    with pytest.raises(DataError, match=r"^cannot read image .*broken\.png \(.+\); remove it or pass "):
        load_image_folder(root, (6, 4), seed=0)
    data = load_image_folder(root, (6, 4), seed=0, skip_bad_images=True)
    assert data.skipped == [str(bad)] and data.class_names == ["cat", "dog"]
    assert data.input_shape == (6, 4, 3) and data.sizes() == {"train": 6, "validation": 3, "test": 3}
    x = np.concatenate([data.x_train, data.x_val, data.x_test])
    y = np.concatenate([data.y_train, data.y_val, data.y_test])
    assert x.dtype == np.uint8 and y.dtype == np.int64
    got = {}
    for img, label in zip(x, y):
        flat = img.reshape(-1, 3).astype(int)
        colour = tuple(int(v) for v in np.median(flat, axis=0))
        assert np.abs(flat - colour).max() <= 2, colour  # one colour after the resize (JPEG: nearly)
        match = min(colours, key=lambda c: max(abs(a - b) for a, b in zip(c, colour)))
        assert max(abs(a - b) for a, b in zip(match, colour)) <= 2
        got[match] = int(label)
    assert got == colours  # every image once, with its class; the GIF's first frame
