"""Write scikit-learn's digits as an imbalanced folder of class subfolders of PNGs, for the benchmark
of objectives and class weights (docs/BENCHMARKS.md, "Imbalanced classes").

    python scripts/make_imbalanced_digits.py OUT                 # every 0-4, one in ten of 5-9
    python scripts/make_imbalanced_digits.py OUT --keep 0.2 --minority 7 8 9
    python scripts/make_imbalanced_digits.py OUT --held-out REST  # also the minority images left out


Every image of the majority digits is written, and a seeded sample of `--keep` of each minority
digit's images, as 8x8 grayscale PNGs (values 0-16 scaled to 0-255), in folders ``digit_0`` ...
With ``--held-out REST`` the minority images not sampled are written to REST the same way: images
no search saw, on which scripts/imbalance_holdout.py measures each minority class's recall.
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np


def write_folder(out: pathlib.Path, minority: set[int], keep: float, seed: int = 0,
                 held_out: pathlib.Path | None = None) -> dict[str, int]:
    """Write the folder (and the minority images left out, to `held_out`); returns the images
    written to `out` per class folder."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    counts = {}
    for label in range(10):
        every = np.flatnonzero(digits.target == label)
        idx = every
        if label in minority:
            idx = np.sort(rng.choice(every, max(1, round(keep * len(every))), replace=False))
            if held_out is not None:
                _write_pngs(Image, digits.images, np.setdiff1d(every, idx), held_out / f"digit_{label}")
        _write_pngs(Image, digits.images, idx, out / f"digit_{label}")
        counts[f"digit_{label}"] = len(idx)
    return counts


def _write_pngs(Image, images: np.ndarray, idx: np.ndarray, folder: pathlib.Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in idx:
        pixels = (images[i] * (255 / 16)).round().astype("uint8")
        Image.fromarray(pixels, mode="L").save(folder / f"{i:04d}.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--minority", type=int, nargs="+", default=[5, 6, 7, 8, 9], help="digits to keep a share of")
    p.add_argument("--keep", type=float, default=0.1, help="share of each minority digit's images (default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--held-out", metavar="REST", help="also write the minority images left out to this folder")
    args = p.parse_args()
    rest = pathlib.Path(args.held_out) if args.held_out else None
    counts = write_folder(pathlib.Path(args.out), set(args.minority), args.keep, args.seed, rest)
    print(f"wrote {sum(counts.values())} images to {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
