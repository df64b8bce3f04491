"""Tests for keras_fer.data.augment on the TensorFlow backend, and a JAX run in a subprocess."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_fer.data import augment
from keras_fer.data.preprocess import to_model_input


def _faces(n=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 60, 60), dtype=np.uint8)


def _bar(angle_deg=0.0):
    """A 60 x 60 float image of a thin bright bar through the centre at the given angle."""
    y, x = np.mgrid[0:60, 0:60] - 29.5
    a = np.deg2rad(angle_deg)
    across = -np.sin(a) * x + np.cos(a) * y
    along = np.cos(a) * x + np.sin(a) * y
    return ((np.abs(across) < 1.5) & (np.abs(along) < 20)).astype(np.float32)


def _orientation_deg(img):
    """Principal-axis angle of an image's mass (image y axis points down)."""
    y, x = np.mgrid[0 : img.shape[0], 0 : img.shape[1]].astype(np.float64)
    m = img.sum()
    cx, cy = (img * x).sum() / m, (img * y).sum() / m
    mu20 = (img * (x - cx) ** 2).sum()
    mu02 = (img * (y - cy) ** 2).sum()
    mu11 = (img * (x - cx) * (y - cy)).sum()
    return np.rad2deg(0.5 * np.arctan2(2 * mu11, mu20 - mu02))


def test_shapes_and_value_range():
    out = augment.augment_batch(_faces(), augment.make_augmenter(seed=0))
    assert out.shape == (8, 48, 48, 1) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 and out.max() > 0.9


def test_centre_crop_path_equals_preprocess_to_model_input():
    faces = _faces()
    expected = to_model_input(faces)
    np.testing.assert_array_equal(augment.augment_batch(faces), expected)
    np.testing.assert_array_equal(augment.augment_batch(faces[..., None]), expected)
    np.testing.assert_array_equal(augment.augment_batch(faces * np.float32(1 / 255)), expected)
    # At inference every random layer is the identity: the augmenter is the centre crop too.
    augmenter = augment.make_augmenter(seed=0)
    x = faces[..., None].astype(np.float32) * np.float32(1 / 255)
    np.testing.assert_allclose(np.asarray(augmenter(x, training=False)), expected, atol=1e-7)


def test_flip_only_flips():
    img = np.zeros((60, 60), np.uint8)
    img[10:50, 5:20] = 255  # a bar on the left
    img[5:10, 30:55] = 128
    faces = np.repeat(img[None], 64, axis=0)
    out = augment.augment_batch(faces, augment.make_augmenter(seed=1, rotation_degrees=0, crop=60))
    x = img.astype(np.float32) * np.float32(1 / 255)
    flipped = np.array([np.array_equal(o[..., 0], x[:, ::-1]) for o in out])
    same = np.array([np.array_equal(o[..., 0], x) for o in out])
    assert np.all(flipped ^ same)
    assert 10 < flipped.sum() < 54


def test_random_crop_is_an_exact_per_image_window():
    faces = _faces(32, seed=3)
    out = augment.augment_batch(faces, augment.make_augmenter(seed=2, rotation_degrees=0))
    x = faces.astype(np.float32) * np.float32(1 / 255)
    offsets = set()
    for o, f in zip(out[..., 0], x):
        hits = [
            (top, left, flip)
            for flip in (False, True)
            for top in range(13)
            for left in range(13)
            if np.array_equal(o, (f[:, ::-1] if flip else f)[top : top + 48, left : left + 48])
        ]
        assert len(hits) == 1
        offsets.add(hits[0][:2])
    assert len(offsets) > 10  # one window per image, not one per batch


def test_rotation_stays_within_the_limit_and_varies():
    faces = np.repeat(_bar()[None], 48, axis=0)
    augmenter = augment.make_augmenter(seed=5, crop=60, flip=False, rotation_degrees=15)
    out = augment.augment_batch(faces, augmenter)
    angles = np.array([_orientation_deg(o[..., 0]) for o in out])
    assert np.abs(angles).max() < 16.0
    assert angles.max() - angles.min() > 15.0
    # Sanity of the angle estimate itself.
    assert abs(abs(_orientation_deg(_bar(10.0))) - 10.0) < 0.5


def test_same_seed_same_output_and_other_seed_differs():
    faces = _faces()
    a = augment.augment_batch(faces, augment.make_augmenter(seed=7))
    b = augment.augment_batch(faces, augment.make_augmenter(seed=7))
    c = augment.augment_batch(faces, augment.make_augmenter(seed=8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_errors():
    with pytest.raises(ValueError, match=r"shape=\(2, 48, 48\)"):
        augment.augment_batch(np.zeros((2, 48, 48), np.uint8))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        augment.augment_batch(np.full((2, 60, 60), 200.0))
    with pytest.raises(ValueError, match="crop"):
        augment.make_augmenter(crop=64)
    with pytest.raises(ValueError, match="labels have 3 rows"):
        augment.FaceBatches(_faces(4), np.zeros(3))
    with pytest.raises(IndexError):
        augment.FaceBatches(_faces(4), np.zeros(4), batch_size=2)[2]


def test_face_batches_order_labels_and_determinism():
    faces, labels = _faces(10), np.arange(10)
    plain = augment.FaceBatches(faces, labels, batch_size=4)
    assert len(plain) == 3
    x, y = plain[2]
    assert x.shape == (2, 48, 48, 1) and y.tolist() == [8, 9]
    np.testing.assert_array_equal(x, to_model_input(faces[8:]))

    def epochs(seed):
        ds = augment.FaceBatches(faces, labels, batch_size=4, augment=True, seed=seed)
        out = []
        for _ in range(2):
            out.append([ds[i] for i in range(len(ds))])
            ds.on_epoch_end()
        return out

    first, again, other = epochs(0), epochs(0), epochs(1)
    seen = np.concatenate([y for _, y in first[0]])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    assert not np.array_equal(seen, np.concatenate([y for _, y in first[1]]))
    for e in range(2):
        for (xa, ya), (xb, yb) in zip(first[e], again[e]):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(first[0][0][0], other[0][0][0])
    # The labels of a batch are those of its faces.
    for x, y in first[0]:
        assert x.shape[1:] == (48, 48, 1) and len(x) == len(y)


def test_face_batches_dict_labels_and_no_labels():
    faces = _faces(5)
    ds = augment.FaceBatches(faces, {"emotion": np.arange(5), "identity": np.arange(5) * 10}, 2)
    _, y = ds[1]
    assert y["emotion"].tolist() == [2, 3] and y["identity"].tolist() == [20, 30]
    (x,) = augment.FaceBatches(faces, None, 5)[0]
    assert x.shape == (5, 48, 48, 1)


def test_fit_one_epoch_on_tensorflow():
    import keras

    model = keras.Sequential(
        [keras.Input((48, 48, 1)), keras.layers.Flatten(), keras.layers.Dense(3, "softmax")]
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    ds = augment.FaceBatches(_faces(12), np.arange(12) % 3, 4, augment=True, seed=0)
    history = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


JAX_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import keras
    from keras_fer.data import augment
    from keras_fer.data.preprocess import to_model_input

    assert keras.backend.backend() == "jax", keras.backend.backend()
    faces = np.random.default_rng(0).integers(0, 256, (12, 60, 60), dtype=np.uint8)
    out = augment.augment_batch(faces, augment.make_augmenter(seed=0))
    assert out.shape == (12, 48, 48, 1) and out.dtype == np.float32, (out.shape, out.dtype)
    assert 0.0 <= out.min() and out.max() <= 1.0
    again = augment.augment_batch(faces, augment.make_augmenter(seed=0))
    np.testing.assert_array_equal(out, again)
    assert not np.array_equal(out, to_model_input(faces))
    model = keras.Sequential(
        [keras.Input((48, 48, 1)), keras.layers.Flatten(), keras.layers.Dense(3, "softmax")]
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    ds = augment.FaceBatches(faces, np.arange(12) % 3, 4, augment=True, seed=0)
    loss = model.fit(ds, epochs=1, verbose=0).history["loss"][0]
    assert np.isfinite(loss), loss
    print("jax ok")
    """
)


@pytest.mark.slow
def test_runs_on_the_jax_backend():
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "jax ok" in result.stdout


def _is_window_of(out, face):
    """Whether ``out`` (48 x 48) is a 48 x 48 window of ``face`` or of its mirror image."""
    return any(
        np.array_equal(out, (face[:, ::-1] if flip else face)[top : top + 48, left : left + 48])
        for flip in (False, True)
        for top in range(13)
        for left in range(13)
    )


def test_face_batches_augmented_epoch_keeps_faces_with_their_labels(monkeypatch):
    # A small chunk makes the epoch's augmentation span several augmenter calls.
    monkeypatch.setattr(augment, "EPOCH_CHUNK", 4)
    faces, labels = _faces(11, seed=4), np.arange(11)
    ds = augment.FaceBatches(
        faces, labels, batch_size=3, augment=True, seed=0, drop_remainder=True,
        augmenter=augment.make_augmenter(seed=0, rotation_degrees=0),
    )
    assert len(ds) == 3
    x = faces.astype(np.float32) * np.float32(1 / 255)
    for epoch in range(2):
        seen = []
        for i in range(len(ds)):
            xb, yb = ds[i]
            assert xb.shape == (3, 48, 48, 1)
            for out, label in zip(xb[..., 0], yb):
                assert _is_window_of(out, x[label])
            seen += yb.tolist()
        assert len(set(seen)) == 9  # 9 distinct faces, the 2 left out change with the order
        ds.on_epoch_end()
