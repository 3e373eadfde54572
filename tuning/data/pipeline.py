"""The one pipeline of every backend: batches of a split as a `keras.utils.PyDataset`, batch ``i``
a pure function of ``i`` (and the seed), so a resumed trial sees the same batches. The epoch
order is a seeded permutation of the split, a function of (seed, epoch) alone."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .images import ImageView

# Batches prepared ahead of the one Keras asks for, and the threads that prepare them.
PREFETCH_BATCHES = 4
PREFETCH_THREADS = 2


@functools.lru_cache(maxsize=4)
def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of a split of `n` images in `epoch`: a function of (seed, epoch, n) alone."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def preparer(x: np.ndarray | ImageView, y: np.ndarray, num_classes: int, fill: bool,
             class_weights: np.ndarray | None = None) -> Callable:
    """``prepare(index)``: the images at `index` (a slice or sorted indices) as float32 and their
    labels one-hot float32 (a folder's unreadable images: see `tuning.data.images.FolderImages.take`),
    and with `class_weights` (one per class) each image's weight, the weight of its class."""
    one_hot = np.eye(num_classes, dtype="float32")
    y = np.asarray(y, dtype="int64")
    weights = None if class_weights is None else np.asarray(class_weights, dtype="float32")

    def prepare(index):
        if isinstance(x, ImageView):
            images, positions = x.take(index, fill, defer=True)
            images, labels = images.astype("float32"), y[index][positions]
        else:
            images, labels = x[index].astype("float32", copy=False), y[index]
        return (images, one_hot[labels]) if weights is None else (images, one_hot[labels], weights[labels])

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
