"""Benchmark a streamed image folder: decoding, the cache, training on it, and a whole search's memory.

    python scripts/make_synthetic_images.py /tmp/jpeg20k --images 20000 --size 256 --classes 3 --format jpg
    python scripts/bench_folder.py /tmp/jpeg20k --image-size 128 --out results/bench_folder.json

Figures (images per second are of the training split, 60% of the folder):

- ``scan``: seconds to list the folder (names only).
- ``decode``: images/s decoding and resizing on all cores, no cache; ``fill``: the same while
  writing the cache; ``cached``: reading the filled cache.
- ``train``: images/s of one epoch of ``model.fit`` on the training pipeline (a small ResNet
  with the ImageNet stem, batch 128, TensorFlow on this machine's CPU), without the cache (every
  image decoded again) and with a warm one.
- ``search``: ``python -m tuning.search --space scripts/folder_bench.toml`` over the folder: wall
  seconds, the peak resident memory of its whole process tree (sampled every 0.2 s from /proc),
  and the size of its image cache.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tree_rss_mb(root_pid: int) -> float:
    """Resident memory of `root_pid` and every process below it, in MB (from /proc)."""
    from tuning.bench import tree_memory_mb

    return tree_memory_mb(root_pid)[0]


def rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1)


def decoding(folder: str, size: tuple[int, int], work: pathlib.Path) -> dict:
    from tuning.data import load_data
    from tuning.data.images import DECODE_THREADS, scan_folder

    t0 = time.perf_counter()
    index = scan_folder(folder)
    scan = time.perf_counter() - t0
    out = {"images": len(index.files), "scan_seconds": round(scan, 3), "decode_threads": DECODE_THREADS}
    for name, cache in (("decode", False), ("fill", True), ("cached", True)):
        data = load_data(folder, seed=0, image_size=size, run_dir=work, image_cache=cache)
        x = data.x_train
        t0 = time.perf_counter()
        for s in range(0, len(x), 256):
            x.take(slice(s, s + 256))
        out[f"{name}_images_per_second"] = rate(len(x), time.perf_counter() - t0)
    out["cache"] = data.images.cache.size()
    return out


def training(folder: str, size: tuple[int, int], work: pathlib.Path) -> dict:
    from tuning.runtime import import_keras

    import_keras("tensorflow", False)
    import keras

    from resnet import ResNetSpec, build_resnet
    from tuning.data import load_data

    out = {}
    for name, cache in (("no_cache", False), ("warm_cache", True)):
        data = load_data(folder, seed=0, image_size=size, run_dir=work, image_cache=cache)
        mean, var = data.normalization_stats()
        model = build_resnet(ResNetSpec(stem="imagenet", stage_depths=(1, 1), base_filters=8), data.input_shape,
                             data.num_classes, preprocessing=[keras.layers.Normalization(mean=mean, variance=var)])
        model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
        train, steps = data.training_pipeline("train", 128, seed=0, initial_epoch=0, epochs=2)
        model.fit(train, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)  # compiles; fills the cache
        t0 = time.perf_counter()
        model.fit(train, steps_per_epoch=steps, initial_epoch=1, epochs=2, verbose=0, shuffle=False)
        out[f"{name}_images_per_second"] = rate(len(data.y_train), time.perf_counter() - t0)
        out["params"] = model.count_params()
    return out


def search(folder: str, size: tuple[int, int], work: pathlib.Path) -> dict:
    cmd = [sys.executable, "-m", "tuning.search", "--space", str(ROOT / "scripts" / "folder_bench.toml"),
           "--dataset", folder, "--image-size", f"{size[0]}x{size[1]}", "--results-dir", str(work / "results"),
           "--name", "bench", "--overwrite"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, samples = 0.0, []

    def sample():
        nonlocal peak
        while proc.poll() is None:
            mb = tree_rss_mb(proc.pid)
            peak = max(peak, mb)
            samples.append(round(mb))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = [line.rstrip() for line in proc.stdout]
    proc.wait()
    sampler.join()
    for line in lines:
        print("  |", line)
    if proc.returncode != 0:
        raise SystemExit(f"the search failed ({proc.returncode})")
    summary = json.loads((work / "results" / "bench" / "summary.json").read_text())
    return {"wall_seconds": round(time.time() - t0, 1), "peak_tree_rss_mb": round(peak),
            "trials": summary["trials"], "best_val_accuracy": summary["best_val_accuracy"],
            "best_test_accuracy": summary["best_test_accuracy"], "image_cache": summary.get("image_cache"),
            "command": " ".join(cmd)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--parts", default="decode,train,search")
    p.add_argument("--out", help="write the figures here as JSON")
    args = p.parse_args()
    size = (args.image_size, args.image_size)
    figures = {"folder": args.folder, "image_size": list(size), "cpus": os.cpu_count()}
    parts = args.parts.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        for part, run in (("decode", decoding), ("train", training), ("search", search)):
            if part in parts:
                work = pathlib.Path(tmp) / part
                figures[part] = run(args.folder, size, work)
                print(json.dumps({part: figures[part]}, indent=1), flush=True)
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
