"""Train-step model of the expression recipe (issue 20): :class:`RecipeModel`.

:class:`RecipeModel` wraps an inference model of :mod:`keras_fer.models.expression` for
``fit``. Batches are ``{"faces": uint8 (B, 60, 60, 1), "targets": (B, K)}``; ``call`` does
the augmentation on the device (:mod:`keras_fer.data.device_augment`), runs the network's
logits (and a frozen teacher's, for distillation) and ``compute_loss`` takes the soft-target
cross-entropy (plus the distillation term, :mod:`keras_fer.losses.distillation`). Overriding
``call`` and ``compute_loss`` only, it trains with every backend's own ``train_step``. Its
settings are a :class:`keras_fer.training.recipe.Recipe`.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_fer.data import device_augment
from keras_fer.data.preprocess import INPUT_SIZE, INV_255
from keras_fer.losses.distillation import distillation_loss, soft_cross_entropy


def logits_model(model: keras.Model) -> keras.Model:
    """``image -> logits`` of a model with a ``logits`` layer, else ``image -> log(p)`` (a
    softmax model's logits up to a constant per image)."""
    names = {layer.name for layer in model.layers}
    if "logits" in names:
        return keras.Model(model.inputs, model.get_layer("logits").output)
    return keras.Model(model.inputs, ops.log(ops.clip(model.outputs[0], 1e-12, 1.0)))


class RecipeModel(keras.Model):
    """Training wrapper: on-device augmentation, soft-target CE, optional distillation.

    Args:
        net: the inference model (``image -> probabilities``, with a ``logits`` layer).
        recipe: the :class:`keras_fer.training.recipe.Recipe`.
        teacher: frozen inference model for distillation, or ``None``.
        seed: seeds the augmentation.
    """

    def __init__(self, net: keras.Model, recipe, teacher: keras.Model | None = None,
                 seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.student = logits_model(net)
        self.recipe = recipe
        self.teacher = None
        if teacher is not None:
            teacher.trainable = False
            self.teacher = logits_model(teacher)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def augment(self, faces, targets):
        """uint8/float 0..255 aligned faces ``(B, 60, 60, 1)`` -> augmented model input and
        targets."""
        r, seed = self.recipe, self.seed_generator
        x = ops.cast(faces, "float32") * INV_255
        x = device_augment.random_geometry(x, seed, crop=INPUT_SIZE, max_shift=r.max_shift,
                                           flip=r.flip, rotation_degrees=r.rotation_degrees)
        x, targets = device_augment.random_mix(x, targets, seed, mixup_alpha=r.mixup_alpha,
                                               cutmix_alpha=r.cutmix_alpha, prob=r.mix_prob)
        return device_augment.random_erasing(x, seed, prob=r.erasing_prob), targets

    def call(self, inputs, training=False):
        targets = ops.cast(inputs["targets"], "float32")
        if training:
            x, targets = self.augment(inputs["faces"], targets)
        else:
            x = ops.cast(inputs["faces"], "float32") * INV_255
            top = (x.shape[1] - INPUT_SIZE) // 2
            x = x[:, top:top + INPUT_SIZE, top:top + INPUT_SIZE, :]
        out = {"logits": ops.cast(self.student(x, training=training), "float32"),
               "targets": targets}
        if self.teacher is not None:
            out["teacher"] = ops.cast(self.teacher(x, training=False), "float32")
        return out

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self.teacher is not None:
            loss = distillation_loss(y_pred["targets"], y_pred["logits"], y_pred["teacher"],
                                     self.recipe.kd_weight, self.recipe.kd_temperature)
        else:
            loss = soft_cross_entropy(y_pred["targets"], y_pred["logits"])
        if self.losses:
            loss = loss + ops.sum(self.losses)
        return loss
