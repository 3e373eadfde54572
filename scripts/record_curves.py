"""Record real learning curves of configurations drawn from a space, for a surrogate benchmark.

    python scripts/record_curves.py docs/figures/curves-small-digits.jsonl --configs 300

Each line of the output is one configuration: its hyperparameter values (keras-tuner's names),
its ResNet spec and cost, and for every epoch up to the space's ``max_epochs`` the validation
accuracy and loss and the epoch's wall seconds. The configurations are the ones the search's
own oracle would draw at random (`ResNetOracle._random_values`, invalid ones redrawn), from
`--seed`; each is trained from scratch exactly as a trial is (`ResNetHyperModel.fit`: the
sampled optimiser, batch size and schedule over the whole budget, so the curve is the one a
configuration promoted round after round follows), with initial weights seeded as the search
seeds them. It appends: run it again to go on where it stopped. Configurations are trained in
child processes of `--per-process` each (TensorFlow keeps memory for every model a process
trains).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time
import zlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def draw(space_name: str, count: int, seed: int) -> list[dict]:
    """The first `count` configurations the oracle draws at random from the space, in order."""
    import keras_tuner as kt

    from search_spaces import Sampler, load_space
    from tuning.data import load_data
    from tuning.engine.oracle import ResNetOracle

    space = load_space(space_name)
    data = load_data(space.dataset, seed=seed)
    sampler = Sampler(space, data.net_input_shape, data.num_classes)
    # keras-tuner's seed as searches seeded it when the curves were recorded (now `oracle_seed`).
    oracle = ResNetOracle(objective=kt.Objective("val_accuracy", "max"), max_epochs=space.max_epochs,
                          factor=space.factor, hyperband_iterations=1, seed=seed + 1, check=sampler.check)
    hp = kt.HyperParameters()
    sampler.declare(hp)
    oracle.update_space(hp)
    return [oracle._random_values() for _ in range(count)]


def train(space_name: str, values_list: list[dict], seed: int, out: pathlib.Path) -> None:
    """Train each configuration for the space's max_epochs and append its curve to `out`."""
    from tuning.runtime import import_keras

    import_keras("tensorflow", False)
    import keras

    from search_spaces import load_space
    from tuning.data import load_data
    from tuning.engine.hypermodel import ResNetHyperModel

    space = load_space(space_name)
    data = load_data(space.dataset, seed=seed)
    hypermodel = ResNetHyperModel(space, data, max_epochs=space.max_epochs, seed=seed)

    class Curve(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = round(time.perf_counter() - self._t0, 3)
            self.epochs.append({"epoch": epoch + 1, "val_accuracy": float(logs["val_accuracy"]),
                                "val_loss": float(logs["val_loss"]), "seconds": seconds})

    for values in values_list:
        hp = hypermodel.hyperparameters(values)
        spec, cfg, cost = hypermodel.sampler.resolve(values)
        keras.backend.clear_session(free_memory=False)
        key = json.dumps(values, sort_keys=True)
        keras.utils.set_random_seed((seed * 1_000_003 + zlib.crc32(key.encode())) % 2**31)
        model = hypermodel.build(hp)
        curve = Curve()
        t0 = time.perf_counter()
        hypermodel.fit(hp, model, epochs=space.max_epochs, callbacks=[curve])
        line = {"values": values, "spec": spec.to_dict(), "params": cost.params, "flops": cost.flops,
                "seconds": round(time.perf_counter() - t0, 3), "curve": curve.epochs}
        with open(out, "a") as f:
            f.write(json.dumps(line) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--space", default="small")
    p.add_argument("--configs", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-process", type=int, default=20)
    p.add_argument("--child", type=int, nargs=2, metavar=("START", "STOP"), help=argparse.SUPPRESS)
    args = p.parse_args()
    out = pathlib.Path(args.out)
    configs = draw(args.space, args.configs, args.seed)
    if args.child:
        train(args.space, configs[args.child[0]:args.child[1]], args.seed, out)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    while True:
        done = len(out.read_text().splitlines()) if out.exists() else 0
        if done >= args.configs:
            break
        stop = min(done + args.per_process, args.configs)
        print(f"configurations {done}..{stop - 1} of {args.configs}", flush=True)
        subprocess.run([sys.executable, __file__, str(out), "--space", args.space, "--configs", str(args.configs),
                        "--seed", str(args.seed), "--child", str(done), str(stop)], check=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    print(f"{args.configs} curves in {out}")


if __name__ == "__main__":
    main()
