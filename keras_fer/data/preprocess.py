"""The one preprocessing contract shared by training, evaluation, export and serving.

Faces are stored as aligned grayscale ``ALIGNED_SIZE`` x ``ALIGNED_SIZE`` uint8 crops.
Models take ``float32 (B, INPUT_SIZE, INPUT_SIZE, 1)`` with values in ``[0, 1]``:
training uses random ``INPUT_SIZE`` crops of the aligned face (see ``augment``), test and
serving use the centre crop. :func:`to_model_input` (NumPy) and :func:`tf_to_model_input`
(TensorFlow graph, used inside the SavedModel signatures) implement the same arithmetic,
and a test holds them equal, so training/serving skew cannot creep in.
"""

from __future__ import annotations

import numpy as np

ALIGNED_SIZE = 60
INPUT_SIZE = 48


def resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """Resizes ``(N, H, W)`` uint8 faces to ``(N, size, size)`` with bilinear filtering."""
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"Expected (N, H, W) grayscale images. Received shape={images.shape}")
    if images.shape[1:] == (size, size):
        return images.astype(np.uint8, copy=False)
    from PIL import Image

    return np.stack(
        [np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images]
    ).astype(np.uint8)


def centre_crop(images: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Centre crop of ``(N, H, W[, C])`` arrays to ``size`` x ``size``."""
    h, w = images.shape[1:3]
    if h < size or w < size:
        raise ValueError(f"Cannot crop {size}x{size} from {h}x{w} images.")
    top, left = (h - size) // 2, (w - size) // 2
    return images[:, top : top + size, left : left + size]


# Pixel scale as a float32 multiplier everywhere (NumPy, TensorFlow, augmentation): inside a
# tf.function graph TensorFlow rewrites "x / 255" as "x * (1 / 255)", which differs from a
# NumPy division by up to one ulp; multiplying on every path makes training and serving
# inputs bit-identical.
INV_255 = np.float32(1.0 / 255.0)


def to_model_input(faces: np.ndarray, aligned_size: int = ALIGNED_SIZE) -> np.ndarray:
    """uint8 faces ``(N, H, W)`` -> float32 ``(N, 48, 48, 1)`` in [0, 1] (test-time path)."""
    faces = resize_uint8(faces, aligned_size)
    x = centre_crop(faces, INPUT_SIZE).astype(np.float32) * INV_255
    return x[..., None]


def tf_to_model_input(faces, aligned_size: int = ALIGNED_SIZE):
    """TensorFlow version of :func:`to_model_input` for ``(B, H, W, 1)`` uint8/float faces.

    Resizes with bilinear filtering (no antialias, as PIL does for upscaling; for the
    common case of already-aligned 60x60 crops both paths are the identity), then
    centre-crops and scales to [0, 1].
    """
    import tensorflow as tf

    faces = tf.convert_to_tensor(faces)
    x = tf.cast(faces, tf.float32)
    shape = tf.shape(x)
    x = tf.cond(
        tf.logical_and(tf.equal(shape[1], aligned_size), tf.equal(shape[2], aligned_size)),
        lambda: x,
        lambda: tf.round(tf.image.resize(x, (aligned_size, aligned_size), antialias=True)),
    )
    offset = (aligned_size - INPUT_SIZE) // 2
    x = x[:, offset : offset + INPUT_SIZE, offset : offset + INPUT_SIZE, :]
    return x * tf.constant(INV_255)
