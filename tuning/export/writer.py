"""`export`: a trial of a search as files to ship, with a model card (``python -m tuning.export``).

Writes ``results/<name>/export/`` (or ``output``):

- ``model.keras``: the network with its preprocessing inside, taking raw images; it loads
  with ``keras.saving.load_model(path, safe_mode=True)`` anywhere Keras 3 runs;
- ``savedmodel/``: a TensorFlow SavedModel for TensorFlow Serving (signature
  ``serving_default``, input ``image``: raw images, float32), and ``model.tflite`` with
  ``--format tflite`` (`tuning.export.formats`);
- ``model_card.json`` and ``MODEL_CARD.md`` (`tuning.export.card`).

The card's ``test_accuracy`` is measured on the exported ``model.keras`` itself, reloaded,
on the run's recorded test split.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import pathlib
import shutil
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..engine.metrics import predict_split, split_results
from ..errors import UsageError
from ..run.files import write_atomic, write_json
from ..run.opened import Run, open_run
from ..run.records import TrialRecord, best_record
from ..runtime import quiet_stderr
from .card import card_markdown, model_card
from .formats import TENSORFLOW_FORMATS, check_formats, save_tensorflow_formats, tensorflow_formats_in_subprocess
from .restore import hypermodel_for, load_run_data, load_trial_model, recreate_trial_model


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
    max_params: int | None = None,
    max_flops: int | None = None,
    log=print,
) -> ExportResult:
    """Export a trial of a finished (or interrupted) search.

    Args:
        run_dir: ``results/<name>`` as written by the search.
        trial: trial id to export (default: the best by the run's objective, within `max_params`
            and `max_flops`; trained again from its recorded hyperparameters if its checkpoint was
            pruned).
        output: export folder (default ``<run_dir>/export``).
        formats: any of ``keras``, ``savedmodel``, ``tflite`` (default: keras and savedmodel, or
            keras alone where TensorFlow is not installed).
        retrain: first train the configuration from scratch on train + validation for the full
            Hyperband budget (``max_epochs``); the card then gives test accuracy before and after.
        overwrite: replace an existing export folder.
        command: the command line to record in the card.
        max_params, max_flops: limits the exported network must keep to (parameters; multiply-adds
            per image).

    Raises:
        UsageError: bad input (missing run, no completed trial, unknown trial, unwritable output);
            nothing is written.
    """
    run_dir = pathlib.Path(run_dir)
    formats = check_formats(formats, log)
    limits = {k: v for k, v in (("max_params", max_params), ("max_flops", max_flops)) if v is not None}
    run, trial_id, out = _open_trial(run_dir, trial, output, overwrite, retrain, limits)
    data = load_run_data(run, verbose)
    hypermodel = hypermodel_for(run, data)
    hp = hypermodel.hyperparameters(run.values(trial_id))
    spec, cfg = hypermodel.resolve(hp)
    test = data.pipeline("test", 256)
    trained, before, expected, retrain_info = _trained_model(run, trial_id, hypermodel, hp, data, test, retrain, log)
    from resnet import build_resnet  # imports Keras

    clean = build_resnet(spec, data.input_shape, data.num_classes, preprocessing=hypermodel.preprocessing())
    clean.set_weights(trained.get_weights())

    def card_for(tested: dict, files: dict[str, str]) -> dict:
        return model_card(run, trial_id, spec, cfg, data, tested, before, retrain_info, files, command, limits)

    tested = functools.partial(split_results, class_names=data.class_names, label_smoothing=cfg.label_smoothing)
    test_acc, files, card = _write_export(out, clean, formats, test, expected, verbose, card_for, tested)
    log(f"exported trial {trial_id} to {out}: {_scores(card, test_acc, before if retrain else None)}; files: "
        f"{', '.join(files.values())}, model_card.json, MODEL_CARD.md")
    return ExportResult(out, card)


def _scores(card: dict, test_accuracy: float, before: float | None) -> str:
    """The export's test scores for its last line: accuracy (and before retraining), and the run's
    objective's test value where that is another metric."""
    text = f"test_accuracy {test_accuracy:.4f}" + (f" (before retraining {before:.4f})" if before is not None else "")
    metric = card.get("objective", "val_accuracy").removeprefix("val_")
    return text + (f", test_{metric} {card[f'test_{metric}']:.4f}" if metric != "accuracy" else "")




def _open_trial(run_dir: pathlib.Path, trial: str | None, output, overwrite: bool, retrain: bool,
                limits: dict[str, int]) -> tuple[Run, str, pathlib.Path]:
    """(run, trial id, export folder), checked before anything is loaded or written."""
    for key, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"--{key.replace('_', '-')} {value!r} is invalid: give a positive whole number")
    run = open_run(run_dir)
    trial_id = trial or (_best_within(run, limits) if limits else run.best_trial_id())
    if trial_id not in run.records:
        known = ", ".join(sorted(run.records))
        raise UsageError(f"unknown trial id {trial_id!r} in {run_dir}; trials: {known}")
    over = _over_limits(run.records[trial_id], limits)
    if over:
        raise UsageError(f"trial {trial_id} has {over}; leave out --trial to export the best trial within the limits")
    out = pathlib.Path(output) if output else run_dir / "export"
    _check_output(out, overwrite)
    if not (retrain or limits) and not run.checkpoint(trial_id).exists():
        raise UsageError(f"the checkpoint of trial {trial_id} is gone; export the best trial or pass --retrain")
    return run, trial_id, out


def _over_limits(record: TrialRecord, limits: dict[str, int]) -> str:
    """How `record` exceeds `limits` ("" when it keeps to them)."""
    over = [f"{value:,} {what} (more than --{key.replace('_', '-')} {limits[key]:,})"
            for key, what, value in (("max_params", "parameters", record.params), ("max_flops", "FLOPs", record.flops))
            if key in limits and (value is None or value > limits[key])]
    return " and ".join(over)


def _best_within(run: Run, limits: dict[str, int]) -> str:
    """The best completed trial (by the run's objective) that keeps to `limits`; UsageError if none."""
    fitting = [r for r in run.completed() if not _over_limits(r, limits)]
    if not fitting:
        small = min(run.completed(), key=lambda r: (r.params or 0, r.flops or 0))
        raise UsageError(f"no completed trial of {run.run_dir} keeps to the limits: the smallest, trial "
                         f"{small.trial_id}, has {small.params:,} parameters and {small.flops:,} FLOPs; raise the "
                         "limits")
    return best_record(fitting).trial_id


def _trained_model(run: Run, trial_id: str, hypermodel, hp, data, test, retrain: bool, log):
    """(model to export, test accuracy of the searched model or None, the test predictions the
    export must reproduce or None, what retraining did or None). The searched model is scored
    whenever its checkpoint exists; a retrained model has no predictions to reproduce."""
    before = search_probs = searched = None
    if not retrain and not run.checkpoint(trial_id).exists():  # pruned: the best within limits
        model, recreated = recreate_trial_model(run, trial_id, hypermodel, log)
        return model, None, None, recreated
    if not retrain or run.checkpoint(trial_id).exists():
        searched = load_trial_model(run, trial_id, hypermodel)
        search_probs, labels = predict_split(searched, test)
        before = float(np.mean(np.argmax(search_probs, axis=1) == labels))
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
                     "seconds": round(time.perf_counter() - t0, 1),
                     "note": "retrained from scratch on train + validation, so the validation scores are the search's "
                             "of this configuration, not of these weights"}


def _write_export(out: pathlib.Path, clean, formats: Sequence[str], test, expected, verbose: bool,
                  card_for, tested) -> tuple[float, dict[str, str], dict]:
    """Write the export into a temporary folder next to `out`, then swap it in (with
    --overwrite, the old one goes only once the new one is complete). `tested(labels,
    probabilities)` scores the shipped model.keras on the test split for its card. Returns (its test
    accuracy, files, card)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (probs, labels), files = _save_formats(tmp, clean, formats, test, expected, verbose)
        results = tested(labels, probs)
        card = card_for(results, files)
        write_json(tmp / "model_card.json", card)
        write_atomic(tmp / "MODEL_CARD.md", card_markdown(card))
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
    return results["accuracy"], files, card


def _save_formats(folder: pathlib.Path, clean, formats: Sequence[str], test, expected,
                  verbose: bool) -> tuple[tuple, dict[str, str]]:
    """model.keras (reloaded to predict the test split; it must predict the `expected`
    probabilities of the searched model when given), then the other formats. Returns ((its test
    probabilities, the labels), files)."""
    import keras

    files = {}
    keras_path = folder / "model.keras"
    # On JAX, Keras' saving imports TensorFlow where it is installed: keep its start-up log quiet.
    with contextlib.nullcontext() if verbose else quiet_stderr():
        clean.save(keras_path)
    files["keras"] = "model.keras"
    shipped = keras.saving.load_model(keras_path, safe_mode=True)
    probs, labels = predict_split(shipped, test)
    if expected is not None:
        if not np.allclose(probs, expected, atol=1e-5):
            raise RuntimeError("the exported model does not predict like the searched one")
    tf_formats = [f for f in formats if f in TENSORFLOW_FORMATS]
    if tf_formats and keras.backend.backend() == "tensorflow":
        files.update(save_tensorflow_formats(clean, folder, tf_formats, verbose))
    elif tf_formats:  # from model.keras, on the TensorFlow backend in a subprocess
        files.update(tensorflow_formats_in_subprocess(keras_path, folder, tf_formats, verbose))
    return (probs, labels), files








