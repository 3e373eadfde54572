"""A folder of class subfolders of images, streamed: the index, decoding, and the on-disk cache.

Nothing here holds more than the index (file names and labels) in memory:

- `scan_folder` lists the files (names only: no file is opened), classes in sorted order.
- `decode` reads one image with Pillow as RGB uint8 at the network's size (a JPEG is decoded
  at a reduced scale first, so a 1024-pixel photo is not decoded in full to make 128 pixels).
- `ImageCache` keeps every image once decoded in one raw file (``images-HxW.u8``, N x H x W x 3
  bytes, sparse until filled) with one state byte per image (``.state``: 0 not yet, 1 cached,
  2 unreadable). Several processes may fill it at once: an image's bytes are written before its
  state byte, and both are the same whoever writes them.
- `FolderImages` gives the images of any list of indices, decoded on threads (Pillow releases
  the GIL while it decodes and resizes), from the cache where it has them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import DataError
from ..run.files import write_atomic

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
DECODE_THREADS = max(1, min(16, os.cpu_count() or 1))
INDEX_NAME = "index.json"
CACHE_MARGIN = 1 << 30  # bytes of disk to leave free besides a full cache
CACHED, BAD = 1, 2


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _walk(top: str, rel: str, out: list[str]) -> None:
    """Add the relative paths of the image files under `top` (hidden names skipped) to `out`."""
    with os.scandir(top) as entries:
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_dir():
                _walk(os.path.join(top, e.name), f"{rel}/{e.name}", out)
            elif _is_image(e.name) and e.is_file():
                out.append(f"{rel}/{e.name}")


@dataclasses.dataclass
class FolderIndex:
    """The images of a folder: paths relative to `root`, their labels, the class names."""

    root: str  # absolute, so that a run resumed from another working folder finds its images
    classes: list[str]
    files: list[str]
    labels: np.ndarray  # int64, one per file

    def path(self, i: int) -> str:
        return os.path.join(self.root, self.files[i])

    def save(self, path: pathlib.Path) -> None:
        write_atomic(path, json.dumps({"root": self.root, "classes": self.classes, "files": self.files,
                                       "labels": self.labels.tolist()}) + "\n")

    @classmethod
    def load(cls, path: pathlib.Path) -> FolderIndex:
        d = json.loads(path.read_text())
        return cls(d["root"], d["classes"], d["files"], np.asarray(d["labels"], dtype="int64"))


def scan_folder(root: str | os.PathLike) -> FolderIndex:
    """The index of a folder of class subfolders of images (names only; DataError if unusable)."""
    root = str(root)
    if not os.path.exists(root):
        raise DataError(f"dataset folder {root} does not exist; give a folder of class subfolders of images")
    if not os.path.isdir(root):
        raise DataError(f"dataset {root} is not a folder; give a folder of class subfolders of images")
    with os.scandir(root) as entries:
        classes = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    files, labels = [], []
    for i, c in enumerate(classes):
        found: list[str] = []
        _walk(os.path.join(root, c), c, found)
        found.sort(key=lambda f: f.split("/"))  # as sorted pathlib paths
        files += found
        labels += [i] * len(found)
    used = sorted(set(labels))
    if len(used) < 2:
        raise DataError(f"dataset folder {root} holds images of {len(used)} class(es); it needs class subfolders "
                        f"(at least 2) with {', '.join(IMAGE_EXTENSIONS)} images in them")
    return FolderIndex(os.path.abspath(root), classes, files, np.asarray(labels, dtype="int64"))


def decode(path: str, h: int, w: int) -> tuple[np.ndarray | None, str | None]:
    """``(image, None)``: the file decoded as RGB uint8 and resized to (h, w); ``(None, reason)``
    if Pillow cannot read it. A GIF gives its first frame; 16-bit grey is scaled to 8 bits."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.format == "JPEG":
                img.draft("RGB", (w, h))  # decode at the smallest 1/2, 1/4 or 1/8 scale still >= (w, h)
            if img.mode == "I" or img.mode.startswith("I;16"):
                grey = np.clip(np.asarray(img, dtype="int64"), 0, 65535) >> 8
                img = Image.fromarray(grey.astype("uint8"))
            img = img.convert("RGB")
            if img.size != (w, h):
                img = img.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=None)
            return np.asarray(img, dtype="uint8"), None
    except UnidentifiedImageError:
        return None, "not an image format Pillow can read"
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return None, (str(e).splitlines() or [type(e).__name__])[0][:100]


class ImageCache:
    """Decoded images of an index in ``folder/images-HxW.u8``, their states in ``.state``."""

    def __init__(self, folder: pathlib.Path, n: int, h: int, w: int):
        self.folder, self.n, self.shape = folder, n, (h, w, 3)
        self.item = h * w * 3
        self.data_path = folder / f"images-{h}x{w}.u8"
        self.state_path = folder / f"images-{h}x{w}.state"
        folder.mkdir(parents=True, exist_ok=True)
        self._data = os.open(self.data_path, os.O_RDWR | os.O_CREAT, 0o644)
        self._state = os.open(self.state_path, os.O_RDWR | os.O_CREAT, 0o644)
        for fd, size in ((self._data, n * self.item), (self._state, n)):
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)  # sparse: disk is used as images are written

    @staticmethod
    def room(folder: pathlib.Path, n: int, h: int, w: int) -> tuple[bool, int]:
        """(whether the disk has room for a full cache, plus CACHE_MARGIN; the full size in bytes)."""
        full = n * h * w * 3
        probe = folder
        while not probe.exists():
            probe = probe.parent
        have = 0
        existing = folder / f"images-{h}x{w}.u8"
        if existing.exists():
            have = existing.stat().st_blocks * 512
        return shutil.disk_usage(probe).free > full - have + CACHE_MARGIN, full

    def states(self) -> np.ndarray:
        return np.frombuffer(os.pread(self._state, self.n, 0), dtype="uint8")

    def read(self, i: int) -> np.ndarray:
        return np.frombuffer(os.pread(self._data, self.item, i * self.item), dtype="uint8").reshape(self.shape)

    def write(self, i: int, image: np.ndarray) -> None:
        os.pwrite(self._data, np.ascontiguousarray(image).tobytes(), i * self.item)
        os.pwrite(self._state, bytes([CACHED]), i)

    def mark_bad(self, i: int) -> None:
        os.pwrite(self._state, bytes([BAD]), i)

    def size(self) -> dict:
        """What it holds: images cached, bytes on disk, bytes when full."""
        states = self.states()
        return {"path": str(self.data_path), "images": int((states == CACHED).sum()), "of": self.n,
                "bytes": int(os.fstat(self._data).st_blocks * 512), "full_bytes": self.n * self.item}


class BadImage(DataError):
    """An image that cannot be read, met while streaming without ``--skip-bad-images``."""


@functools.cache
def _decode_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="tuning-decode")


class FolderImages:
    """The images of a `FolderIndex` at (h, w), by index: from the cache, else decoded.

    Args:
        index: the folder's index.
        size: (h, w) every image is resized to.
        cache: where decoded images are kept (None: decode every time).
        skip_bad: leave unreadable images out (`take`); otherwise `BadImage` names the first.
        bad_log: a file that lists every unreadable image met (one line each), if given.
    """

    def __init__(self, index: FolderIndex, size: tuple[int, int], cache: ImageCache | None = None,
                 skip_bad: bool = False, bad_log: pathlib.Path | None = None):
        self.index, self.size, self.cache, self.skip_bad, self.bad_log = index, size, cache, skip_bad, bad_log
        self.shape = (len(index.files), *size, 3)
        self.bad: dict[int, str] = {}  # met by this process: index -> reason
        self.fatal: str | None = None  # the first unreadable image's message, without --skip-bad-images
        self._lock = threading.Lock()
        self.decoded = 0  # images this process decoded (not read from the cache)

    def _decode(self, i: int) -> np.ndarray | None:
        img, reason = decode(self.index.path(i), *self.size)
        with self._lock:
            self.decoded += 1
        if img is not None:
            if self.cache is not None:
                self.cache.write(i, img)
            return img
        self._met_bad(i, reason)
        return None

    def _met_bad(self, i: int, reason: str) -> None:
        with self._lock:
            new = i not in self.bad
            self.bad[i] = reason
        if self.cache is not None:
            self.cache.mark_bad(i)
        if new and self.bad_log is not None:
            with open(self.bad_log, "a") as f:
                f.write(f"{self.index.path(i)}\t{reason}\n")

    def unreadable(self) -> list[str]:
        """Paths of the unreadable images met, by this process and (`bad_log`) any other."""
        found = {self.index.path(i) for i in self.bad}
        if self.bad_log is not None and self.bad_log.exists():
            found |= {line.split("\t")[0] for line in self.bad_log.read_text().splitlines() if line}
        return sorted(found)

    def error(self, i: int) -> BadImage:
        return BadImage(f"cannot read image {self.index.path(i)} ({self.bad.get(i, 'unreadable')}); replace it with "
                        "a readable image and run the same command again, or pass --skip-bad-images to go on "
                        "without it")

    def load(self, ids: np.ndarray, defer: bool = False) -> list[np.ndarray | None]:
        """The images of `ids` (None for an unreadable one), decoded in parallel where not cached.

        An unreadable image without ``skip_bad`` raises `BadImage`; with `defer`, it is only
        recorded in `fatal` (for `stop_on_bad_image`) and left out as with ``skip_bad``: a data
        pipeline must not raise inside the backend's fit loop."""
        ids = np.asarray(ids, dtype="int64")
        states = self.cache.states()[ids] if self.cache is not None else np.zeros(len(ids), "uint8")
        out: list[np.ndarray | None] = [None] * len(ids)
        todo = []
        for k, (i, s) in enumerate(zip(ids.tolist(), states.tolist())):
            if s == CACHED:
                out[k] = self.cache.read(i)
            elif self.skip_bad and (s == BAD or i in self.bad):
                self.bad.setdefault(i, "unreadable")
            else:  # not seen yet; or unreadable before and decoded again (it may have been replaced)
                todo.append(k)
        if len(todo) == 1:
            out[todo[0]] = self._decode(int(ids[todo[0]]))
        elif todo:
            for k, img in zip(todo, _decode_pool().map(self._decode, [int(ids[k]) for k in todo])):
                out[k] = img
        if not self.skip_bad:
            for k, img in enumerate(out):
                if img is None:
                    # The message only: a kept exception would keep its traceback's frames alive.
                    self.fatal = self.fatal or str(self.error(int(ids[k])))
                    if not defer:
                        raise BadImage(self.fatal)
        return out

    def take(self, ids: np.ndarray, fill: bool, defer: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(images, positions)``: uint8 images of `ids` and, for each, its position in `ids`.

        Unreadable images (with ``skip_bad``) are left out, or with `fill` replaced by the first
        readable image of the same request, so that a training batch keeps its size (and the
        compiled step its shape) and its content stays a function of `ids` alone.
        """
        images = self.load(ids, defer)
        good = [k for k, img in enumerate(images) if img is not None]
        if not good:
            raise DataError(f"none of {len(ids)} images of a batch could be read (first "
                            f"{self.index.path(int(ids[0]))}); check the dataset folder")
        positions = np.arange(len(ids)) if fill else np.asarray(good)
        if len(good) < len(ids) and fill:
            positions = np.asarray([k if images[k] is not None else good[0] for k in range(len(ids))])
        return np.stack([images[k] for k in positions]), positions


class ImageView:
    """Some images of a `FolderImages` (a split), array-like: ``len``, ``shape``, ``[index]``."""

    dtype = np.dtype("uint8")
    ndim = 4

    def __init__(self, images: FolderImages, ids: np.ndarray):
        self.images, self.ids = images, np.asarray(ids, dtype="int64")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.ids), *self.images.shape[1:])

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index, fill: bool = False, defer: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """`FolderImages.take` of the images at `index` (a slice or indices) of this view."""
        return self.images.take(self.ids[index], fill, defer)

    def __getitem__(self, index) -> np.ndarray:
        """The images at `index`, a slice or indices (unreadable ones left out with ``skip_bad``)."""
        return self.take(index)[0]

    def concat(self, other: ImageView) -> ImageView:
        return ImageView(self.images, np.concatenate([self.ids, other.ids]))


def stop_on_bad_image(images: FolderImages):
    """A Keras callback that raises `BadImage` at the first batch or epoch end after a pipeline
    over `images` met an unreadable image (``FolderImages.fatal``): before the epoch's end is
    saved, so a resumed trial starts again from the last whole epoch."""
    import keras

    class StopOnBadImage(keras.callbacks.Callback):
        def _check(self, *args, **kwargs):
            if images.fatal is not None:
                raise BadImage(images.fatal)

        on_train_batch_end = on_test_batch_end = on_predict_batch_end = on_epoch_end = _check
        on_test_end = on_predict_end = on_train_end = _check

    return StopOnBadImage()
