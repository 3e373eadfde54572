"""Datasets: the offline digits set, keras.datasets, and folders of class subfolders of images.

Every dataset is split once, seeded and stratified, into train / validation / test. The test
split is never used for selection. Images stay raw (their original value range); the model
normalises them itself with a `keras.layers.Normalization` fitted on a seeded sample of the
training split, so a saved model takes raw images.

The built-in datasets are arrays in memory. A folder is streamed (`tuning.data.images`): only its
index of file names and labels is held; batches are decoded on threads while training, or read
from the run's on-disk cache of resized images. Both go through the same pipeline, whose batch
``i`` is a pure function of ``i`` (and the seed), so a resumed trial sees the same batches.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import DataError
from ..run.files import read_json, write_json
from .images import INDEX_NAME, FolderImages, FolderIndex, ImageCache, ImageView, scan_folder
from .pipeline import batches_dataset, epoch_order, preparer

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
BUILTIN = ("digits", *KERAS_DATASETS)
# Training images the normalisation's mean and variance are measured on (seeded; all if fewer).
NORMALIZATION_SAMPLE = 4096
NORMALIZATION_NAME = "normalization.json"


@dataclasses.dataclass
class Data:
    """One dataset, split. ``x_*`` hold raw images (N, H, W, C): arrays, or for a folder
    `tuning.data.images.ImageView`s that decode on demand; ``y_*`` integer labels."""

    name: str
    x_train: np.ndarray | ImageView
    y_train: np.ndarray
    x_val: np.ndarray | ImageView
    y_val: np.ndarray
    x_test: np.ndarray | ImageView
    y_test: np.ndarray
    class_names: list[str]
    seed: int
    split: str                      # how the split was made, in words a person can redo
    value_range: tuple[float, float]
    # Size the network sees. When it differs from the stored images (e.g. digits at 32x32 for an
    # ImageNet stem), a Resizing layer inside the model does it, so the model still takes raw images.
    resize_to: tuple[int, int] | None = None
    # A streamed folder: its images (cache, unreadable ones met); None for arrays in memory.
    images: FolderImages | None = None
    # Where the normalisation statistics are kept once measured (the run's data/ folder), and
    # the legacy rule for runs begun before the sample: the whole training split.
    stats_file: pathlib.Path | None = None
    whole_split_stats: bool = False
    normalization: dict | None = None  # set by `normalization_stats`: mean, variance, sample size

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

    def unreadable(self) -> list[str]:
        """A folder's images left out because they cannot be read, as far as streaming has met them."""
        return [] if self.images is None else self.images.unreadable()

    def normalization_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and variance of a seeded sample of the training split
        (`NORMALIZATION_SAMPLE` images), measured once per run and kept in `stats_file`."""
        if self.normalization is None and self.stats_file is not None and self.stats_file.exists():
            self.normalization = read_json(self.stats_file)
        if self.normalization is None:
            self.normalization = self._measure_stats()
            if self.stats_file is not None:
                self.stats_file.parent.mkdir(parents=True, exist_ok=True)
                write_json(self.stats_file, self.normalization)
        stats = self.normalization
        return np.asarray(stats["mean"], "float32"), np.asarray(stats["variance"], "float32")

    def _measure_stats(self) -> dict:
        n = len(self.y_train)
        k = n if self.whole_split_stats else min(n, NORMALIZATION_SAMPLE)
        sample = np.arange(n) if k == n else np.sort(np.random.default_rng([self.seed, 7]).choice(n, k, replace=False))
        x = self.x_train
        chunk = max(1, (64 << 20) // (int(np.prod(x.shape[1:])) * 8))  # 64 MB of float64 at a time
        parts = []  # per chunk: (values per channel, mean, variance)
        hist = np.zeros((x.shape[-1], 256), "int64") if x.dtype == np.uint8 else None
        for start in range(0, k, chunk):
            idx = sample[start:start + chunk]
            part = x[idx]  # a folder: decoded (or from the cache); an unreadable image raises
            if hist is not None:  # uint8: exact, from per-channel histograms
                for c in range(part.shape[-1]):
                    hist[c] += np.bincount(part[..., c].ravel(), minlength=256)
            elif len(part):
                part = part.astype("float64")
                parts.append((part.size // part.shape[-1], part.mean(axis=(0, 1, 2)), part.var(axis=(0, 1, 2))))
        if hist is not None:
            values = np.arange(256, dtype="float64")
            count = hist.sum(axis=1)
            mean = hist @ values / count
            var = hist @ values ** 2 / count - mean ** 2
        else:
            count, mean, var = parts[0]
            for c, m, v in parts[1:]:  # Chan et al.'s pairwise update of mean and variance
                delta, total = m - mean, count + c
                mean, var = mean + delta * c / total, (var * count + v * c + delta ** 2 * count * c / total) / total
                count = total
        var = np.maximum(var, 1e-6)
        return {"mean": mean.astype("float32").tolist(), "variance": var.astype("float32").tolist(),
                "sample_size": int(k), "of": n, "seed": self.seed,
                "sample": "the whole training split" if k == n else
                          f"np.random.default_rng([{self.seed}, 7]).choice({n}, {k}, replace=False)"}

    def class_counts(self) -> dict[str, list[int]]:
        """Images per class (in the order of `class_names`) of each split."""
        k = self.num_classes
        return {split: np.bincount(np.asarray(y, dtype="int64"), minlength=k).tolist()
                for split, y in (("train", self.y_train), ("validation", self.y_val), ("test", self.y_test))}

    def balanced_class_weights(self) -> np.ndarray:
        """One weight per class, inverse to its frequency in the training split, the mean image's
        weight 1 (scikit-learn's ``compute_class_weight("balanced")``: n / (classes x n_class))."""
        from sklearn.utils.class_weight import compute_class_weight

        y = np.asarray(self.y_train, dtype="int64")
        present = np.unique(y)
        weights = np.ones(self.num_classes, dtype="float32")
        weights[present] = compute_class_weight("balanced", classes=present, y=y)
        return weights

    def arrays(self, split: str) -> tuple[np.ndarray | ImageView, np.ndarray]:
        """Images and labels of ``train``, ``validation``, ``test`` or ``train+validation``."""
        if split == "train+validation":
            if isinstance(self.x_train, ImageView):
                return self.x_train.concat(self.x_val), np.concatenate([self.y_train, self.y_val])
            return np.concatenate([self.x_train, self.x_val]), np.concatenate([self.y_train, self.y_val])
        return {"train": (self.x_train, self.y_train), "validation": (self.x_val, self.y_val),
                "test": (self.x_test, self.y_test)}[split]

    def pipeline(self, split: str, batch_size: int):
        """An evaluation pipeline over a split: a `keras.utils.PyDataset` of batches in order,
        the last partial batch included; float32 images, one-hot float32 labels. Unreadable images
        of a folder (``--skip-bad-images``) are left out of their batch."""
        x, y = self.arrays(split)
        n = len(y)
        prepare = preparer(x, y, self.num_classes, fill=False)
        return batches_dataset(lambda i: prepare(slice(i * batch_size, (i + 1) * batch_size)), -(-n // batch_size))

    def training_pipeline(self, split: str, batch_size: int, *, seed: int, initial_epoch: int, epochs: int,
                          class_weights: np.ndarray | None = None):
        """Batches for epochs ``initial_epoch .. epochs-1``, shuffled by a permutation that depends
        only on (seed, epoch): a trial resumed at epoch e sees exactly the batches it would have
        seen uninterrupted. Returns ``(dataset, steps_per_epoch)``; labels one-hot, and with
        `class_weights` (one per class, `balanced_class_weights`) each image's weight as a third part.

        The dataset is a `keras.utils.PyDataset` with no end: batch ``i`` is step ``i % steps`` of
        epoch ``initial_epoch + i // steps``, so ``model.fit`` must get ``steps_per_epoch=steps``.
        Augmentation is not done here but by training-only layers inside the model. An unreadable
        image of a folder (``--skip-bad-images``) is replaced by another image of its batch.
        """
        x, y = self.arrays(split)
        n = len(y)
        steps = -(-n // batch_size)
        prepare = preparer(x, y, self.num_classes, fill=True, class_weights=class_weights)

        def batch(i: int):
            epoch, step = divmod(i, steps)
            idx = epoch_order(seed, initial_epoch + epoch, n)[step * batch_size:(step + 1) * batch_size]
            return prepare(np.sort(idx))  # sorted: faster gather

        return batches_dataset(batch, None, end=steps * max(epochs - initial_epoch, 0)), steps


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


def load_image_folder(
    root: str | os.PathLike, image_size: Sequence[int] | None, seed: int = 0, skip_bad_images: bool = False,
    data_dir: pathlib.Path | None = None, cache: bool = True, log: Callable[[str], None] | None = None,
) -> Data:
    """A folder of class subfolders of images, streamed at `image_size`, split 60/20/20.

    Classes are the subfolder names in sorted order (as `keras.utils.image_dataset_from_directory`
    infers them); hidden files and folders are left out. Images are decoded with Pillow as RGB (a
    GIF's first frame), resized with antialiasing and kept as uint8 values 0-255.

    Args:
        data_dir: the run's ``data/`` folder. The index of the first session is kept there and
            used again on resume (so the split stays the same whatever happens to the folder), as
            are the normalisation statistics, the list of unreadable images met, and (`cache`) the
            cache of resized images. None: nothing is kept.
        cache: keep every decoded image in `data_dir` so that no image is decoded twice.
        log: where to say what the cache holds, or why there is none.
    """
    index_file = data_dir / INDEX_NAME if data_dir is not None else None
    if index_file is not None and index_file.exists():
        index = FolderIndex.load(index_file)
        if not os.path.isdir(index.root):
            raise DataError(f"dataset folder {index.root} does not exist; this run's images were listed there: "
                            "put the folder back to resume, or start a new run (another --name)")
    else:
        index = scan_folder(root)
    if image_size is None:
        raise DataError("give --image-size for an image folder (e.g. --image-size 64)")
    if index_file is not None and not index_file.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        index.save(index_file)
    h, w = int(image_size[0]), int(image_size[1])
    n = len(index.files)
    store = None
    if data_dir is not None and cache:
        room, full = ImageCache.room(data_dir, n, h, w)
        if room:
            store = ImageCache(data_dir, n, h, w)
            if log:
                size = store.size()
                log(f"image cache: {size['images']} of {n} images at {h}x{w} in {store.data_path} "
                    f"({_mb(size['bytes'])} of {_mb(full)} when full)")
        elif log:
            log(f"note: no image cache: {data_dir} has not {_mb(full)} free for {n} images at {h}x{w}; every epoch "
                "decodes its images again")
    images = FolderImages(index, (h, w), store, skip_bad_images,
                          bad_log=data_dir / "unreadable_images.txt" if data_dir is not None else None)
    ids = np.arange(n)
    rest, test, y_rest, y_test = _split(ids, index.labels, 0.2, seed, "test")
    train, val, y_train, y_val = _split(rest, y_rest, 0.25, seed, "validation")
    split = (f"images of {root} (classes = sorted subfolder names, files in sorted order), decoded as RGB and "
             f"resized to {h}x{w}; train_test_split(np.arange(n), labels, test_size=0.2, stratify=labels, "
             f"random_state={seed}) gives the test split, then test_size=0.25 on the rest gives validation (60/20/20)")
    return Data(str(root), ImageView(images, train), y_train, ImageView(images, val), y_val, ImageView(images, test),
                y_test, index.classes, seed, split, (0.0, 255.0), images=images)


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


def load_data(name: str, *, seed: int = 0, image_size: Sequence[int] | None = None,
              skip_bad_images: bool = False, run_dir: str | os.PathLike | None = None, image_cache: bool = True,
              log: Callable[[str], None] | None = None) -> Data:
    """Load a dataset by name (``digits``, a keras.datasets name) or folder path.

    `run_dir`: the search's run folder; its ``data/`` subfolder keeps what must stay the same
    across the run's sessions and processes (a folder's index and cache, the normalisation)."""
    data_dir = pathlib.Path(run_dir) / "data" if run_dir is not None else None
    if name == "digits":
        data = load_digits(seed)
    elif name in KERAS_DATASETS:
        data = load_keras_dataset(name, seed)
    elif os.sep in name or pathlib.Path(name).exists():
        data = load_image_folder(name, image_size, seed, skip_bad_images, data_dir, image_cache, log)
        image_size = None
    else:
        raise DataError(f"unknown dataset {name!r}; give one of {', '.join(BUILTIN)} or a folder of class "
                        "subfolders of images")
    if image_size is not None and tuple(image_size) != data.input_shape[:2]:
        data.resize_to = (int(image_size[0]), int(image_size[1]))
    if data_dir is not None:
        data.stats_file = data_dir / NORMALIZATION_NAME
        # A run begun before the sample existed keeps the statistics of its whole training split.
        data.whole_split_stats = (pathlib.Path(run_dir) / "tuner").exists() and not data.stats_file.exists()
    return data
