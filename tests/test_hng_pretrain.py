"""IDFERM's HNG pretrained as a face autoencoder (keras_fer.training.hng_pretrain) and the
trainers' ``extra hng_init`` that starts each fold's HNG from it."""

from __future__ import annotations

import numpy as np
import pytest

import keras

from keras_fer.models import idferm
from keras_fer.models.hng_step import HNGModel
from keras_fer.training import hng_pretrain
from keras_fer.training.settings import ConfigError

TINY_HNG = idferm.HNGConfig(image_size=16, latent_dim=8, encoder_filters=(4, 8),
                            decoder_filters=(8, 4), discriminator_filters=(4,))


def _aux_net(name: str, size: int, two_outputs: bool = False) -> keras.Model:
    inputs = keras.Input((size, size, 1))
    conv = keras.layers.Conv2D(3, 3, name=f"{name}_conv")(inputs)
    dense = keras.layers.Dense(4, name=f"{name}_dense")(keras.layers.Flatten()(conv))
    return keras.Model(inputs, [conv, dense] if two_outputs else conv, name=name)


def _hng(config=TINY_HNG) -> HNGModel:
    return HNGModel(idferm.build_hng_encoder(config), idferm.build_hng_decoder(config),
                    idferm.build_hng_discriminator(config), _aux_net("expr", 16),
                    _aux_net("ident", 12, two_outputs=True))


def test_self_pairs_are_the_same_faces_flipped_together():
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (10, 16, 16), dtype=np.uint8)
    pairs = hng_pretrain.SelfPairs(faces, batch_size=4, seed=1)
    assert len(pairs) == 3
    seen, flipped = [], 0
    for i in range(len(pairs)):
        x, y = pairs[i]
        assert x.shape[1:] == (16, 16, 1) and x.dtype == np.float32
        assert np.array_equal(x, y)
        for face in np.round(x[..., 0] * 255).astype(np.uint8):
            match = [k for k in range(10) if np.array_equal(face, faces[k])]
            mirror = [k for k in range(10) if np.array_equal(face, faces[k, :, ::-1])]
            assert len(match + mirror) == 1
            seen += match + mirror
            flipped += bool(mirror)
    assert sorted(seen) == list(range(10)) and 0 < flipped < 10
    with pytest.raises(ValueError, match="at least one face"):
        hng_pretrain.SelfPairs(np.zeros((0, 16, 16), np.uint8), 4)


@pytest.mark.slow
def test_a_pretrained_generator_starts_a_new_hng_with_its_weights(tmp_path):
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (8, 16, 16), dtype=np.uint8)
    generator = hng_pretrain.pretrain_generator(
        faces, TINY_HNG, _aux_net("expr", 16), _aux_net("ident", 12, two_outputs=True),
        {"identity_weight": 10.0}, tmp_path / "stage", epochs=1, batch_size=4)
    assert (tmp_path / "stage" / "final.weights.h5").exists()
    path = tmp_path / "generator.keras"
    generator.save(path)

    fresh = _hng()
    before = [w.copy() for w in fresh.encoder.get_weights()]
    line = hng_pretrain.load_generator(fresh, path)
    assert f"initialised from {path}" in line
    for got, want in zip(fresh.encoder.get_weights() + fresh.decoder.get_weights(),
                         generator.get_layer("hng_encoder").get_weights()
                         + generator.get_layer("hng_decoder").get_weights()):
        np.testing.assert_array_equal(got, want)
    assert any(not np.array_equal(a, b) for a, b in zip(before, fresh.encoder.get_weights()))
    x = rng.random((2, 16, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(fresh.generator.predict(x, verbose=0),
                               generator.predict(x, verbose=0), atol=1e-6)

    wider = idferm.HNGConfig(image_size=16, latent_dim=16, encoder_filters=(4, 8),
                             decoder_filters=(8, 4), discriminator_filters=(4,))
    with pytest.raises(ConfigError, match="give the fold the same extra 'hng'"):
        hng_pretrain.load_generator(_hng(wider), path)
    # with the record tools/pretrain_hng.py writes beside it, the error names its settings
    (tmp_path / "generator.keras.json").write_text('{"hng": {"upsample": "resize"}}')
    with pytest.raises(ConfigError, match='pretrained with --hng={"upsample": "resize"}'):
        hng_pretrain.load_generator(_hng(wider), path)
    with pytest.raises(FileNotFoundError, match="tools/pretrain_hng.py"):
        hng_pretrain.load_generator(fresh, tmp_path / "missing.keras")
