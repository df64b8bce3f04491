"""IDEnNet's self-constrained identity loss (Li et al., 2018, Eq. 4).

    L_id = -sum_j alpha * (1 - p_j)^gamma * y_j * log(p_j)

The multi-class focal loss: the factor ``alpha * (1 - p_j)^gamma`` shrinks as the identity
head grows confident (with gamma = 15 it is ~3e-6 at p = 0.5), so the auxiliary identity task
keeps a small but non-zero voice for the whole of training instead of over-training.

``y_pred`` is softmax probabilities by default (the model's identity output), clipped to
``[eps, 1 - eps]`` before the log; with ``from_logits=True`` the log-probabilities come from
``log_softmax`` and ``1 - p`` from ``-expm1(log p)``, which is the stabler of the two.

Labels are sparse class indices ``(B,)`` / ``(B, 1)`` or one-hot (or soft) rows ``(B, K)``.
A sparse label below 0 (e.g. -1) and an all-zero one-hot row mean "no identity label": that
sample's loss is 0 (see :func:`identity_label_mask` to average over labelled samples only).

With one-hot labels this is exactly ``keras.losses.CategoricalFocalCrossentropy(alpha, gamma)``
(a test holds them equal); this module adds sparse labels and the missing-label convention.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

_EPSILON = 1e-7


def _one_hot_labels(y_true: Any, y_pred: Any) -> Any:
    """Sparse or one-hot labels -> float one-hot rows; missing sparse labels (< 0) -> zeros."""
    y_true = ops.convert_to_tensor(y_true)
    num_classes = y_pred.shape[-1]
    sparse = len(y_true.shape) < len(y_pred.shape) or (
        len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1 and num_classes != 1
    )
    if not sparse:
        return ops.cast(y_true, y_pred.dtype)
    if len(y_true.shape) == len(y_pred.shape):
        y_true = ops.squeeze(y_true, axis=-1)
    labels = ops.cast(y_true, "int32")
    present = ops.cast(labels >= 0, y_pred.dtype)
    one_hot = ops.one_hot(ops.maximum(labels, 0), num_classes, dtype=y_pred.dtype)
    return one_hot * ops.expand_dims(present, -1)


def identity_label_mask(y_true: Any, y_pred: Any) -> Any:
    """``(B,)`` float mask: 1 where a sample has an identity label, 0 where it has none."""
    y_pred = ops.convert_to_tensor(y_pred)
    return ops.cast(ops.sum(_one_hot_labels(y_true, y_pred), axis=-1) > 0, y_pred.dtype)


def self_constrained_focal(
    y_true: Any,
    y_pred: Any,
    alpha: float = 0.1,
    gamma: float = 15.0,
    from_logits: bool = False,
) -> Any:
    """Per-sample self-constrained focal loss.

    Args:
        y_true: Sparse ``(B,)``/``(B, 1)`` class indices (< 0: no label) or ``(B, K)`` rows.
        y_pred: ``(B, K)`` probabilities (or logits when ``from_logits``).
        alpha: Constant weight, ``alpha >= 0``.
        gamma: Focusing exponent, ``gamma >= 0``.
        from_logits: Whether ``y_pred`` is logits.

    Returns:
        ``(B,)`` losses; 0 for samples without a label.
    """
    if alpha < 0 or gamma < 0:
        raise ValueError(f"alpha and gamma must be >= 0. Received: alpha={alpha}, gamma={gamma}")
    y_pred = ops.convert_to_tensor(y_pred)
    if not keras.backend.is_float_dtype(y_pred.dtype):
        y_pred = ops.cast(y_pred, "float32")
    y_true = _one_hot_labels(y_true, y_pred)
    if from_logits:
        log_p = ops.log_softmax(y_pred, axis=-1)
        one_minus_p = -ops.expm1(log_p)
    else:
        p = ops.clip(y_pred, _EPSILON, 1.0 - _EPSILON)
        log_p = ops.log(p)
        one_minus_p = 1.0 - p
    weight = alpha * ops.power(one_minus_p, gamma)
    return -ops.sum(weight * y_true * log_p, axis=-1)


@keras.saving.register_keras_serializable(package="keras_fer")
class SelfConstrainedFocalLoss(keras.losses.Loss):
    """``keras.losses.Loss`` wrapper of :func:`self_constrained_focal`.

    Args:
        alpha: Constant weight (paper: 0.1).
        gamma: Focusing exponent (paper: 15).
        from_logits: Whether predictions are logits rather than probabilities.
        reduction: Keras loss reduction.
        name: Loss name.
        dtype: Loss dtype.
    """

    def __init__(
        self,
        alpha: float = 0.1,
        gamma: float = 15.0,
        from_logits: bool = False,
        reduction: str = "sum_over_batch_size",
        name: str = "self_constrained_focal",
        dtype: str | None = None,
    ) -> None:
        if alpha < 0 or gamma < 0:
            raise ValueError(
                f"alpha and gamma must be >= 0. Received: alpha={alpha}, gamma={gamma}"
            )
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.alpha = alpha
        self.gamma = gamma
        self.from_logits = from_logits

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return self_constrained_focal(
            y_true, y_pred, alpha=self.alpha, gamma=self.gamma, from_logits=self.from_logits
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"alpha": self.alpha, "gamma": self.gamma, "from_logits": self.from_logits})
        return config
