"""The model card of an export: ``model_card.json`` (`model_card`) and ``MODEL_CARD.md``
(`card_markdown`)."""

from __future__ import annotations

import dataclasses
import datetime
import json

from ..run.opened import Run
from ..run.records import TrialRecord
from ..runtime import versions


def keras_backend() -> str:
    import keras

    return keras.backend.backend()


def model_card(run: Run, trial_id: str, spec, cfg, data, tested: dict, before, retrain_info, files, command,
               limits: dict | None = None) -> dict:
    """The card of an export: what the model is and takes, how it was found and trained, and how the
    exported file itself scores on the recorded test split (`tested`: `tuning.engine.metrics.split_results`
    of its predictions, every objective's test value and the per-class results)."""
    rec: TrialRecord = run.records[trial_id]
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
        **({"limits": limits} if limits else {}),
        "objective": run.objective,
        "class_weight": run.class_weight,
        "score": rec.score,
        "val_accuracy": rec.val_accuracy,
        "val_metrics": rec.metrics,
        **{f"test_{k}": tested[k] for k in ("accuracy", "loss", "balanced_accuracy", "macro_f1") if k in tested},
        "per_class": tested["per_class"],
        "confusion_matrix": tested["confusion_matrix"],
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
        card["note"] = retrain_info["note"]
    return card


def _normalization_text(stats: dict | None) -> str:
    if not stats:
        return "inside the model"
    mean = ", ".join(f"{v:.4g}" for v in stats["mean"])
    var = ", ".join(f"{v:.4g}" for v in stats["variance"])
    return (f"inside the model: per-channel mean ({mean}) and variance ({var}) measured on "
            f"{stats['sample_size']:,} of the {stats['of']:,} training images (seed {stats['seed']})")


def card_markdown(card: dict) -> str:
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
    lines += _objective_rows(card)
    lines += [
        f"| validation accuracy (search) | {_number(card['val_accuracy'])} |",
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
    lines += _class_section(card)
    if "retrain" in card:
        r = card["retrain"]
        lines += ["", "## Retraining", "", f"Trained from scratch on {r['data']} ({r['images']} images) for "
                  f"{r['epochs']} epochs in {r['seconds']} s: {card['note']}."]
    lines += ["", "## Library versions", ""] + [f"- {k}: {v}" for k, v in card["versions"].items()]
    return "\n".join(lines) + "\n"


def _objective_rows(card: dict) -> list[str]:
    """The card's rows for the other test metrics, the search's objective and the limits kept to."""
    lines = [f"| test {m.replace('_', ' ')} | {card[f'test_{m}']:.4f} |"
             for m in ("balanced_accuracy", "macro_f1", "loss") if card.get(f"test_{m}") is not None]
    objective = card.get("objective", "val_accuracy")
    weighted = f", classes weighted {card['class_weight']}" if card.get("class_weight") else ""
    lines.append(f"| objective of the search | {objective}{weighted} |")
    if objective != "val_accuracy" and card.get("score") is not None:
        lines.append(f"| {objective} (search) | {card['score']:.4f} |")
    if card.get("limits"):
        kept = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in card["limits"].items())
        lines.append(f"| limits kept to | {kept} |")
    return lines


def _class_section(card: dict) -> list[str]:
    """Per-class precision, recall, F1 and support on the test split, and the confusion matrix."""
    if not card.get("per_class"):
        return []
    lines = ["", "## Classes on the test split", "", "| class | precision | recall | F1 | support |",
             "|---|---|---|---|---|"]
    lines += [f"| {name} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['support']} |"
              for name, r in card["per_class"].items()]
    return lines + ["", "Confusion matrix (rows: true class, columns: predicted, in the order of the classes above):",
                    "", "```", *(" ".join(f"{n:>5}" for n in row) for row in card["confusion_matrix"]), "```"]


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _json(d) -> str:
    return json.dumps(d, indent=2)
