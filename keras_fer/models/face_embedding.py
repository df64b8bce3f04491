"""dlib's face network on the project's faces, and the ``identity`` switch of every method.

The methods see gray faces ``(B, H, W, 1)`` in ``[0, 1]`` (48x48 crops, 64x64 HNG faces);
dlib's ResNet (:func:`keras_fer.models.face_identity.dlib_resnet`) wants ``(B, 150, 150, 3)``
RGB in 0..255. :class:`FaceNetInput` does the conversion inside a graph (x255, bilinear
resize to 150, gray repeated as R, G and B: what :func:`~keras_fer.models.face_identity.
to_face_input` does in NumPy), so the face network can sit inside a trained or exported
model. :func:`face_embedding_model` and :func:`face_feature_model` wrap it;
``face_embedding_model(flip_average=True)`` is the test-time flip augmentation of face
verification (the L2-normalised mean of the embeddings of a face and of its mirror,
:class:`HorizontalMirror`), off by default so the methods' identity losses are unchanged.

``identity`` in a method's ``--extra`` settings picks the identity network:

- ``face_resnet``: dlib's face ResNet (about 3 million faces of about 7,500 identities): the
  default wherever the paper used a network trained on a large face corpus;
- ``deepid``: the project's DeepID, trained on the fold's subjects plus ORL (TFE-JL, IDFERM);
- ``densenet``: IDEnNet's identity stream, trained likewise.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from keras_fer.models.face_identity import EMBEDDING_DIM, INPUT_SIZE, dlib_resnet

FACE_RESNET = "face_resnet"
DEEPID = "deepid"
DENSENET = "densenet"
IDENTITY_NETWORKS = (FACE_RESNET, DEEPID, DENSENET)
FACE_PREFIX = "dlib_resnet"
# dlib_resnet's layers whose outputs the IDFERM losses use: the last two layers (identity
# loss, paper Eq. 6: 256-d pooled feature and 128-d embedding) and two late conv stages
# (perceptual loss: the paper's VGG-Face conv5 features).
LAST_TWO_LAYERS = (f"{FACE_PREFIX}_avg_pool", f"{FACE_PREFIX}_embedding")
PERCEPTUAL_LAYERS = (f"{FACE_PREFIX}_block10_relu2", f"{FACE_PREFIX}_block13_relu2")


def check_identity(value: str, allowed: Sequence[str], method: str) -> str:
    """``value`` if it is one of ``allowed`` identity networks, else a ``ValueError``."""
    if value not in allowed:
        raise ValueError(
            f"{method}: extra 'identity' must be one of {tuple(allowed)}. Received: "
            f"identity={value!r}"
        )
    return value


def check_extra(extra: dict, known: Sequence[str], method: str) -> dict:
    """``extra`` if all of its keys are ``known``; an unknown key is an error, not ignored."""
    unknown = sorted(set(extra) - set(known))
    if unknown:
        raise ValueError(
            f"Unknown --extra key(s) {unknown} for {method}; valid keys: {sorted(known)}"
        )
    return extra


@keras.saving.register_keras_serializable(package="keras_fer")
class FaceNetInput(layers.Layer):
    """Gray ``(B, H, W, 1)`` faces in ``[0, 1]`` -> dlib's input ``(B, 150, 150, 3)`` in 0..255.

    Args:
        size: Output side (dlib's 150).
        **kwargs: ``Layer`` arguments.
    """

    def __init__(self, size: int = INPUT_SIZE, **kwargs):
        super().__init__(**kwargs)
        if size < 1:
            raise ValueError(f"`size` must be positive. Received: size={size}")
        self.size = int(size)

    def call(self, inputs):
        x = keras.ops.image.resize(inputs * 255.0, (self.size, self.size),
                                   interpolation="bilinear")
        return keras.ops.repeat(x, 3, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, 3)

    def get_config(self) -> dict:
        return {**super().get_config(), "size": self.size}


@keras.saving.register_keras_serializable(package="keras_fer")
class HorizontalMirror(layers.Layer):
    """``(B, H, W, C)`` images -> their left-right mirror (the width axis reversed)."""

    def call(self, inputs):
        return keras.ops.flip(inputs, axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape


def _face_outputs(layer_names: Sequence[str] | None, weights: str | None) -> keras.Model:
    net = dlib_resnet(weights=weights)
    if not layer_names:
        return net
    outputs = [net.get_layer(n).output for n in layer_names]
    return keras.Model(net.inputs, outputs if len(outputs) > 1 else outputs[0], name=net.name)


def face_embedding_model(
    input_shape: tuple = (48, 48, 1),
    weights: str | None = "dlib",
    name: str = "face_embedding",
    flip_average: bool = False,
) -> keras.Model:
    """``image (B, H, W, 1)`` in ``[0, 1]`` -> dlib's raw 128-d embedding.

    The dlib network is a nested model named ``dlib_resnet`` (its variables' paths start with
    ``dlib_resnet_``); ``input_shape`` may have ``None`` sides (any face size).

    ``flip_average=True``: the L2-normalised mean of the raw embeddings of the face and of
    its horizontal mirror (the same dlib network sees both), so a face and its mirror get the
    same unit-norm embedding. The default (``False``) is the raw embedding of the face alone.
    """
    image = keras.Input(shape=input_shape, name="image")
    net = _face_outputs(None, weights)
    embedding = net(FaceNetInput(name="face_input")(image))
    if flip_average:
        mirror = HorizontalMirror(name="mirror")(image)
        mirrored = net(FaceNetInput(name="mirror_face_input")(mirror))
        mean = layers.Average(name="flip_average")([embedding, mirrored])
        embedding = layers.UnitNormalization(name="unit_norm")(mean)
    return keras.Model(image, embedding, name=name)


def face_feature_model(
    layer_names: Sequence[str] = LAST_TWO_LAYERS,
    input_shape: tuple = (None, None, 1),
    weights: str | None = "dlib",
    name: str = "face_features",
) -> keras.Model:
    """Frozen ``image (B, H, W, 1)`` in ``[0, 1]`` -> the outputs of dlib layers ``layer_names``.

    The default (the pooled 256-d feature and the 128-d embedding) is IDFERM's
    identity-preserving loss input; the last output is the embedding the identity rate uses.
    """
    image = keras.Input(shape=input_shape, name="image")
    x = FaceNetInput(name="face_input")(image)
    outputs = _face_outputs(tuple(layer_names), weights)(x)
    model = keras.Model(image, outputs, name=name)
    model.trainable = False
    return model


__all__ = [
    "DEEPID", "DENSENET", "EMBEDDING_DIM", "FACE_PREFIX", "FACE_RESNET", "FaceNetInput",
    "HorizontalMirror",
    "IDENTITY_NETWORKS", "LAST_TWO_LAYERS", "PERCEPTUAL_LAYERS", "check_extra",
    "check_identity", "face_embedding_model", "face_feature_model",
]
