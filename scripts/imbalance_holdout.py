"""Recall of each class on images no search saw: the best model of each run, on a held-out folder.

    python scripts/make_imbalanced_digits.py /tmp/imb --held-out /tmp/imb-rest
    python scripts/imbalance_holdout.py /tmp/imb-rest results/imb-default-s0 results/imb-balanced-s0 ...

The imbalanced digits folder keeps one in ten images of the minority digits, so its test split
holds only 3 or 4 of each; the ~160 left out of each minority digit measure their recall far more
precisely. Each run's best trial (best.json) is loaded from its checkpoint, the held-out images
are decoded exactly as the search decodes a folder (RGB, at the run's image size), and the
prediction of each is compared with its class folder. Prints a markdown table, one row a run.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def held_out_images(folder: str, size: tuple[int, int], classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The folder's images decoded at `size` and their labels, numbered as the run numbers its classes."""
    from tuning.data.images import decode, scan_folder

    index = scan_folder(folder)
    unknown = sorted(set(index.classes) - set(classes))
    if unknown:
        raise SystemExit(f"{folder} has classes the run does not know: {', '.join(unknown)}")
    images, labels = [], []
    for i, label in enumerate(index.labels):
        image, reason = decode(index.path(i), *size)
        if image is None:
            raise SystemExit(f"cannot read {index.path(i)}: {reason}")
        images.append(image)
        labels.append(classes.index(index.classes[label]))
    return np.stack(images), np.asarray(labels)


def recall_row(run_dir: str, folder: str) -> tuple[str, list[str], np.ndarray, np.ndarray]:
    """(best trial, held-out class names, their image counts, their recall) for one run."""
    from tuning.export.restore import hypermodel_for, load_run_data, load_trial_model
    from tuning.run.opened import open_run

    run = open_run(run_dir)
    data = load_run_data(run)
    trial_id = run.best_trial_id()
    model = load_trial_model(run, trial_id, hypermodel_for(run, data))
    classes = list(run.info["classes"])
    x, y = held_out_images(folder, tuple(run.info["image_size"]), classes)
    predicted = np.argmax(model.predict(x, batch_size=256, verbose=0), axis=-1)
    present = np.unique(y)
    counts = np.array([np.sum(y == c) for c in present])
    recall = np.array([np.mean(predicted[y == c] == c) for c in present])
    return trial_id, [classes[c] for c in present], counts, recall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("held_out", help="a folder of class subfolders (scripts/make_imbalanced_digits.py --held-out)")
    p.add_argument("runs", nargs="+", help="run folders (results/<name>)")
    args = p.parse_args()
    header = None
    for run_dir in args.runs:
        trial_id, names, counts, recall = recall_row(run_dir, args.held_out)
        if header is None:
            header = names
            cols = " | ".join(f"{n} ({c})" for n, c in zip(names, counts))
            print(f"| run | best trial | {cols} | mean |")
            print("|---|---|" + "---|" * len(names) + "---|")
        cells = " | ".join(f"{r:.3f}" for r in recall)
        print(f"| {pathlib.Path(run_dir).name} | {trial_id} | {cells} | {recall.mean():.3f} |", flush=True)


if __name__ == "__main__":
    main()
