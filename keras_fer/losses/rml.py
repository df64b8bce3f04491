"""Radial metric learning (RML) loss of IDFERM (Liu et al., Pattern Recognition 2019, Sec. 4).

For a query embedding ``f_i`` of class ``y_i`` with class centre ``C_{y_i}`` and the embedding
``f*_i`` of its generated neutral reference, the loss is (paper Eq. 16, read as the paper
intends: pull the query inside its class boundary, push the reference outside)::

    L = 1/K sum_i [ max(0, 1 + H(f_i, C_{y_i})) + max(0, 1 - H(f*_i, C_{y_i})) ]

``H`` merges the paper's Mahalanobis distance ``D`` and its learned reference distance
(threshold) ``S`` into one quadratic form. We use the special case that the paper's
factorisation reduces to when the quadratic part is a Mahalanobis metric ``M = W^T W``::

    H(f, C) = (f - C)^T W^T W (f - C) - b = ||W (f - C)||^2 - b

``W`` is a bias-free linear (Dense) layer and ``b`` a learned scalar, so the query term is zero
once ``||W (f - C)||^2 <= b - 1`` and the reference term once ``||W (f* - C)||^2 >= b + 1``:
``b`` is the learned squared radius and the margin between the two boundaries is 2 (the
paper's constant, rescaled to 1 per hinge). Only ``2K`` distance comparisons per batch.

Class centres are computed per batch (paper Algorithm 2, step 3: "calculate the cluster
centers for each class" inside the training loop) as the mean query embedding of each class
present in the batch; the fine-tuning batches hold 2 images per class, so every centre is
defined. Gradients flow through the centres, so the reference term also moves the queries
away from their own generated neutral faces, which is the identity-disentangling push.
"""

from __future__ import annotations

import keras
from keras import ops


def batch_class_centres(embeddings, labels, num_classes: int):
    """Per-class mean of ``embeddings`` over the batch, gathered back per sample.

    Args:
        embeddings: ``(B, D)`` query embeddings.
        labels: ``(B,)`` integer class indices in ``[0, num_classes)``.
        num_classes: Number of classes ``K``.

    Returns:
        ``(B, D)`` tensor whose row ``i`` is the mean embedding of the batch samples sharing
        ``labels[i]`` (classes absent from the batch never get gathered).
    """
    if num_classes < 1:
        raise ValueError(f"`num_classes` must be >= 1. Received: num_classes={num_classes}")
    one_hot = ops.one_hot(ops.cast(ops.reshape(labels, (-1,)), "int32"), num_classes)
    one_hot = ops.cast(one_hot, embeddings.dtype)
    counts = ops.maximum(ops.sum(one_hot, axis=0), 1.0)
    centres = ops.matmul(ops.transpose(one_hot), embeddings) / counts[:, None]
    return ops.matmul(one_hot, centres)


def quadratic_form(embeddings, centres, kernel, bias):
    """``H(f, C) = ||(f - C) W||^2 - b`` per row.

    Args:
        embeddings: ``(B, D)`` embeddings ``f``.
        centres: ``(B, D)`` centre of each row's class.
        kernel: ``(D, U)`` matrix ``W^T`` (Keras Dense layout).
        bias: Scalar ``b``.

    Returns:
        ``(B,)`` values of ``H``.
    """
    projected = ops.matmul(embeddings - centres, kernel)
    return ops.sum(ops.square(projected), axis=-1) - bias


def radial_metric_loss(h_query, h_reference):
    """Mean over the batch of ``max(0, 1 + H(f, C)) + max(0, 1 - H(f*, C))``.

    Args:
        h_query: ``(B,)`` values ``H(f_i, C_{y_i})`` of the queries.
        h_reference: ``(B,)`` values ``H(f*_i, C_{y_i})`` of their generated references.

    Returns:
        Scalar loss.
    """
    return ops.mean(ops.relu(1.0 + h_query) + ops.relu(1.0 - h_reference))


@keras.saving.register_keras_serializable(package="keras_fer")
class RadialMetric(keras.layers.Layer):
    """Learned quadratic form ``H(f, C) = ||W (f - C)||^2 - b`` (the RML's trainable part).

    The layer lives in the training model only; the inference model (conv groups + EC
    branch) does not need it.

    Args:
        units: Rows of ``W`` (rank of the learned metric ``M = W^T W``).
        bias_initializer: Initial squared radius ``b``.
        **kwargs: Standard layer arguments (``name``, ``dtype``).
    """

    def __init__(self, units: int, bias_initializer: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(f"`units` must be a positive int. Received: units={units!r}")
        self.units = units
        self.bias_initializer = float(bias_initializer)

    def build(self, embeddings_shape, centres_shape=None):
        dim = embeddings_shape[-1]
        self.kernel = self.add_weight(
            shape=(dim, self.units),
            initializer=keras.initializers.GlorotUniform(),
            name="kernel",
        )
        self.bias = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.bias_initializer),
            name="bias",
        )

    def call(self, embeddings, centres):
        return quadratic_form(embeddings, centres, self.kernel, self.bias)

    def compute_output_shape(self, embeddings_shape, centres_shape=None):
        return (embeddings_shape[0],)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"units": self.units, "bias_initializer": self.bias_initializer})
        return config
