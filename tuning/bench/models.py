"""Benchmarks of the networks themselves: training throughput of our ResNet-50 against
``keras.applications.ResNet50`` (`bench_throughput`), and seconds per CIFAR-10 epoch of
``cifar_resnet56`` with and without mixed precision and XLA (`bench_epoch`)."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Sequence
from typing import Any

from resnet import zoo_spec

from ..runtime import dtype_policy
from .machine import accelerators


class RepeatedBatches:
    """The same few batches over and over, so `steps_per_epoch` steps really run.

    (With NumPy arrays Keras stops an epoch when the arrays run out, which would time fewer
    steps than asked for.) A plain generator works on every backend.
    """

    def __init__(self, x, y, batch: int):
        self.x, self.y, self.batch = x, y, batch

    def __call__(self):
        n = len(self.x) // self.batch
        i = 0
        while True:
            sl = slice((i % n) * self.batch, (i % n + 1) * self.batch)
            yield self.x[sl], self.y[sl]
            i += 1


def compile_and_warm(model, batches: RepeatedBatches, jit: bool):
    """Compile and warm up (the first steps trace and compile the training step)."""
    import keras

    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy",
                  jit_compile=jit)
    model.fit(batches(), epochs=1, steps_per_epoch=3, shuffle=False, verbose=0)


def timed_fit(model, batches: RepeatedBatches, steps: int) -> float:
    """Images per second of `steps` training steps of an already compiled and warmed model."""
    import keras

    class Count(keras.callbacks.Callback):
        n = 0

        def on_train_batch_end(self, batch, logs=None):
            Count.n += 1

    t0 = time.perf_counter()
    # A batch-end callback makes Keras read every step's loss back before starting the next step
    # (as the search's own TerminateOnNaN does), so the time covers every step, each synchronised.
    model.fit(batches(), epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0, callbacks=[Count()])
    seconds = time.perf_counter() - t0
    if Count.n != steps:
        raise RuntimeError(f"timed {Count.n} steps instead of {steps}")
    return steps * batches.batch / seconds


def bench_throughput(batch: int, steps: int, size: int, jit: bool, repeats: int, precision: str = "float32",
                     with_v1: bool = False) -> dict[str, Any]:
    """Training throughput of our ResNet-50 against keras.applications.ResNet50, same everything.

    Every model is built, compiled and warmed up first; then the timed runs take turns
    (ours, theirs, ours, ...), so drift in the machine's speed hits both alike.
    """
    import keras
    import numpy as np

    from resnet import build_resnet

    policy = dtype_policy(precision, bool(accelerators()))
    keras.mixed_precision.set_global_policy(policy)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * 4, size, size, 3)).astype("float32")
    y = rng.integers(0, 1000, size=(batch * 4,))
    batches = RepeatedBatches(x, y, batch)
    builders = {
        "ours": lambda: build_resnet(zoo_spec("resnet50"), (size, size, 3), 1000),
        "keras.applications": lambda: keras.applications.ResNet50(weights=None, input_shape=(size, size, 3),
                                                                 classes=1000),
    }
    if with_v1:  # the same layout as keras.applications (stride on the first 1x1), to compare like with like
        v1 = dataclasses.replace(zoo_spec("resnet50"), bottleneck_stride="1x1")
        builders["ours, stride on the 1x1"] = lambda: build_resnet(v1, (size, size, 3), 1000)
    models = {}
    for name, build in builders.items():
        t0 = time.perf_counter()
        models[name] = build()
        compile_and_warm(models[name], batches, jit)
        print(f"  {name:<24} built, compiled and warmed up in {time.perf_counter() - t0:.1f} s", flush=True)
    results: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            results[name].append(timed_fit(model, batches, steps))
            print(f"  {name:<24} {results[name][-1]:8.1f} images/s", flush=True)
    keras.mixed_precision.set_global_policy("float32")
    med = {name: statistics.median(r) for name, r in results.items()}
    ours, theirs = med["ours"], med["keras.applications"]
    out = {"batch": batch, "image_size": size, "steps": steps, "jit_compile": jit, "policy": policy,
           "repeats": repeats, "statistic": "median of the repeats",
           "ours_images_per_second": round(ours, 2), "keras_applications_images_per_second": round(theirs, 2),
           "ratio": round(ours / theirs, 3), "medians": {k: round(v, 2) for k, v in med.items()}, "all": results}
    print(f"ResNet-50 training, {policy}, jit={jit}, batch {batch} at {size}x{size} (median of {repeats}): "
          f"ours {ours:.1f} img/s, keras.applications {theirs:.1f} img/s, ratio {ours / theirs:.3f}")
    if with_v1:
        print(f"  ours with the stride on the 1x1: {med['ours, stride on the 1x1']:.1f} img/s, ratio "
              f"{med['ours, stride on the 1x1'] / theirs:.3f}")
    return out


def bench_epoch(batch: int, steps: int | None, precisions: Sequence[str] = ("float32", "mixed"),
                jits: Sequence[bool] = (False, True)) -> dict[str, Any]:
    """Seconds per CIFAR-10-sized epoch (45,000 images) of cifar_resnet56, mixed precision x XLA."""
    import keras
    import numpy as np

    from resnet import build_resnet

    rng = np.random.default_rng(0)
    n = 45_000
    steps_per_epoch = -(-n // batch)
    steps = steps or steps_per_epoch
    x = rng.integers(0, 255, size=(batch * 8, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(batch * 8,))
    batches = RepeatedBatches(x, y, batch)
    out = {"batch": batch, "images_per_epoch": n, "measured_steps": steps, "runs": []}
    for precision in precisions:
        for jit in jits:
            keras.backend.clear_session()
            policy = dtype_policy(precision, bool(accelerators()))
            keras.mixed_precision.set_global_policy(policy)
            model = build_resnet(zoo_spec("cifar_resnet56"), (32, 32, 3), 10)
            t0 = time.perf_counter()
            compile_and_warm(model, batches, jit)
            warm = time.perf_counter() - t0
            rate = timed_fit(model, batches, steps)
            seconds = n / rate
            out["runs"].append({"policy": policy, "jit_compile": jit, "images_per_second": round(rate, 1),
                                "seconds_per_epoch": round(seconds, 2), "compile_and_warm_up_seconds": round(warm, 1)})
            print(f"  {policy:<15} jit={str(jit):<5} {rate:9.1f} img/s  {seconds:8.1f} s/epoch  "
                  f"(compile and 3 warm-up steps {warm:.1f} s)", flush=True)
    keras.mixed_precision.set_global_policy("float32")
    return out
