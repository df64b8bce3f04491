"""Losses of IDFERM's hard negative generation (HNG) network (paper Sec. 3), and its metric.

All images are float ``(B, H, W, 1)`` in ``[0, 1]``. The paper's two auxiliary networks are
not available offline (VGG-Face for the perceptual loss, Light-CNN for the identity loss), so
the project pretrains stand-ins on its own data and passes them in as frozen ``keras.Model``s:

- the *perceptual* model maps an image to one or more feature maps of an expression backbone
  (the paper used VGG-Face conv5);
- the *identity* model maps an image to the activations of the last two layers of a face
  identity network (paper Eq. 6); its last output doubles as the identity embedding for
  :func:`identity_preservation_rate`.

:func:`feature_extractor` builds such a model from a trained network and layer names.
Losses are means rather than the paper's sums, so their scale does not depend on image or
feature size; the trade-off weights absorb the difference. The adversarial loss is the
standard non-saturating GAN loss and, like the pixel L1 loss (paper Eq. 7, taken here as a
mean), lives with the other GAN losses in ``losses.gan``.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
from keras import ops

# 4-neighbour Laplacian; it is mirror-symmetric, so Laplacian(mirror(x)) == mirror(Laplacian(x)).
_LAPLACIAN = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype="float32")


def _as_list(outputs) -> list:
    if isinstance(outputs, dict):
        return [outputs[k] for k in sorted(outputs)]
    if isinstance(outputs, (list, tuple)):
        return list(outputs)
    return [outputs]


def feature_extractor(
    model: keras.Model, layer_names: Sequence[str], name: str | None = None
) -> keras.Model:
    """Frozen model that returns the outputs of ``layer_names`` of a functional ``model``.

    Args:
        model: A built functional model (e.g. the pretrained expression or identity net).
        layer_names: Layers whose outputs are returned, in this order.
        name: Name of the new model (default ``f"{model.name}_features"``).

    Returns:
        A non-trainable ``keras.Model`` sharing ``model``'s layers and weights.
    """
    if not layer_names:
        raise ValueError(f"`layer_names` must name at least one layer. Received: {layer_names!r}")
    known = [layer.name for layer in model.layers]
    missing = [n for n in layer_names if n not in known]
    if missing:
        raise ValueError(f"Layers {missing} are not in model '{model.name}'. It has: {known}")
    outputs = [model.get_layer(n).output for n in layer_names]
    extractor = keras.Model(
        model.inputs,
        outputs if len(outputs) > 1 else outputs[0],
        name=name or f"{model.name}_features",
    )
    extractor.trainable = False
    return extractor


def perceptual_loss(feature_model: keras.Model, generated, target):
    """Feature-space perceptual loss (paper Eq. 1): mean squared feature difference.

    Args:
        feature_model: Frozen model returning one or more feature maps.
        generated: Generated neutral faces.
        target: Real neutral faces of the same subjects.

    Returns:
        Scalar: the mean over outputs of ``mean((F(generated) - F(target))^2)``.
    """
    pairs = zip(
        _as_list(feature_model(generated, training=False)),
        _as_list(feature_model(target, training=False)),
    )
    terms = [ops.mean(ops.square(a - b)) for a, b in pairs]
    return ops.mean(ops.stack(terms))


def identity_loss(identity_model: keras.Model, generated, inputs):
    """Identity-preserving loss (paper Eq. 6): L1 between identity-net activations.

    Args:
        identity_model: Frozen model returning the last two layers' activations (any number
            of outputs is accepted).
        generated: Generated neutral faces.
        inputs: The expressive input faces they were generated from.

    Returns:
        Scalar: the mean over outputs of ``mean(|A(generated) - A(inputs)|)``.
    """
    pairs = zip(
        _as_list(identity_model(generated, training=False)),
        _as_list(identity_model(inputs, training=False)),
    )
    terms = [ops.mean(ops.abs(a - b)) for a, b in pairs]
    return ops.mean(ops.stack(terms))


def laplacian(images):
    """4-neighbour Laplacian of ``(B, H, W, 1)`` images (zero padding, same size)."""
    kernel = ops.convert_to_tensor(_LAPLACIAN.reshape(3, 3, 1, 1), dtype=images.dtype)
    return ops.conv(images, kernel, strides=1, padding="same")


def symmetry_loss(images, use_laplacian: bool = False):
    """Symmetry loss (paper Eq. 2): L1 between each image and its horizontal mirror.

    The paper sums ``|x[n, m] - x[W - n + 1, m]|`` over the left half of the columns and
    divides by ``H * W``, which is half the mean over all pixels of ``|x - mirror(x)|``.

    Args:
        images: ``(B, H, W, 1)`` generated faces.
        use_laplacian: Compare in Laplacian space, which tolerates the smooth illumination
            asymmetry of real faces (paper Sec. 3.2).

    Returns:
        Scalar loss.
    """
    if use_laplacian:
        images = laplacian(images)
    return 0.5 * ops.mean(ops.abs(images - ops.flip(images, axis=2)))


def _last_output(model: keras.Model, images) -> np.ndarray:
    outputs = _as_list(model.predict(images, verbose=0))
    return np.asarray(outputs[-1], dtype="float64").reshape(len(images), -1)


def identity_preservation_rate(
    identity_model: keras.Model, inputs: np.ndarray, generated: np.ndarray, threshold: float
) -> float:
    """Fraction of generated faces whose identity embedding stays within ``threshold``.

    The embedding is the identity model's (last) output, flattened; the distance is the
    cosine distance ``1 - cos(e(input), e(generated))``, and a pair counts as the same person
    when the distance is ``<= threshold`` (the verification threshold of the identity net).

    Args:
        identity_model: Identity network (or extractor; its last output is used).
        inputs: ``(N, H, W, 1)`` input faces.
        generated: ``(N, H, W, 1)`` faces generated from them.
        threshold: Verification threshold on the cosine distance.

    Returns:
        The rate in ``[0, 1]``.
    """
    if len(inputs) != len(generated) or len(inputs) == 0:
        raise ValueError(
            "`inputs` and `generated` must be non-empty and of equal length. "
            f"Received: {len(inputs)} and {len(generated)}"
        )
    a = _last_output(identity_model, inputs)
    b = _last_output(identity_model, generated)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)
    return float(np.mean(1.0 - cosine <= threshold))
