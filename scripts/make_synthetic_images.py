"""Write a folder of class subfolders of PNG or JPEG images that a network can learn, for benchmarks.

    python scripts/make_synthetic_images.py OUT --images 50000 --size 32 --classes 10
    python scripts/make_synthetic_images.py OUT --images 20000 --size 256 --classes 3 --format jpg

Each class has its own smooth colour pattern; every image is its class's pattern shifted by
up to a quarter of the image, scaled in brightness, with pixel noise. Deterministic for a
`--seed`. Written by as many processes as there are CPUs.
"""

from __future__ import annotations

import argparse
import os
import pathlib
from concurrent.futures import ProcessPoolExecutor

import numpy as np


def class_patterns(classes: int, size: int, seed: int) -> np.ndarray:
    """(classes, size, size, 3) floats in [0, 1]: a few random low-frequency waves per class."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.zeros((classes, size, size, 3))
    for c in range(classes):
        for ch in range(3):
            fy, fx, phase = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
            out[c, :, :, ch] = 0.5 + 0.5 * np.sin(2 * np.pi * (fy * yy + fx * xx) + phase)
    return out


def write_chunk(args) -> int:
    from PIL import Image

    root, patterns, start, stop, seed, ext = args
    rng = np.random.default_rng([seed, start])
    classes, size = patterns.shape[0], patterns.shape[1]
    for i in range(start, stop):
        c = i % classes
        shift = rng.integers(-size // 4, size // 4 + 1, size=2)
        img = np.roll(patterns[c], tuple(shift), axis=(0, 1)) * rng.uniform(0.6, 1.0)
        img = np.clip(img + rng.normal(0, 0.15, img.shape), 0, 1)
        Image.fromarray((img * 255).astype("uint8")).save(root / f"class_{c:02d}" / f"{i:06d}.{ext}", quality=90)
    return stop - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--images", type=int, default=50_000)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("png", "jpg"), default="png")
    args = p.parse_args()
    root = pathlib.Path(args.out)
    for c in range(args.classes):
        (root / f"class_{c:02d}").mkdir(parents=True, exist_ok=True)
    patterns = class_patterns(args.classes, args.size, args.seed)
    step = 1000
    chunks = [(root, patterns, s, min(s + step, args.images), args.seed, args.format)
              for s in range(0, args.images, step)]
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        done = sum(pool.map(write_chunk, chunks))
    print(f"wrote {done} images of {args.size}x{args.size} in {args.classes} classes to {root}")


if __name__ == "__main__":
    main()
