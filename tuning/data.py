"""Datasets: the offline digits set, keras.datasets, and folders of class subfolders of images.

Every dataset is split once, seeded and stratified, into train / validation / test arrays.
The test split is never used for selection. Images stay raw (their original value range);
the model normalises them itself with a `keras.layers.Normalization` fitted on the training
split, so a saved model takes raw images.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .errors import DataError

KERAS_DATASETS = {
    # name: (files to place, where, from)
    "cifar10": ("cifar-10-batches-py-target_archive", "datasets",
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": ("cifar-100-python-target_archive", "datasets",
                 "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
    "mnist": ("mnist.npz", "datasets", "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"),
    "fashion_mnist": ("train-labels-idx1-ubyte.gz, train-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz and "
                      "t10k-images-idx3-ubyte.gz", "datasets/fashion-mnist",
                      "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"),
}
CLASS_NAMES = {
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"],
}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
BUILTIN = ("digits", *KERAS_DATASETS)
# Batches prepared ahead of the one Keras asks for, and the threads that prepare them.
PREFETCH_BATCHES = 4
PREFETCH_THREADS = 2


@dataclasses.dataclass
class Data:
    """One dataset, split. ``x_*`` hold raw images (N, H, W, C); ``y_*`` integer labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    seed: int
    split: str                      # how the split was made, in words a person can redo
    value_range: tuple[float, float]
    skipped: list[str] = dataclasses.field(default_factory=list)
    # Size the network sees. When it differs from the stored images (e.g. digits at 32x32 for an
    # ImageNet stem), a Resizing layer inside the model does it, so the model still takes raw images.
    resize_to: tuple[int, int] | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.x_train.shape[1:])

    @property
    def net_input_shape(self) -> tuple[int, int, int]:
        """Shape of the images the network itself sees (after any in-model resizing)."""
        if self.resize_to is None:
            return self.input_shape
        return (*self.resize_to, self.input_shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def dtype(self) -> str:
        return "float32"

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "validation": len(self.y_val), "test": len(self.y_test)}

    def normalization_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and variance of the training split."""
        x = self.x_train.astype("float64")
        mean = x.mean(axis=(0, 1, 2))
        var = x.var(axis=(0, 1, 2))
        return mean.astype("float32"), np.maximum(var, 1e-6).astype("float32")

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels of ``train``, ``validation``, ``test`` or ``train+validation``."""
        if split == "train+validation":
            return np.concatenate([self.x_train, self.x_val]), np.concatenate([self.y_train, self.y_val])
        return {"train": (self.x_train, self.y_train), "validation": (self.x_val, self.y_val),
                "test": (self.x_test, self.y_test)}[split]

    def pipeline(self, split: str, batch_size: int):
        """An evaluation pipeline over a split: a `keras.utils.PyDataset` of batches in order,
        the last partial batch included; float32 images, one-hot float32 labels."""
        x, y = self.arrays(split)
        n = len(y)
        prepare = _preparer(x, y, self.num_classes)
        return batches_dataset(lambda i: prepare(slice(i * batch_size, (i + 1) * batch_size)), -(-n // batch_size))

    def training_pipeline(self, split: str, batch_size: int, *, seed: int, initial_epoch: int, epochs: int):
        """Batches for epochs ``initial_epoch .. epochs-1``, shuffled by a permutation that depends
        only on (seed, epoch): a trial resumed at epoch e sees exactly the batches it would have
        seen uninterrupted. Returns ``(dataset, steps_per_epoch)``; labels one-hot.

        The dataset is a `keras.utils.PyDataset` with no end: batch ``i`` is step ``i % steps`` of
        epoch ``initial_epoch + i // steps``, so ``model.fit`` must get ``steps_per_epoch=steps``.
        Augmentation is not done here but by training-only layers inside the model.
        """
        x, y = self.arrays(split)
        n = len(y)
        steps = -(-n // batch_size)
        prepare = _preparer(x, y, self.num_classes)

        @functools.lru_cache(maxsize=2)
        def order(epoch: int) -> np.ndarray:
            return np.random.default_rng([seed, epoch]).permutation(n)

        def batch(i: int):
            epoch, step = divmod(i, steps)
            idx = order(initial_epoch + epoch)[step * batch_size:(step + 1) * batch_size]
            return prepare(np.sort(idx))  # sorted: faster gather

        return batches_dataset(batch, None, end=steps * max(epochs - initial_epoch, 0)), steps


def _preparer(x: np.ndarray, y: np.ndarray, num_classes: int) -> Callable:
    """``prepare(index)``: the images at `index` (a slice or sorted indices) as float32 and their
    labels one-hot float32."""
    one_hot = np.eye(num_classes, dtype="float32")
    y = np.asarray(y, dtype="int64")

    def prepare(index):
        return x[index].astype("float32", copy=False), one_hot[y[index]]

    return prepare


@functools.cache
def _prefetch_pool() -> ThreadPoolExecutor:
    """The threads, shared by every pipeline of the process, that make batches ahead."""
    return ThreadPoolExecutor(PREFETCH_THREADS, thread_name_prefix="tuning-batches")


@functools.cache
def _batches_class():
    """The `keras.utils.PyDataset` subclass behind the pipelines (made on first use, so that
    importing this module does not import Keras)."""
    import keras

    class Batches(keras.utils.PyDataset):
        """Batch ``i`` is ``make(i)``, a pure function of ``i``. While Keras uses batch ``i``,
        batches ``i+1 .. i+PREFETCH_BATCHES`` (below `end`) are made on threads; not on the
        TensorFlow backend, where Keras reads the dataset through a prefetching tf.data pipeline.

        Keras' own enqueuer stays off (``workers=1``): it keeps one running index across
        ``fit``'s symbolic-build probe and the epochs, so the batch a step got would not be a
        function of (epoch, step) alone. Threads, not processes: the arrays are shared, not copied.
        """

        def __init__(self, make: Callable, num_batches: int | None, end: int | None):
            super().__init__(workers=1, use_multiprocessing=False, max_queue_size=PREFETCH_BATCHES)
            self._make, self._num_batches = make, num_batches
            self._end = num_batches if end is None else end
            self._ahead = 0 if keras.backend.backend() == "tensorflow" else PREFETCH_BATCHES
            self._pending: dict = {}
            self._lock = threading.Lock()

        @property
        def num_batches(self) -> int | None:
            return self._num_batches

        def __getitem__(self, i):
            i = int(i)
            if i < 0 or (self._num_batches is not None and i >= self._num_batches):
                raise IndexError(f"batch {i} out of range")
            ahead = range(i + 1, min(i + 1 + self._ahead, self._end))
            with self._lock:
                made = self._pending.pop(i, None)
                for j in [j for j in self._pending if j not in ahead]:
                    self._pending.pop(j).cancel()
                for j in ahead:
                    if j not in self._pending:
                        self._pending[j] = _prefetch_pool().submit(self._make, j)
            return made.result() if made is not None else self._make(i)

        def on_epoch_end(self):
            """Drop the batches made ahead (Keras may keep the dataset after ``fit``)."""
            with self._lock:
                for made in self._pending.values():
                    made.cancel()
                self._pending.clear()

    return Batches


def batches_dataset(make: Callable, num_batches: int | None, end: int | None = None):
    """A `keras.utils.PyDataset` whose batch ``i`` is ``make(i)``; `num_batches` None for no end;
    nothing is made ahead at or past `end` (default `num_batches`)."""
    return _batches_class()(make, num_batches, end)


def _split(x, y, test_size: float, seed: int, what: str):
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)
    except ValueError as e:
        raise DataError(f"cannot make a stratified {what} split: {e}; every class needs more images") from None


def load_digits(seed: int = 0) -> Data:
    """scikit-learn's bundled 8x8 digits (1797 images, values 0-16), offline."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = d.images[..., None].astype("float32")
    y = d.target.astype("int64")
    x_rest, x_test, y_rest, y_test = _split(x, y, 0.2, seed, "test")
    x_train, x_val, y_train, y_val = _split(x_rest, y_rest, 0.2, seed, "validation")
    split = (f"x = load_digits().images[..., None].astype('float32'); "
             f"train_test_split(x, y, test_size=0.2, stratify=y, random_state={seed}) gives the test split, "
             f"the same call on the rest gives validation")
    return Data("digits", x_train, y_train, x_val, y_val, x_test, y_test, [str(i) for i in range(10)], seed,
                split, (0.0, 16.0))


def keras_home() -> pathlib.Path:
    return pathlib.Path(os.environ.get("KERAS_HOME") or pathlib.Path.home() / ".keras")


def load_keras_dataset(name: str, seed: int = 0) -> Data:
    """cifar10, cifar100, mnist or fashion_mnist via keras.datasets (downloaded once, then cached)."""
    import keras

    module = getattr(keras.datasets, name)
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as e:  # keras raises a bare Exception for URL failures
        files, where, origin = KERAS_DATASETS[name]
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise DataError(
            f"dataset {name} is not cached and could not be downloaded ({reason}); with network access it "
            f"downloads on first use, otherwise fetch {origin} and put {files} in {keras_home() / where}/"
        ) from None
    if x_train.ndim == 3:
        x_train, x_test = x_train[..., None], x_test[..., None]
    y_train, y_test = y_train.reshape(-1).astype("int64"), y_test.reshape(-1).astype("int64")
    x_train, x_val, y_train, y_val = _split(x_train, y_train, 0.1, seed, "validation")
    classes = CLASS_NAMES.get(name, [str(i) for i in range(int(y_train.max()) + 1)])
    split = (f"keras.datasets.{name}.load_data(): the official test split; validation is "
             f"train_test_split(x_train, y_train, test_size=0.1, stratify=y_train, random_state={seed})")
    return Data(name, x_train, y_train, x_val, y_val, x_test, y_test, classes, seed, split, (0.0, 255.0))


def _read_image(f: pathlib.Path, h: int, w: int) -> tuple[np.ndarray | None, str | None]:
    """``(image, None)``: file `f` decoded as RGB uint8 and resized to (h, w); ``(None, reason)``
    if Pillow cannot read it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as img:  # opened at the first frame of an animation (GIF)
            if img.mode == "I" or img.mode.startswith("I;16"):  # 16-bit grey: to 8 bits, as tf.io did
                grey = np.clip(np.asarray(img, dtype="int64"), 0, 65535) >> 8
                img = Image.fromarray(grey.astype("uint8"))
            img = img.convert("RGB")
            img = img.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=None)
            return np.asarray(img, dtype="uint8"), None
    except UnidentifiedImageError:
        return None, "not an image format Pillow can read"
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return None, (str(e).splitlines() or [type(e).__name__])[0][:100]


def load_image_folder(
    root: str | os.PathLike, image_size: Sequence[int] | None, seed: int = 0, skip_bad_images: bool = False,
) -> Data:
    """A folder of class subfolders of images, decoded, resized to `image_size`, split 60/20/20.

    Classes are the subfolder names in sorted order (as `keras.utils.image_dataset_from_directory`
    infers them). Images are decoded with Pillow as RGB (a GIF's first frame), resized with
    antialiasing and kept as uint8 values 0-255.
    """
    root = pathlib.Path(root)
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist; give a folder of class subfolders of images")
    if not root.is_dir():
        raise DataError(f"dataset {root} is not a folder; give a folder of class subfolders of images")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, labels = [], []
    for i, c in enumerate(classes):
        for f in sorted((root / c).rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(f)
                labels.append(i)
    used = sorted(set(labels))
    if len(used) < 2:
        raise DataError(f"dataset folder {root} holds images of {len(used)} class(es); it needs class subfolders "
                        f"(at least 2) with {', '.join(IMAGE_EXTENSIONS)} images in them")
    if image_size is None:
        raise DataError("give --image-size for an image folder (e.g. --image-size 64)")
    h, w = int(image_size[0]), int(image_size[1])
    images, kept, skipped = [], [], []
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        for f, label, (img, reason) in zip(files, labels, pool.map(lambda f: _read_image(f, h, w), files)):
            if reason is None:
                images.append(img)
                kept.append(label)
            elif skip_bad_images:
                skipped.append(str(f))
            else:
                pool.shutdown(cancel_futures=True)
                raise DataError(f"cannot read image {f} ({reason}); remove it or pass --skip-bad-images to go on "
                                "without it") from None
    if not images:
        raise DataError(f"no image in {root} could be read; every one was skipped")
    x = np.stack(images)
    y = np.asarray(kept, dtype="int64")
    x_rest, x_test, y_rest, y_test = _split(x, y, 0.2, seed, "test")
    x_train, x_val, y_train, y_val = _split(x_rest, y_rest, 0.25, seed, "validation")
    split = (f"images of {root} (classes = sorted subfolder names), decoded as RGB and resized to {h}x{w}; "
             f"train_test_split(x, y, test_size=0.2, stratify=y, random_state={seed}) gives the test split, "
             f"then test_size=0.25 on the rest gives validation (60/20/20)")
    return Data(str(root), x_train, y_train, x_val, y_val, x_test, y_test, classes, seed, split, (0.0, 255.0),
                skipped)


def load_data(name: str, *, seed: int = 0, image_size: Sequence[int] | None = None,
              skip_bad_images: bool = False) -> Data:
    """Load a dataset by name (``digits``, a keras.datasets name) or folder path."""
    if name == "digits":
        data = load_digits(seed)
    elif name in KERAS_DATASETS:
        data = load_keras_dataset(name, seed)
    elif os.sep in name or pathlib.Path(name).exists():
        return load_image_folder(name, image_size, seed, skip_bad_images)
    else:
        raise DataError(f"unknown dataset {name!r}; give one of {', '.join(BUILTIN)} or a folder of class "
                        "subfolders of images")
    if image_size is not None and tuple(image_size) != data.input_shape[:2]:
        data.resize_to = (int(image_size[0]), int(image_size[1]))
    return data
