"""``face_embedding_model(flip_average=True)``: test-time flip averaging of the face network."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_fer.models import face_embedding


@pytest.fixture(scope="module")
def faces():
    # Gray faces in [0, 1] with no left-right symmetry (random texture plus a ramp).
    rng = np.random.default_rng(0)
    x = rng.random((3, 48, 48)).astype(np.float32) * 0.5
    x += np.linspace(0.0, 0.5, 48, dtype=np.float32)[None, None, :]
    return x[..., None]


@pytest.fixture(scope="module")
def models():
    return (face_embedding.face_embedding_model(),
            face_embedding.face_embedding_model(flip_average=True))


def test_flip_average_is_the_unit_mean_of_face_and_mirror(models, faces):
    plain, flip = models
    a = plain.predict(faces, verbose=0)
    b = plain.predict(faces[:, :, ::-1], verbose=0)
    # The default output is the raw embedding (not unit-norm, one image only).
    assert not np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-3)
    assert not np.allclose(a, b, atol=1e-3)
    mean = (a + b) / 2
    expected = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    out = flip.predict(faces, verbose=0)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_a_face_and_its_mirror_get_the_same_flip_averaged_embedding(models, faces):
    _, flip = models
    np.testing.assert_allclose(flip.predict(faces, verbose=0),
                               flip.predict(np.ascontiguousarray(faces[:, :, ::-1]), verbose=0),
                               atol=1e-5)


def test_flip_average_shares_one_network_and_saves(models, faces, tmp_path):
    plain, flip = models
    assert len(flip.weights) == len(plain.weights)  # one dlib network sees both images
    path = tmp_path / "flip.keras"
    flip.save(path)
    again = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(again.predict(faces, verbose=0),
                               flip.predict(faces, verbose=0), atol=1e-6)
