"""Training throughput on the TensorFlow backend with the old tf.data pipeline against the new
keras.utils.PyDataset one (tuning.data.pipeline), same model, data, batch size and batch order.

    python scripts/bench_pipeline.py --epochs 2 --images 10000 --batch-size 128 --repeats 2 --json out.json

The model is a small ResNet of this package (ResNet-8: cifar stem, one basic block per stage) on
cifar-like random uint8 images (32x32x3, 10 classes). Each run trains 1 + `--epochs` epochs; the
first (tracing, warm-up) is not counted. Runs alternate old, new, old, new, ...; the figure of a
pipeline is the median of its runs, in training images per second. Also times evaluation (the
training split in order, batches of 256) and each training pipeline alone (one epoch of batches,
no model).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from tuning.data import Data  # noqa: E402


def old_pipeline(data: Data, split: str, batch_size: int):
    """The evaluation pipeline before PyDataset: tf.data, cached, batched in order, prefetched."""
    import tensorflow as tf

    x, y = data.arrays(split)
    base = tf.data.Dataset.from_tensor_slices((x, y.astype("int32"))).cache()
    num_classes = data.num_classes

    def prepare(x, y):
        return tf.cast(x, tf.float32), tf.one_hot(y, num_classes)

    return base.batch(batch_size).map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def old_training_pipeline(data: Data, split: str, batch_size: int, *, seed: int, initial_epoch: int, epochs: int):
    """The one before PyDataset training pipeline: a tf.data generator of the (seed, epoch) batches."""
    import tensorflow as tf

    x, y = data.arrays(split)
    y = y.astype("int32")
    n = len(y)
    steps = -(-n // batch_size)
    num_classes = data.num_classes

    def batches():
        for e in range(initial_epoch, epochs):
            order = np.random.default_rng([seed, e]).permutation(n)
            for s in range(steps):
                idx = np.sort(order[s * batch_size:(s + 1) * batch_size])  # sorted: faster gather
                yield x[idx], y[idx]

    spec = (tf.TensorSpec((None, *x.shape[1:]), tf.as_dtype(x.dtype)), tf.TensorSpec((None,), tf.int32))
    ds = tf.data.Dataset.from_generator(batches, output_signature=spec)

    def prepare(xb, yb):
        return tf.cast(xb, tf.float32), tf.one_hot(yb, num_classes)

    return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE), steps


def make_data(images: int) -> Data:
    """Cifar-like random uint8 images, 10 classes."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(images, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=images)
    return Data("random", x, y, x[:256], y[:256], x[:256], y[:256], [str(i) for i in range(10)], 0,
                "random", (0.0, 255.0))


def make_model():
    import keras

    from resnet import ResNetSpec, build_resnet

    spec = ResNetSpec(stem="cifar", stage_depths=(1, 1, 1), block="basic", base_filters=16)
    model = build_resnet(spec, (32, 32, 3), 10, preprocessing=[keras.layers.Rescaling(1 / 255)])
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def timed_fit(model, data: Data, which: str, batch_size: int, epochs: int) -> float:
    """Training images/second over epochs 1..`epochs` (epoch 0 is the warm-up) with one pipeline."""
    import keras

    if which == "old":
        train, steps = old_training_pipeline(data, "train", batch_size, seed=0, initial_epoch=0, epochs=1 + epochs)
    else:
        train, steps = data.training_pipeline("train", batch_size, seed=0, initial_epoch=0, epochs=1 + epochs)
    seconds = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if epoch > 0:
                seconds.append(time.perf_counter() - self.t0)

    model.fit(train, epochs=1 + epochs, steps_per_epoch=steps, shuffle=False, verbose=0, callbacks=[Clock()])
    return epochs * len(data.y_train) / sum(seconds)


def pipeline_alone(data: Data, which: str, batch_size: int) -> float:
    """Images/second of one epoch of training batches made and read without a model (after one
    warm-up epoch), through the adapter Keras itself uses on this backend."""
    import tensorflow as tf

    if which == "old":
        ds, steps = old_training_pipeline(data, "train", batch_size, seed=0, initial_epoch=0, epochs=2)
    else:
        from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

        train, steps = data.training_pipeline("train", batch_size, seed=0, initial_epoch=0, epochs=2)
        ds = PyDatasetAdapter(train).get_tf_dataset()
    it = iter(ds)
    for _ in range(steps):
        x, _ = next(it)
    t0 = time.perf_counter()
    for _ in range(steps):
        x, _ = next(it)
    tf.reduce_sum(x).numpy()
    return len(data.y_train) / (time.perf_counter() - t0)


def timed_evaluate(model, data: Data, which: str) -> float:
    """Evaluation images/second over the training split, batches of 256 in order."""
    ds = old_pipeline(data, "train", 256) if which == "old" else data.pipeline("train", 256)
    model.evaluate(ds, verbose=0)  # warm-up (tracing)
    t0 = time.perf_counter()
    model.evaluate(ds, verbose=0)
    return len(data.y_train) / (time.perf_counter() - t0)


def run(args: argparse.Namespace) -> dict:
    """Alternate the pipelines on one compiled model; return the figures."""
    import keras

    keras.utils.set_random_seed(0)
    data = make_data(args.images)
    model = make_model()
    fit = {"old": [], "new": []}
    alone = {"old": [], "new": []}
    evaluate = {"old": [], "new": []}
    for r in range(args.repeats):
        for which in ("old", "new"):
            alone[which].append(pipeline_alone(data, which, args.batch_size))
            fit[which].append(timed_fit(model, data, which, args.batch_size, args.epochs))
            evaluate[which].append(timed_evaluate(model, data, which))
            print(f"  repeat {r + 1} {which}: {fit[which][-1]:8.1f} images/s training, {evaluate[which][-1]:8.1f} "
                  f"images/s evaluating, {alone[which][-1]:9.0f} images/s pipeline alone", flush=True)
    med = {k: statistics.median(v) for k, v in fit.items()}
    med_alone = {k: statistics.median(v) for k, v in alone.items()}
    return {
        "backend": keras.backend.backend(), "model": "ResNet-8 (cifar stem, stage_depths (1, 1, 1), 16 filters)",
        "images": args.images, "image_shape": [32, 32, 3], "classes": 10, "batch_size": args.batch_size,
        "timed_epochs": args.epochs, "repeats": args.repeats, "statistic": "median of the repeats",
        "cpu_count": os.cpu_count(),
        "old_images_per_second": round(med["old"], 1), "new_images_per_second": round(med["new"], 1),
        "ratio_new_over_old": round(med["new"] / med["old"], 3),
        "evaluate_images_per_second": {k: round(statistics.median(v), 1) for k, v in evaluate.items()},
        "pipeline_alone_images_per_second": {k: round(v) for k, v in med_alone.items()},
        "all": {"training": fit, "evaluate": evaluate, "pipeline_alone": alone},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per run (after 1 warm-up epoch)")
    parser.add_argument("--images", type=int, default=10_000, help="training images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each pipeline, alternating")
    parser.add_argument("--json", type=pathlib.Path, help="write the figures here")
    args = parser.parse_args(argv)
    if min(args.epochs, args.images, args.batch_size, args.repeats) < 1:
        parser.error("--epochs, --images, --batch-size and --repeats must be positive")
    out = run(args)
    print(f"ResNet-8 training on {out['backend']}, batch {args.batch_size}, {args.images} images, "
          f"{args.epochs} timed epoch(s), median of {args.repeats}: old tf.data {out['old_images_per_second']:.1f} "
          f"images/s, new PyDataset {out['new_images_per_second']:.1f} images/s, "
          f"ratio new/old {out['ratio_new_over_old']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if out["ratio_new_over_old"] >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
