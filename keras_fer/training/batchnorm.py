"""Batch-norm statistics after training: how far a model's inference mode is from its training
mode, and recomputing the moving statistics from data.

A GAN's generator trains with batch statistics only (Keras' ``fit`` calls it with
``training=True``), so what the discriminator and the classifier learn from is its
training-mode output. Its moving averages are a running mean of per-batch statistics: they
miss the variance *between* batches, and lag weights that move fast. When they are off, the
inference-mode generator (the one exported and scored) draws other faces than the one that
trained; a classifier trained on it in two calls a step (IF-GAN's E, on real and on generated
pairs) averages both, where inference sees one. :func:`mode_gap` measures the first;
:func:`recalibrate_batchnorm` replaces the moving averages with the population statistics of
each layer's input, layer after layer in the order the graph runs them (each measured with
the layers before it already recalibrated).
"""

from __future__ import annotations

import keras
import numpy as np


def _batches(inputs, batch_size: int):
    arrays = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    n = len(arrays[0])
    for start in range(0, n, batch_size):
        chunk = [np.asarray(a[start:start + batch_size], np.float32) for a in arrays]
        yield chunk if isinstance(inputs, (list, tuple)) else chunk[0]


def _channel_moments(activations, axis: int):
    """Per-channel ``(count, mean, sum of squared deviations)`` of one batch's activations,
    reduced on the device: only two channel-length vectors come back to the host (a batch of
    256 ResNet-18 stem activations is 150 MB)."""
    axis = axis % len(activations.shape)
    reduce = tuple(i for i in range(len(activations.shape)) if i != axis)
    a = keras.ops.cast(activations, "float32")
    mean = keras.ops.mean(a, axis=reduce, keepdims=True)
    m2 = keras.ops.sum(keras.ops.square(a - mean), axis=reduce)
    count = int(np.prod([activations.shape[i] for i in reduce]))
    return count, np.asarray(mean, np.float64).reshape(-1), np.asarray(m2, np.float64)


def recalibrate_batchnorm(model: keras.Model, inputs, batch_size: int = 256) -> list[str]:
    """Sets every batch-norm layer's moving mean and variance to its input's statistics over
    ``inputs`` (the model's inputs, e.g. training faces), in inference mode.

    Each batch's per-channel mean and squared deviations are reduced on the device and the
    batches combined on the host in float64 (Chan et al.'s pairwise update), so the variance
    stays exact where a channel's mean is far larger than its spread.

    Only a functional model's own layers are recalibrated (a nested model's are skipped:
    call this on the nested model). Returns the names of the layers set.
    """
    done = []
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        probe = keras.Model(model.inputs if len(model.inputs) > 1 else model.inputs[0],
                            layer.input)
        axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
        count, mean, m2 = 0, 0.0, 0.0
        for batch in _batches(inputs, batch_size):
            n, batch_mean, batch_m2 = _channel_moments(probe(batch, training=False), axis)
            delta = batch_mean - mean
            total = count + n
            mean = mean + delta * (n / total)
            m2 = m2 + batch_m2 + delta * delta * (count * n / total)
            count = total
        if not count:
            raise ValueError("recalibrate_batchnorm needs at least one input row.")
        layer.moving_mean.assign(np.asarray(mean, np.float32))
        layer.moving_variance.assign(np.maximum(m2 / count, 0.0).astype(np.float32))
        done.append(layer.name)
    return done


def mode_gap(model: keras.Model, inputs, targets: np.ndarray | None = None,
             batch_size: int = 128) -> dict:
    """Mean absolute difference between the model's inference-mode and training-mode outputs
    (batch statistics of ``batch_size`` rows) on ``inputs``, and each mode's to ``targets``.

    The training-mode pass leaves the model as it was: every non-trainable variable (the
    moving averages it would update) is put back.

    Returns:
        ``{"inference_vs_training", "inference_to_target", "training_to_target"}`` (the last
        two ``None`` without ``targets``).
    """
    saved = [np.array(v.numpy()) for v in model.non_trainable_variables]
    try:
        inference, training = [], []
        for batch in _batches(inputs, batch_size):
            inference.append(np.asarray(model(batch, training=False), np.float32))
            training.append(np.asarray(model(batch, training=True), np.float32))
    finally:
        for variable, value in zip(model.non_trainable_variables, saved):
            variable.assign(value)
    inference, training = np.concatenate(inference), np.concatenate(training)
    out = {"inference_vs_training": float(np.abs(inference - training).mean()),
           "inference_to_target": None, "training_to_target": None}
    if targets is not None:
        targets = np.asarray(targets, np.float32)
        out["inference_to_target"] = float(np.abs(inference - targets).mean())
        out["training_to_target"] = float(np.abs(training - targets).mean())
    return out
