"""Tests for keras_fer.data.preprocess: the NumPy and TensorFlow paths agree, shapes, errors."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from keras_fer.data import preprocess


def _faces(n, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w), dtype=np.uint8)


def _smooth_faces(n, h, w, seed=0):
    """Random but spatially smooth images: real faces are smooth, pure noise is not."""
    steps = np.random.default_rng(seed).integers(-3, 4, size=(n, h, w))
    values = 128 + np.cumsum(steps, axis=2) + np.cumsum(steps, axis=1) // 2
    return np.clip(values, 0, 255).astype(np.uint8)


def test_numpy_and_tensorflow_paths_are_identical_on_aligned_faces():
    faces = _faces(5, 60, 60)
    expected = faces[:, 6:54, 6:54, None].astype(np.float32) * np.float32(1 / 255)
    np.testing.assert_array_equal(preprocess.to_model_input(faces), expected)
    tf_out = np.asarray(preprocess.tf_to_model_input(faces[..., None]))
    np.testing.assert_array_equal(tf_out, expected)
    tf_float = np.asarray(preprocess.tf_to_model_input(faces[..., None].astype(np.float32)))
    np.testing.assert_array_equal(tf_float, expected)


@pytest.mark.parametrize("shape", [(48, 48), (64, 64), (112, 92), (40, 72)])
def test_numpy_and_tensorflow_paths_are_close_after_resizing(shape):
    faces = _smooth_faces(4, *shape)
    a = preprocess.to_model_input(faces)
    b = np.asarray(preprocess.tf_to_model_input(faces[..., None]))
    assert a.shape == b.shape == (4, 48, 48, 1)
    assert a.dtype == b.dtype == np.float32
    diff = np.abs(a - b) * 255.0
    # Both round to whole gray levels; PIL and TF bilinear kernels differ by at most one.
    assert diff.max() <= 1.0 + 1e-4 and diff.mean() < 0.5, (diff.max(), diff.mean())


def test_paths_agree_on_real_ckplus48_faces(ckplus48_dir):
    files = sorted(Path(ckplus48_dir).glob("happy/*.png"))[:16]
    faces = np.stack([np.asarray(Image.open(f).convert("L")) for f in files])
    assert faces.shape == (16, 48, 48)
    a = preprocess.to_model_input(faces)
    b = np.asarray(preprocess.tf_to_model_input(faces[..., None]))
    assert np.abs(a - b).max() * 255.0 <= 1.0 + 1e-4
    assert 0.0 <= a.min() and a.max() <= 1.0


def test_resize_and_centre_crop_by_hand():
    faces = np.arange(2 * 6 * 6, dtype=np.uint8).reshape(2, 6, 6)
    np.testing.assert_array_equal(preprocess.centre_crop(faces, 2), faces[:, 2:4, 2:4])
    np.testing.assert_array_equal(
        preprocess.centre_crop(faces[..., None], 4), faces[:, 1:5, 1:5, None]
    )
    assert preprocess.resize_uint8(faces, 6) is faces
    flat = np.full((3, 10, 20), 77, np.uint8)
    resized = preprocess.resize_uint8(flat, 8)
    assert resized.shape == (3, 8, 8) and resized.dtype == np.uint8
    assert np.all(resized == 77)


def test_errors():
    with pytest.raises(ValueError, match=r"shape=\(60, 60\)"):
        preprocess.to_model_input(np.zeros((60, 60), np.uint8))
    with pytest.raises(ValueError, match="Cannot crop 48x48 from 40x40"):
        preprocess.centre_crop(np.zeros((1, 40, 40), np.uint8))
    with pytest.raises(ValueError, match="Cannot crop"):
        preprocess.to_model_input(np.zeros((1, 60, 60), np.uint8), aligned_size=40)
