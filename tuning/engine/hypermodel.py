"""`ResNetHyperModel`: keras-tuner's view of a search space over ResNets."""

from __future__ import annotations

import math

import keras
import keras_tuner as kt

from resnet import ResNetSpec, build_resnet
from search_spaces import Sampler, Space, TrainConfig

from ..data.datasets import Data
from ..data.images import stop_on_bad_image
from .callbacks import ResumeState
from .metrics import class_averaged_metrics


def make_optimizer(cfg: TrainConfig) -> keras.optimizers.Optimizer:
    """The sampled optimiser. Weight decay skips BatchNorm scales/offsets and biases."""
    wd = cfg.weight_decay or None
    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(cfg.learning_rate, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=wd)
    elif cfg.optimizer == "adam":
        opt = keras.optimizers.Adam(cfg.learning_rate)
    elif cfg.optimizer == "adamw":
        opt = keras.optimizers.AdamW(cfg.learning_rate, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"optimizer={cfg.optimizer!r} is invalid: expected sgd, adam or adamw")
    if wd:
        opt.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return opt


class CosineWithWarmup(keras.callbacks.Callback):
    """Cosine decay over the whole Hyperband budget (`total_epochs`), after a linear warm-up.

    The rate is a function of the absolute epoch (and the batch within it), so a trial that
    Hyperband promotes continues the same curve from `initial_epoch` instead of restarting it.
    """

    def __init__(self, base_lr: float, total_epochs: int, warmup_epochs: int, steps_per_epoch: int):
        super().__init__()
        self.base_lr, self.total, self.warmup = base_lr, max(1, total_epochs), warmup_epochs
        self.steps = max(1, steps_per_epoch)
        self._epoch = 0

    def rate(self, t: float) -> float:
        """Learning rate at `t` epochs into training."""
        if self.warmup and t < self.warmup:
            return self.base_lr * (t + 1 / self.steps) / self.warmup
        progress = min(1.0, (t - self.warmup) / max(1e-9, self.total - self.warmup))
        return 0.5 * self.base_lr * (1 + math.cos(math.pi * progress))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(self.rate(self._epoch + batch / self.steps))


def _build_state(model: keras.Model, input_shape, num_classes: int) -> None:
    """Create the metric, loss and optimiser variables now rather than inside the first traced
    training step. Created there, they make TensorFlow trace the step twice (seconds per trial),
    and an unbuilt optimiser cannot take the momentum and learning rate back from a parent
    trial's checkpoint when Hyperband promotes a configuration."""
    import numpy as np

    # The metrics and the loss need only the shapes of labels and predictions; built here, Keras'
    # pre-build below skips running the whole model symbolically to find them (0.1-0.2 s a trial).
    y_true = keras.KerasTensor((1, num_classes))
    y_pred = keras.KerasTensor((1, num_classes), dtype=model.outputs[0].dtype)
    for compiled in (getattr(model, "_compile_metrics", None), getattr(model, "_compile_loss", None)):
        if compiled is not None and not compiled.built:
            compiled.build(y_true, y_pred)
    batch = (np.zeros((1, *input_shape), "float32"), np.zeros((1, num_classes), "float32"))
    symbolic_build = getattr(model, "_symbolic_build", None)
    if symbolic_build is not None:  # Keras 3's own pre-build, which fit() skips without a strategy
        symbolic_build(data_batch=batch)
    else:
        model.optimizer.build(model.trainable_variables)


class ResumablePlateau(keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau whose counters live in `state`, so a resumed trial keeps them."""

    def __init__(self, state: ResumeState | None = None, **kwargs):
        super().__init__(**kwargs)
        self.state = state if state is not None else ResumeState()

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        saved = self.state.plateau
        if saved:
            self.wait, self.best, self.cooldown_counter = saved["wait"], saved["best"], saved["cooldown"]

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.state.plateau = {"wait": int(self.wait), "best": float(self.best), "cooldown": int(self.cooldown_counter)}


class ResNetHyperModel(kt.HyperModel):
    """Samples a space into a `ResNetSpec` + `TrainConfig`, builds, compiles and trains it.

    Args:
        space: the search space.
        data: the dataset (its input shape, classes and training-split statistics are used).
        max_epochs: the Hyperband budget; the cosine schedule spans it.
        sampler: an existing sampler for (space, data) to share; made if not given.
        jit_compile: passed to `Model.compile` (XLA; "auto" lets Keras decide).
        seed: seeds the data order (per epoch) and the augmentation layers.
        replicas: replicas a trial trains on (MirroredStrategy); batch sizes are per replica.
        class_weight: ``"balanced"`` weights the training loss by inverse class frequency of the
            training split; None: every image counts the same.
    """

    def __init__(self, space: Space, data: Data, max_epochs: int | None = None, sampler: Sampler | None = None,
                 jit_compile: bool | str = False, seed: int = 0, replicas: int = 1, class_weight: str | None = None):
        super().__init__(name="resnet")
        self.space, self.data = space, data
        self.max_epochs = max_epochs or space.max_epochs
        self.sampler = sampler or Sampler(space, data.net_input_shape, data.num_classes)
        self.jit_compile = jit_compile
        self.seed = seed
        self.replicas = replicas  # a trial's sampled batch size is per replica
        self.class_weights = data.balanced_class_weights() if class_weight == "balanced" else None
        self._stats = data.normalization_stats()

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        self.sampler.declare(hp)

    def resolve(self, hp: kt.HyperParameters) -> tuple[ResNetSpec, TrainConfig]:
        self.sampler.declare(hp)  # registers the space on a fresh `hp`; a no-op otherwise
        spec, cfg, _ = self.sampler.resolve(hp.values)
        return spec, cfg

    def hyperparameters(self, values: dict) -> kt.HyperParameters:
        """A `HyperParameters` holding a recorded trial's values (keras-tuner names)."""
        hp = kt.HyperParameters()
        self.sampler.declare(hp)
        hp.values.update(values)
        return hp

    def preprocessing(self, seed: int = 0) -> list[keras.layers.Layer]:
        """Layers between the raw image and the stem: resize (if asked), normalise, augment.

        The space's ``pad_crop_flip`` augmentation is the paper's (shifts of up to 4 pixels
        with zero fill, and horizontal flips) as built-in Keras layers that act only in training:
        it runs on the accelerator with the model, its random state is saved with the weights (so
        a resumed trial continues the same sequence), and the exported model ignores it.
        """
        layers = []
        if self.data.resize_to is not None:
            layers.append(keras.layers.Resizing(*self.data.resize_to, name="resize"))
        mean, var = self._stats
        layers.append(keras.layers.Normalization(mean=mean, variance=var, name="normalize"))
        if self.space.augment == "pad_crop_flip":
            h, w = self.data.net_input_shape[:2]
            layers.append(keras.layers.RandomTranslation(4 / h, 4 / w, fill_mode="constant", fill_value=0.0,
                                                         interpolation="nearest", seed=seed, name="augment_shift"))
            layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 1, name="augment_flip"))
        return layers

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        spec, cfg = self.resolve(hp)
        model = build_resnet(spec, self.data.input_shape, self.data.num_classes,
                             preprocessing=self.preprocessing(self.seed))
        model.compile(
            optimizer=make_optimizer(cfg),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
            metrics=["accuracy", *class_averaged_metrics(self.data.num_classes)],
            jit_compile=self.jit_compile,
        )
        _build_state(model, self.data.input_shape, self.data.num_classes)
        return model

    def fit(self, hp: kt.HyperParameters, model: keras.Model, *args, epochs: int = 1, initial_epoch: int = 0,
            callbacks=None, verbose=0, final: bool = False, batch_size: int | None = None,
            resume_state: ResumeState | None = None, **kwargs):
        """Train on the dataset's pipelines with the sampled batch size and schedule.

        `epochs` / `initial_epoch` come from Hyperband: a promoted configuration starts from its
        parent's checkpoint (weights and optimiser state, learning rate included) at its parent's
        epoch. Extra positional/keyword arguments (e.g. ``x``) are refused: the data is the
        hypermodel's. `final=True` trains on train + validation with no validation (for a final
        retraining); the plateau schedule then watches the training loss. `batch_size` overrides
        the sampled one (the search halves it to retry a trial that ran out of memory);
        `resume_state` carries the schedule's counters across an interruption.
        """
        if args or {"x", "y", "validation_data"} & set(kwargs):
            raise TypeError("ResNetHyperModel.fit trains on the hypermodel's own data; pass no x/y")
        kwargs["shuffle"] = False  # the pipeline shuffles
        _, cfg = self.resolve(hp)
        batch = (batch_size or cfg.batch_size) * self.replicas
        train_split = "train+validation" if final else "train"
        train, steps = self.data.training_pipeline(train_split, batch, seed=self.seed, initial_epoch=initial_epoch,
                                                   epochs=epochs, class_weights=self.class_weights)
        val = None if final else self.data.pipeline("validation", max(batch, 256))
        callbacks = [keras.callbacks.TerminateOnNaN(), *(callbacks or [])]
        if self.data.images is not None:  # first: an unreadable image stops fit before the epoch is saved
            callbacks.insert(0, stop_on_bad_image(self.data.images))
        if cfg.schedule == "cosine":
            callbacks.insert(0, CosineWithWarmup(cfg.learning_rate, self.max_epochs, cfg.warmup_epochs, steps))
        elif cfg.schedule == "plateau":
            callbacks.insert(0, ResumablePlateau(resume_state, monitor="loss" if final else "val_loss",
                                                 factor=cfg.plateau_factor, patience=cfg.plateau_patience))
        return model.fit(train, validation_data=val, epochs=epochs, initial_epoch=initial_epoch,
                         steps_per_epoch=steps, callbacks=callbacks, verbose=verbose, **kwargs)
