"""`python -m tuning.export results/<name>`: the best model as files to ship, with a model card.

Writes ``results/<name>/export/`` (or ``--output``):

- ``model.keras``: the network with its preprocessing inside, taking raw images; it loads
  with ``keras.saving.load_model(path, safe_mode=True)`` anywhere Keras 3 runs;
- ``savedmodel/``: a TensorFlow SavedModel for TensorFlow Serving (signature
  ``serving_default``, input ``image``: raw images, float32);
- ``model.tflite`` (with ``--format tflite``);

The SavedModel and TFLite files need TensorFlow: where it is not installed they are left out
(with a line saying so) unless asked for by name, which is then refused. A run searched on
JAX makes them from ``model.keras`` in a TensorFlow-backend subprocess.
- ``model_card.json`` and ``MODEL_CARD.md``.

The card's ``test_accuracy`` is measured on the exported ``model.keras`` itself, reloaded,
on the run's recorded test split.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import os
import pathlib
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from .engine.restore import hypermodel_for, load_run_data, load_trial_model
from .errors import UsageError
from .runtime import quiet_stderr, versions, write_atomic, write_json
from .store import Run, TrialRecord, open_run

FORMATS = ("keras", "savedmodel", "tflite")
DEFAULT_FORMATS = ("keras", "savedmodel")
TENSORFLOW_FORMATS = ("savedmodel", "tflite")


@dataclasses.dataclass
class ExportResult:
    output: pathlib.Path
    card: dict[str, Any]


def _check_output(output: pathlib.Path, overwrite: bool) -> None:
    if output.exists() and not overwrite:
        raise UsageError(f"{output} already exists; pass --overwrite to replace it, or --output another folder")
    if output.exists() and not output.is_dir():
        raise UsageError(f"{output} exists and is not a folder; choose another --output")
    parent = output.parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write the export to {output}: {probe} is not writable; choose another --output")


def _accuracy(model, test) -> tuple[float, Any]:
    """Accuracy and class probabilities of `model` over the test pipeline (a streamed folder's
    images are read batch by batch, never all at once)."""
    import numpy as np

    probs, labels = [], []
    for i in range(test.num_batches):
        x, y = test[i]
        probs.append(np.asarray(model.predict_on_batch(x)))
        labels.append(np.argmax(y, axis=1))
    probs = np.concatenate(probs)
    return float(np.mean(np.argmax(probs, axis=1) == np.concatenate(labels))), probs


def export(
    run_dir: str | os.PathLike,
    *,
    trial: str | None = None,
    output: str | os.PathLike | None = None,
    formats: Sequence[str] | None = None,
    retrain: bool = False,
    overwrite: bool = False,
    verbose: bool = False,
    command: str | None = None,
    log=print,
) -> ExportResult:
    """Export a trial of a finished (or interrupted) search.

    Args:
        run_dir: ``results/<name>`` as written by the search.
        trial: trial id to export (default: the best).
        output: export folder (default ``<run_dir>/export``).
        formats: any of ``keras``, ``savedmodel``, ``tflite`` (default: keras and savedmodel, or
            keras alone where TensorFlow is not installed).
        retrain: first train the configuration from scratch on train + validation for the full
            Hyperband budget (``max_epochs``); the card then gives test accuracy before and after.
        overwrite: replace an existing export folder.
        command: the command line to record in the card.

    Raises:
        UsageError: bad input (missing run, no completed trial, unknown trial, unwritable output);
            nothing is written.
    """
    run_dir = pathlib.Path(run_dir)
    formats = _check_formats(formats, log)
    run, trial_id, out = _open_trial(run_dir, trial, output, overwrite, retrain)
    data = load_run_data(run, verbose)
    hypermodel = hypermodel_for(run, data)
    hp = hypermodel.hyperparameters(run.values(trial_id))
    spec, cfg = hypermodel.resolve(hp)
    test = data.pipeline("test", 256)
    trained, before, expected, retrain_info = _trained_model(run, trial_id, hypermodel, hp, data, test, retrain, log)
    from resnet import build_resnet

    clean = build_resnet(spec, data.input_shape, data.num_classes, preprocessing=hypermodel.preprocessing())
    clean.set_weights(trained.get_weights())

    def card_for(test_acc: float, files: dict[str, str]) -> dict:
        return _card(run, trial_id, run.records[trial_id], spec, cfg, data, test_acc, before, retrain_info, files,
                     command)

    test_acc, files, card = _write_export(out, clean, formats, test, expected, verbose, card_for)
    log(f"exported trial {trial_id} to {out}: test_accuracy {test_acc:.4f}"
        + (f" (before retraining {before:.4f})" if retrain and before is not None else "")
        + f"; files: {', '.join(files.values())}, model_card.json, MODEL_CARD.md")
    return ExportResult(out, card)


def _check_formats(formats: Sequence[str] | None, log) -> tuple[str, ...]:
    """The formats asked for (None: the default ones that can be made here), without repeats,
    with ``keras`` first if it was left out. TensorFlow's formats without TensorFlow: refused
    when asked for by name."""
    from .backend import installed

    if formats is None:
        formats = DEFAULT_FORMATS
        if not installed("tensorflow"):
            log("note: TensorFlow is not installed, so the export has no SavedModel (pip install tensorflow to "
                "get one); model.keras loads on any Keras backend")
            formats = tuple(f for f in formats if f not in TENSORFLOW_FORMATS)
    formats = tuple(dict.fromkeys(formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UsageError(f"unknown format(s) {bad or formats}; choose from {', '.join(FORMATS)}")
    need_tf = [f for f in formats if f in TENSORFLOW_FORMATS]
    if need_tf and not installed("tensorflow"):
        raise UsageError(f"format {need_tf[0]} needs TensorFlow, which is not installed here; install it (pip install "
                         "tensorflow) or export --format keras, which loads on any Keras backend")
    if "keras" not in formats:
        formats = ("keras", *formats)  # the card's accuracy is measured on the .keras file
    return formats


def _open_trial(run_dir: pathlib.Path, trial: str | None, output, overwrite: bool,
                retrain: bool) -> tuple[Run, str, pathlib.Path]:
    """(run, trial id, export folder), checked before anything is loaded or written."""
    run = open_run(run_dir)
    trial_id = trial or run.best_trial_id()
    if trial_id not in run.records:
        known = ", ".join(sorted(run.records))
        raise UsageError(f"unknown trial id {trial_id!r} in {run_dir}; trials: {known}")
    out = pathlib.Path(output) if output else run_dir / "export"
    _check_output(out, overwrite)
    if not retrain and not run.checkpoint(trial_id).exists():
        raise UsageError(f"the checkpoint of trial {trial_id} is gone; export the best trial or pass --retrain")
    return run, trial_id, out


def _trained_model(run: Run, trial_id: str, hypermodel, hp, data, test, retrain: bool, log):
    """(model to export, test accuracy of the searched model or None, the test predictions the
    export must reproduce or None, what retraining did or None). The searched model is scored
    whenever its checkpoint exists; a retrained model has no predictions to reproduce."""
    before = search_probs = searched = None
    if not retrain or run.checkpoint(trial_id).exists():
        searched = load_trial_model(run, trial_id, hypermodel)
        before, search_probs = _accuracy(searched, test)
    if not retrain:
        return searched, before, search_probs, None
    trained, retrain_info = _retrain(run, trial_id, hypermodel, hp, data, log)
    return trained, before, None, retrain_info


def _retrain(run: Run, trial_id: str, hypermodel, hp, data, log) -> tuple[Any, dict[str, Any]]:
    """Train the configuration from scratch on train + validation for the full budget."""
    import keras

    epochs = int(run.info["max_epochs"])
    log(f"retraining trial {trial_id} from scratch on train + validation for {epochs} epochs")
    keras.utils.set_random_seed(int(run.info.get("seed", 0)))
    t0 = time.perf_counter()
    trained = hypermodel.build(hp)
    hypermodel.fit(hp, trained, epochs=epochs, final=True)
    return trained, {"epochs": epochs, "data": "train + validation",
                     "images": int(len(data.arrays("train+validation")[1])),
                     "seconds": round(time.perf_counter() - t0, 1)}


def _write_export(out: pathlib.Path, clean, formats: Sequence[str], test, expected, verbose: bool,
                  card_for) -> tuple[float, dict[str, str], dict]:
    """Write the export into a temporary folder next to `out`, then swap it in (with
    --overwrite, the old one goes only once the new one is complete). Returns (test accuracy
    of the shipped model.keras, files, card)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        test_acc, files = _save_formats(tmp, clean, formats, test, expected, verbose)
        card = card_for(test_acc, files)
        write_json(tmp / "model_card.json", card)
        write_atomic(tmp / "MODEL_CARD.md", _card_markdown(card))
        os.chmod(tmp, 0o755)
        if out.exists():  # --overwrite: swap in the new export, then drop the old one
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return test_acc, files, card


def _save_formats(folder: pathlib.Path, clean, formats: Sequence[str], test, expected,
                  verbose: bool) -> tuple[float, dict[str, str]]:
    """model.keras (scored after reloading it; it must predict the `expected` probabilities of
    the searched model when given), then the other formats. Returns (test accuracy, files)."""
    import keras

    files = {}
    keras_path = folder / "model.keras"
    # On JAX, Keras' saving imports TensorFlow where it is installed: keep its start-up log quiet.
    with contextlib.nullcontext() if verbose else quiet_stderr():
        clean.save(keras_path)
    files["keras"] = "model.keras"
    shipped = keras.saving.load_model(keras_path, safe_mode=True)
    test_acc, probs = _accuracy(shipped, test)
    if expected is not None:
        import numpy as np

        if not np.allclose(probs, expected, atol=1e-5):
            raise RuntimeError("the exported model does not predict like the searched one")
    tf_formats = [f for f in formats if f in TENSORFLOW_FORMATS]
    if tf_formats and keras.backend.backend() == "tensorflow":
        files.update(save_tensorflow_formats(clean, folder, tf_formats, verbose))
    elif tf_formats:  # from model.keras, on the TensorFlow backend in a subprocess
        files.update(_tensorflow_formats_in_subprocess(keras_path, folder, tf_formats, verbose))
    return test_acc, files


def save_tensorflow_formats(model, folder: pathlib.Path, formats: Sequence[str], verbose: bool) -> dict[str, str]:
    """SavedModel and/or TFLite of `model` (on the TensorFlow backend) into `folder`."""
    files = {}
    if "savedmodel" in formats:
        with contextlib.redirect_stdout(sys.stderr if verbose else open(os.devnull, "w")):
            model.export(str(folder / "savedmodel"), format="tf_saved_model", verbose=verbose)
        files["savedmodel"] = "savedmodel/"
    if "tflite" in formats:
        _to_tflite(folder / "savedmodel" if "savedmodel" in formats else None, model, folder / "model.tflite")
        files["tflite"] = "model.tflite"
    return files


_TF_SCRIPT = """
import json, pathlib, sys
from tuning.runtime import import_keras
import_keras("tensorflow", verbose=sys.argv[4] == "1")
import keras
from tuning.export import save_tensorflow_formats
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
print(json.dumps(save_tensorflow_formats(model, pathlib.Path(sys.argv[2]), sys.argv[3].split(","), sys.argv[4] == "1")))
"""


def _tensorflow_formats_in_subprocess(keras_path: pathlib.Path, folder: pathlib.Path, formats: Sequence[str],
                                      verbose: bool) -> dict[str, str]:
    import json
    import subprocess

    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run([sys.executable, "-c", _TF_SCRIPT, str(keras_path), str(folder), ",".join(formats),
                           "1" if verbose else "0"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"making {', '.join(formats)} on the TensorFlow backend failed: "
                           f"{(done.stderr.strip().splitlines() or ['no message'])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _to_tflite(saved_model: pathlib.Path | None, model, path: pathlib.Path) -> None:
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as scratch:
        if saved_model is None:
            saved_model = pathlib.Path(scratch) / "sm"
            with contextlib.redirect_stdout(open(os.devnull, "w")):
                model.export(str(saved_model), format="tf_saved_model", verbose=False)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite's notes about its move to LiteRT
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
            path.write_bytes(converter.convert())


def keras_backend() -> str:
    import keras

    return keras.backend.backend()


def _card(run: Run, trial_id, rec: TrialRecord, spec, cfg, data, test_acc, before, retrain_info, files,
          command) -> dict:
    h, w, c = data.input_shape
    card = {
        "name": run.name,
        "trial_id": trial_id,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command or f"tuning.export.export({str(run.run_dir)!r}, trial={trial_id!r})",
        "files": files,
        "input": {
            "shape": [None, h, w, c], "dtype": data.dtype, "value_range": list(data.value_range),
            "description": (f"raw images, {h}x{w}x{c}, float32 in [{data.value_range[0]:g}, "
                            f"{data.value_range[1]:g}]; normalisation"
                            + (" and resizing are" if data.resize_to else " is") + " inside the model"),
            "normalization": data.normalization,
        },
        "output": {"shape": [None, data.num_classes], "description": "class probabilities (softmax)"},
        "class_names": data.class_names,
        "spec": spec.to_dict(),
        "architecture": {"depth": spec.depth, "layers": spec.num_layers, "stage_depths": list(spec.stage_depths),
                         "downsample_at": list(spec.downsample_at), "block": spec.block, "stem": spec.stem,
                         "preact": spec.preact, "shortcut": spec.shortcut},
        "hyperparameters": rec.hyperparameters,
        "train_config": dataclasses.asdict(cfg),
        "params": rec.params,
        "flops": rec.flops,
        "val_accuracy": rec.val_accuracy,
        "test_accuracy": test_acc,
        "epochs_trained": rec.epochs if retrain_info is None else retrain_info["epochs"],
        "dataset": data.name,
        "split_seed": data.seed,
        "split": data.split,
        "split_sizes": data.sizes(),
        "backend": run.backend,               # the search's
        "export_backend": keras_backend(),    # this export's (the same unless that one is not installed here)
        "versions": versions(),
    }
    if retrain_info is not None:
        card["retrain"] = retrain_info
        card["test_accuracy_before_retrain"] = before
        card["note"] = ("retrained from scratch on train + validation, so val_accuracy is the search's score of "
                        "this configuration, not of these weights")
    return card


def _normalization_text(stats: dict | None) -> str:
    if not stats:
        return "inside the model"
    mean = ", ".join(f"{v:.4g}" for v in stats["mean"])
    var = ", ".join(f"{v:.4g}" for v in stats["variance"])
    return (f"inside the model: per-channel mean ({mean}) and variance ({var}) measured on "
            f"{stats['sample_size']:,} of the {stats['of']:,} training images (seed {stats['seed']})")


def _card_markdown(card: dict) -> str:
    arch = card["architecture"]
    lines = [
        f"# Model card: {card['name']}, trial {card['trial_id']}",
        "",
        f"A residual network of {arch['layers']} weighted layers ({arch['block']} blocks, "
        f"{'pre' if arch['preact'] else 'post'}-activation, shortcut {arch['shortcut']}, {arch['stem']} stem) "
        f"found by a Hyperband search over ResNets on **{card['dataset']}**.",
        "",
        "| | |",
        "|---|---|",
        f"| test accuracy | **{card['test_accuracy']:.4f}** (this file, on the recorded test split) |",
    ]
    if "test_accuracy_before_retrain" in card and card["test_accuracy_before_retrain"] is not None:
        lines.append(f"| test accuracy before retraining | {card['test_accuracy_before_retrain']:.4f} |")
    lines += [
        f"| validation accuracy (search) | {card['val_accuracy']:.4f} |",
        f"| trainable parameters | {card['params']:,} |",
        f"| multiply-adds per image | {card['flops']:,} |",
        f"| epochs trained | {card['epochs_trained']} |",
        f"| input | {card['input']['description']} |",
        f"| output | {card['output']['description']} over {len(card['class_names'])} classes |",
        f"| classes | {', '.join(card['class_names'])} |",
        f"| normalisation | {_normalization_text(card['input'].get('normalization'))} |",
        f"| dataset | {card['dataset']}, split seed {card['split_seed']}; sizes {card['split_sizes']} |",
        f"| Keras backend | searched on {card.get('backend', '?')}, exported on {card.get('export_backend', '?')} "
        f"(Keras {card['versions'].get('keras', '?')}) |",
        f"| created | {card['created']} |",
        f"| command | `{card['command']}` |",
        "",
        "## Files",
        "",
    ]
    usage = {
        "keras": "`keras.saving.load_model('model.keras', safe_mode=True)`: Keras 3, any backend",
        "savedmodel": "TensorFlow Serving / `tf.saved_model.load('savedmodel').serve(images)`",
        "tflite": "`tf.lite.Interpreter(model_path='model.tflite')`",
    }
    lines += [f"- `{path}`: {usage[fmt]}" for fmt, path in card["files"].items()]
    lines += ["", "## How the data was split", "", card["split"], "", "## Architecture", "",
              f"Stage depths {arch['stage_depths']} (halving at blocks {arch['downsample_at'] or 'none'}), "
              f"depth {arch['depth']} blocks.", "", "```json", _json(card["spec"]), "```", "",
              "## Hyperparameters", "", "| name | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in card["hyperparameters"].items()]
    if "retrain" in card:
        r = card["retrain"]
        lines += ["", "## Retraining", "", f"Trained from scratch on {r['data']} ({r['images']} images) for "
                  f"{r['epochs']} epochs in {r['seconds']} s. {card['note']}."]
    lines += ["", "## Library versions", ""] + [f"- {k}: {v}" for k, v in card["versions"].items()]
    return "\n".join(lines) + "\n"


def _json(d) -> str:
    import json

    return json.dumps(d, indent=2)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m tuning.export", description="Export a searched model (default: the best trial) "
                "as model.keras + a TensorFlow SavedModel, with model_card.json and MODEL_CARD.md.")
    p.add_argument("run_dir", help="the search's results folder, results/<name>")
    p.add_argument("--trial", help="trial id to export instead of the best (see leaderboard.md)")
    p.add_argument("--output", help="export folder (default: <run_dir>/export)")
    p.add_argument("--format", dest="formats", action="append", choices=FORMATS,
                   help="keras, savedmodel or tflite; repeat for several (default: keras and savedmodel; keras "
                        "alone where TensorFlow is not installed)")
    p.add_argument("--retrain", action="store_true", help="first train the configuration from scratch on train + "
                   "validation for the full budget; the card gives test accuracy before and after")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    p.add_argument("--verbose", action="store_true", help="show the Keras backend's log")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from search_spaces import SpaceError

    from .data import DataError

    command = " ".join(shlex.quote(a) for a in ["python", "-m", "tuning.export",
                                                 *(sys.argv[1:] if argv is None else argv)])
    try:
        export(args.run_dir, trial=args.trial, output=args.output, formats=args.formats,
               retrain=args.retrain, overwrite=args.overwrite, verbose=args.verbose, command=command,
               log=lambda s: print(s, flush=True))
    except (UsageError, SpaceError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
