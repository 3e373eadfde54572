"""The Keras PyDataset pipelines of tuning.data (batch order by seed and epoch, on the real fit loop of
TensorFlow and JAX) and image folders decoded with Pillow."""

import subprocess
import sys

import numpy as np
import pytest

from tuning.data.datasets import Data, load_image_folder
from tuning.errors import DataError

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
from tuning.data.datasets import load_digits

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


def all_images(data: Data, split: str) -> np.ndarray:
    """Every image of a split, through its evaluation pipeline."""
    ds = data.pipeline(split, 4)
    return np.concatenate([ds[i][0] for i in range(ds.num_batches)])


def test_image_folder_decoded_with_pillow(tmp_path):
    from PIL import Image

    from tuning.data.images import BadImage

    root = tmp_path / "pets"
    colours = write_folder(root, bad=True)
    bad = root / "dog" / "broken.png"
    data = load_image_folder(root, (6, 4), seed=0)  # streamed: nothing is decoded yet
    assert data.class_names == ["cat", "dog"] and data.input_shape == (6, 4, 3)
    assert data.sizes() == {"train": 7, "validation": 3, "test": 3}
    message = (f"cannot read image {bad} (not an image format Pillow can read); replace it with a readable image "
               "and run the same command again, or pass --skip-bad-images to go on without it")
    # A pipeline does not raise inside the backend's fit loop: it records the image for the
    # callback that stops fit (see test_reliability); reading the images directly raises.
    [all_images(data, split) for split in ("train", "validation", "test")]
    assert data.images.fatal == message
    with pytest.raises(BadImage) as err:
        [x.take(slice(None)) for x in (data.x_train, data.x_val, data.x_test)]
    assert str(err.value) == message
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(bad)
    bad.write_bytes(bad.read_bytes()[:1000])  # a truncated PNG: Pillow opens it, then fails to decode it
    data = load_image_folder(root, (6, 4), seed=0)
    with pytest.raises(DataError, match=r"^cannot read image .*broken\.png \(.+\); replace it "):
        [x.take(slice(None)) for x in (data.x_train, data.x_val, data.x_test)]
    data = load_image_folder(root, (6, 4), seed=0, skip_bad_images=True)
    x = np.concatenate([all_images(data, split) for split in ("train", "validation", "test")])
    assert data.unreadable() == [str(bad)] and len(x) == 12  # left out of evaluation batches
    assert x.dtype == np.float32
    y = np.concatenate([np.argmax(data.pipeline(s, 4)[i][1], 1) for s in ("train", "validation", "test")
                        for i in range(data.pipeline(s, 4).num_batches)])
    got = {}
    for img, label in zip(x, y):
        flat = img.reshape(-1, 3).astype(int)
        colour = tuple(int(v) for v in np.median(flat, axis=0))
        assert np.abs(flat - colour).max() <= 2, colour  # one colour after the resize (JPEG: nearly)
        match = min(colours, key=lambda c: max(abs(a - b) for a, b in zip(c, colour)))
        assert max(abs(a - b) for a, b in zip(match, colour)) <= 2
        got[match] = int(label)
    assert got == colours  # every image once, with its class; the GIF's first frame


def id_folder(root, n: int = 30, classes: int = 3, size: int = 12):
    """`n` PNGs whose every pixel is (id, id, id), class = id % classes, in class folders."""
    from PIL import Image

    for i in range(n):
        folder = root / f"c{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (size, size), (i, i, i)).save(folder / f"{i:03d}.png")


def streamed_ids(data: Data, seed: int, initial_epoch: int, epochs: int, batch: int) -> list[list[int]]:
    """The image ids (pixel values) of every training batch the pipeline makes."""
    ds, steps = data.training_pipeline("train", batch, seed=seed, initial_epoch=initial_epoch, epochs=epochs)
    return [ids(ds[i][0]) for i in range(steps * (epochs - initial_epoch))]


def test_streamed_epoch_order_is_the_recorded_order_with_and_without_the_cache(tmp_path):
    """A streamed folder's training batches are the seed's permutation of the split, epoch by epoch,
    exactly as for arrays in memory; the cache changes nothing but the decoding; a trial resumed at
    epoch 2 gets the batches epochs 2 and 3 had."""
    from tuning.data.datasets import epoch_order, load_data

    root = tmp_path / "ids"
    id_folder(root)
    seed, batch = 5, 4
    runs = {}
    for name, kwargs in {"no cache": {}, "cache": {"run_dir": tmp_path / "run"}}.items():
        data = load_data(str(root), seed=seed, image_size=(8, 8), image_cache=name == "cache", **kwargs)
        assert (data.images.cache is not None) == (name == "cache")
        train_ids = [int(f.split("/")[1][:3]) for f in np.asarray(data.images.index.files)[data.x_train.ids]]
        memory = Data("ids", np.asarray(train_ids, "uint8")[:, None, None, None], data.y_train, None, None, None,
                      None, data.class_names, seed, "", (0, 255))
        recorded = [np.asarray(train_ids)[np.sort(epoch_order(seed, e, len(train_ids))[s:s + batch])].tolist()
                    for e in range(4) for s in range(0, len(train_ids), batch)]
        runs[name] = streamed_ids(data, seed, 0, 4, batch)
        assert runs[name] == recorded == streamed_ids(memory, seed, 0, 4, batch)
        steps = -(-len(train_ids) // batch)
        assert streamed_ids(data, seed, 2, 4, batch) == runs[name][2 * steps:]
        decoded = data.images.decoded
        streamed_ids(data, seed, 0, 1, batch)
        assert data.images.decoded - decoded == (0 if name == "cache" else len(train_ids))
    cache = data.images.cache.size()
    assert cache["images"] == cache["of"] - 12 and cache["bytes"] >= cache["images"] * 8 * 8 * 3  # no val/test yet


def test_a_run_keeps_its_index_and_a_bad_image_is_replaced_within_its_batch(tmp_path):
    """The index of a run's first session is used again (files added later do not change the
    split); with --skip-bad-images a training batch keeps its size, the unreadable image replaced
    by the first readable one of the batch, and the image is listed for every process to see."""
    from tuning.data.datasets import load_data

    root, run = tmp_path / "ids", tmp_path / "run"
    id_folder(root)
    first = load_data(str(root), seed=1, image_size=(8, 8), run_dir=run)
    (root / "c0" / "999.png").write_bytes(b"added later")
    bad_id = int(first.images.index.files[first.x_train.ids[0]].split("/")[1][:3])
    with_bad = next(b for b in streamed_ids(first, 1, 0, 1, 4) if bad_id in b)
    (root / f"c{bad_id % 3}" / f"{bad_id:03d}.png").write_bytes(b"broken now")
    again = load_data(str(root), seed=1, image_size=(8, 8), run_dir=run, image_cache=False, skip_bad_images=True)
    assert again.images.index.files == first.images.index.files and list(again.x_train.ids) == list(first.x_train.ids)
    batches = streamed_ids(again, 1, 0, 1, 4)
    assert all(len(b) == 4 for b in batches[:-1])
    replaced = next(b for b in batches if bad_id not in b and set(b) != set(with_bad) and len(set(b)) < len(b))
    assert sorted(set(replaced)) == sorted(set(with_bad) - {bad_id})
    assert again.unreadable() == [str(root / f"c{bad_id % 3}" / f"{bad_id:03d}.png")]
    third = load_data(str(root), seed=1, image_size=(8, 8), run_dir=run, skip_bad_images=True)
    assert third.unreadable() == again.unreadable()  # from the run's list, before this process met it
    assert first.images.index.root == str(root)  # absolute: the run resumes from any working folder
    root.rename(tmp_path / "moved")
    with pytest.raises(DataError, match=f"dataset folder {root} does not exist; this run's images were listed"):
        load_data(str(root), seed=1, image_size=(8, 8), run_dir=run)


def test_normalization_on_a_seeded_sample_kept_for_the_run(tmp_path, monkeypatch):
    import tuning.data.datasets
    from tuning.data.datasets import load_data

    root = tmp_path / "ids"
    id_folder(root, n=60)
    monkeypatch.setattr(tuning.data.datasets, "NORMALIZATION_SAMPLE", 10)
    data = load_data(str(root), seed=2, image_size=(8, 8), run_dir=tmp_path / "run")
    mean, var = data.normalization_stats()
    stats = data.normalization
    assert stats["sample_size"] == 10 and stats["of"] == 36 and stats["seed"] == 2
    sample = np.sort(np.random.default_rng([2, 7]).choice(36, 10, replace=False))
    x = data.x_train.take(sample)[0].astype("float64")
    assert np.allclose(mean, x.mean(axis=(0, 1, 2)), rtol=1e-6) and np.allclose(var, x.var(axis=(0, 1, 2)), rtol=1e-5)
    monkeypatch.setattr(tuning.data.datasets, "NORMALIZATION_SAMPLE", 20)  # kept: the run's processes all agree
    again = load_data(str(root), seed=2, image_size=(8, 8), run_dir=tmp_path / "run")
    assert np.array_equal(again.normalization_stats()[0], mean) and again.normalization["sample_size"] == 10
    monkeypatch.undo()
    digits = load_data("digits", seed=0)  # 1149 training images: all of them, as before the sample
    x = digits.x_train.astype("float64")
    assert np.array_equal(digits.normalization_stats()[0], x.mean(axis=(0, 1, 2)).astype("float32"))


def test_scanning_names_opens_no_file(tmp_path, monkeypatch):
    """The index is made from names alone; hidden files (such as macOS' ._ files) are left out."""
    import builtins

    from tuning.data.images import scan_folder

    root = tmp_path / "ids"
    id_folder(root, n=9)
    (root / "c0" / "._000.png").write_bytes(b"resource fork")
    (root / "c1" / "notes.txt").write_text("x")
    (root / "c2" / "deeper").mkdir()
    (root / "c2" / "deeper" / "x.JPG").write_bytes(b"")

    def no_open(*args, **kwargs):
        raise AssertionError("a file was opened")

    monkeypatch.setattr(builtins, "open", no_open)
    index = scan_folder(root)
    assert index.classes == ["c0", "c1", "c2"]
    assert index.files == ["c0/000.png", "c0/003.png", "c0/006.png", "c1/001.png", "c1/004.png", "c1/007.png",
                           "c2/002.png", "c2/005.png", "c2/008.png", "c2/deeper/x.JPG"]
    assert index.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
