"""Island loss (Cai et al., FG 2018): centre loss plus a push between class centres.

For features ``x_i`` with labels ``y_i`` and class centres ``c_1..c_N``::

    L_IL = 1/2 * sum_i ||x_i - c_{y_i}||^2 / B  +  alpha * sum_{j != k} (cos(c_j, c_k) + 1)

The first term (the centre loss of Wen et al. 2016) pulls features to their class centre;
the second pushes centres apart in angle. The pair sum runs over ordered pairs, as in the
paper's Eq. 5, so every unordered pair counts twice.

Centres are non-trainable state updated by a moving rule after every training batch::

    c_j <- c_j - rate * (sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)  +  alpha * dP/dc_j)

where ``n_j`` is the number of batch samples of class ``j`` (Wen's damped centre update) and
``dP/dc_j = 2 * sum_{k != j} (c_k / (|c_j| |c_k|) - cos(c_j, c_k) * c_j / |c_j|^2)`` is the
exact gradient of the pair term, so the push acts on the centres even though they receive
no optimizer gradient. Features receive the gradient of the centre term through ``x_i``.
"""

from __future__ import annotations

import keras
from keras import ops

# Guards the cosine against zero-norm centres; zero centres get cos = 0 with this floor.
_NORM_FLOOR = 1e-6


def _one_hot(labels, num_classes: int, dtype):
    labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
    return ops.one_hot(labels, num_classes, dtype=dtype)


def _cosine_matrix(centres):
    norms = ops.maximum(ops.sqrt(ops.sum(ops.square(centres), axis=-1)), _NORM_FLOOR)
    outer = ops.expand_dims(norms, 1) * ops.expand_dims(norms, 0)
    return ops.matmul(centres, ops.transpose(centres)) / outer, norms, outer


def island_loss(features, labels, centres, alpha: float = 0.03):
    """Island loss value.

    Args:
        features: ``(B, D)`` float features.
        labels: ``(B,)`` or ``(B, 1)`` int class indices in ``[0, N)``.
        centres: ``(N, D)`` class centres.
        alpha: weight of the centre-separation term.

    Returns:
        Scalar loss.
    """
    num_classes = centres.shape[0]
    one_hot = _one_hot(labels, num_classes, features.dtype)
    assigned = ops.matmul(one_hot, centres)
    batch = ops.cast(ops.shape(features)[0], features.dtype)
    centre_term = 0.5 * ops.sum(ops.square(features - assigned)) / batch
    cosine, _, _ = _cosine_matrix(centres)
    off_diagonal = 1.0 - ops.eye(num_classes, dtype=cosine.dtype)
    pair_term = ops.sum((cosine + 1.0) * off_diagonal)
    return centre_term + alpha * pair_term


def island_centre_update(features, labels, centres, alpha: float = 0.03, rate: float = 0.5):
    """New centres after one moving-rule step (see the module docstring).

    Args:
        features: ``(B, D)`` features (treated as constants).
        labels: ``(B,)`` or ``(B, 1)`` int class indices.
        centres: ``(N, D)`` current centres.
        alpha: weight of the centre-separation term.
        rate: step size of the update (Wen et al.'s centre learning rate).

    Returns:
        ``(N, D)`` updated centres.
    """
    features = ops.stop_gradient(features)
    num_classes = centres.shape[0]
    one_hot = _one_hot(labels, num_classes, features.dtype)
    counts = ops.sum(one_hot, axis=0)
    pulled = ops.expand_dims(counts, 1) * centres - ops.matmul(ops.transpose(one_hot), features)
    centre_step = pulled / (1.0 + ops.expand_dims(counts, 1))
    cosine, norms, outer = _cosine_matrix(centres)
    off_diagonal = 1.0 - ops.eye(num_classes, dtype=cosine.dtype)
    towards_others = ops.matmul(off_diagonal / outer, centres)
    along_self = ops.sum(cosine * off_diagonal, axis=1, keepdims=True) * centres
    pair_grad = 2.0 * (towards_others - along_self / ops.expand_dims(ops.square(norms), 1))
    return centres - rate * (centre_step + alpha * pair_grad)


@keras.saving.register_keras_serializable(package="keras_fer")
class IslandLoss(keras.layers.Layer):
    """Island loss as a layer that owns the class centres as non-trainable weights.

    ``loss = layer(features, labels, training=...)`` returns the scalar loss; with
    ``training=True`` it then moves the centres with :func:`island_centre_update`. Being a
    layer, the centres are saved with the model and travel through the JAX stateless
    trainer like batch-norm statistics.

    Args:
        num_classes: number of expression classes ``N``.
        alpha: weight of the centre-separation term (paper: 0.03).
        centre_rate: step size of the centre moving rule.
        centre_initializer: initializer of the ``(N, D)`` centres. Non-zero by default: the
            cosine push is undefined for zero centres.
        **kwargs: base layer arguments.
    """

    def __init__(
        self,
        num_classes: int,
        alpha: float = 0.03,
        centre_rate: float = 0.5,
        centre_initializer="random_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_classes) < 2:
            raise ValueError(
                f"Island loss needs at least 2 classes. Received: num_classes={num_classes}"
            )
        if not 0.0 < float(centre_rate) <= 1.0:
            raise ValueError(f"centre_rate must be in (0, 1]. Received: centre_rate={centre_rate}")
        self.num_classes = int(num_classes)
        self.alpha = float(alpha)
        self.centre_rate = float(centre_rate)
        self.centre_initializer = keras.initializers.get(centre_initializer)

    def build(self, features_shape, labels_shape=None):
        if len(features_shape) != 2 or features_shape[-1] is None:
            raise ValueError(
                f"IslandLoss expects (B, D) features. Received: features_shape={features_shape}"
            )
        self.centres = self.add_weight(
            shape=(self.num_classes, int(features_shape[-1])),
            initializer=self.centre_initializer,
            trainable=False,
            name="centres",
        )

    def call(self, features, labels, training=False):
        loss = island_loss(features, labels, self.centres, self.alpha)
        if training:
            self.centres.assign(
                island_centre_update(features, labels, self.centres, self.alpha, self.centre_rate)
            )
        return loss

    def compute_output_shape(self, features_shape, labels_shape=None):
        return ()

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "alpha": self.alpha,
                "centre_rate": self.centre_rate,
                "centre_initializer": keras.initializers.serialize(self.centre_initializer),
            }
        )
        return config
