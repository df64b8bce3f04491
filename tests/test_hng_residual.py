"""The residual HNG (``HNGConfig(residual=True)``): the generated face is the input face plus a
change the decoder draws (``models.hng.ResidualImage``), on both backends, saved and loaded,
and refused where it cannot work (autoencoder pretraining, an ``hng_init`` of the other kind)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import keras

from jax_subprocess import jax_env
from keras_fer.models import hng, idferm
from keras_fer.models.hng_step import HNGModel
from keras_fer.training import hng_pretrain
from keras_fer.training.settings import ConfigError
from test_hng_pretrain import _aux_net

TINY = dict(image_size=16, latent_dim=8, encoder_filters=(4, 8), decoder_filters=(8, 4),
            discriminator_filters=(4,))


def _hng(residual: bool) -> HNGModel:
    config = idferm.HNGConfig(residual=residual, **TINY)
    return hng_pretrain.make_hng(config, _aux_net("expr", 16),
                                 _aux_net("ident", 12, two_outputs=True), {})


def _zero_last_layer(model: HNGModel) -> None:
    """Decoder output sigmoid(0) = 0.5 everywhere: 'no change' for the residual generator."""
    last = model.decoder.get_layer("hng_decoder_image")
    last.set_weights([np.zeros_like(w) for w in last.get_weights()])


def test_residual_image_golden_values_and_clipping():
    face = np.array([0.3, 0.3, 0.3, 0.9], np.float32).reshape(1, 2, 2, 1)
    decoded = np.array([0.5, 1.0, 0.25, 0.2], np.float32).reshape(1, 2, 2, 1)
    out = keras.ops.convert_to_numpy(hng.ResidualImage()([face, decoded]))
    # 0.3 + 0 = 0.3; 0.3 + 1 -> 1 (clipped); 0.3 - 0.5 -> 0 (clipped); 0.9 - 0.6 = 0.3
    np.testing.assert_allclose(out.ravel(), [0.3, 1.0, 0.0, 0.3], atol=1e-6)


def test_config_default_is_the_papers_whole_face_decoder():
    assert idferm.HNGConfig().residual is False
    with pytest.raises(ValueError, match="`residual` must be true or false"):
        idferm.HNGConfig(residual="yes")


def test_residual_generator_changes_nothing_when_the_decoder_says_so():
    rng = np.random.default_rng(0)
    x = rng.random((3, 16, 16, 1)).astype(np.float32)
    residual, whole = _hng(True), _hng(False)
    for model in (residual, whole):
        _zero_last_layer(model)
    np.testing.assert_allclose(residual.generator.predict(x, verbose=0), x, atol=1e-6)
    np.testing.assert_allclose(whole.generator.predict(x, verbose=0), 0.5, atol=1e-6)
    # the wrapper's own forward pass (the one its losses use) is the generator's
    np.testing.assert_allclose(keras.ops.convert_to_numpy(residual(x)), x, atol=1e-6)
    assert [type(l).__name__ for l in residual.generator.layers][-1] == "ResidualImage"


def test_residual_step_trains_and_its_generator_saves_and_loads(tmp_path):
    model = _hng(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Keras' "build() was called on layer 'hng' ..."
        model.build((None, 16, 16, 1))
    rng = np.random.default_rng(1)
    x = rng.random((4, 16, 16, 1)).astype(np.float32)
    y = rng.random((4, 16, 16, 1)).astype(np.float32)
    before = [w.copy() for w in model.decoder.get_weights()]
    logs = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    assert all(np.isfinite(v[-1]) for v in logs.values())
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.decoder.get_weights()))
    path = tmp_path / "residual.keras"
    model.generator.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               model.generator.predict(x, verbose=0), atol=1e-6)

    fresh = _hng(True)
    assert "initialised from" in hng_pretrain.load_generator(fresh, path)
    np.testing.assert_allclose(fresh.generator.predict(x, verbose=0),
                               loaded.predict(x, verbose=0), atol=1e-6)
    # same weight shapes, other reading of the decoder's output: refused in one line
    with pytest.raises(ConfigError, match="residual=true where this fold's HNG .* residual=false"):
        hng_pretrain.load_generator(_hng(False), path)


@pytest.mark.parametrize("residual", [True, False])
def test_hng_init_that_is_no_generator_says_so_whatever_the_hng(tmp_path, residual):
    """A file that holds no HNG generator is named as such before any residual mismatch."""
    other = tmp_path / "classifier.keras"
    _aux_net("expr", 16).save(other)
    with pytest.raises(ConfigError, match="has no 'hng_encoder' \\(not an HNG generator"):
        hng_pretrain.load_generator(_hng(residual), other)
    junk = tmp_path / "notes.keras"
    junk.write_text("not a model")
    with pytest.raises(ConfigError, match="notes.keras is no Keras model file"):
        hng_pretrain.load_generator(_hng(residual), junk)


def test_a_residual_hng_is_not_pretrained_as_an_autoencoder(tmp_path):
    faces = np.zeros((4, 16, 16), np.uint8)
    with pytest.raises(ConfigError, match="changing nothing"):
        hng_pretrain.pretrain_generator(
            faces, idferm.HNGConfig(residual=True, **TINY), _aux_net("expr", 16),
            _aux_net("ident", 12, two_outputs=True), {}, tmp_path / "stage", epochs=1)
    assert not (tmp_path / "stage").exists()


_JAX_SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    import keras
    import numpy as np

    sys.path.insert(0, sys.argv[1])
    import test_hng_residual as t

    model = t._hng(True)
    t._zero_last_layer(model)
    rng = np.random.default_rng(0)
    x = rng.random((4, 16, 16, 1)).astype("float32")
    y = rng.random((4, 16, 16, 1)).astype("float32")
    same = float(np.abs(model.generator.predict(x, verbose=0) - x).max())
    before = [np.array(w) for w in model.decoder.get_weights()]
    logs = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    change = max(float(np.abs(np.array(a) - b).max())
                 for a, b in zip(model.decoder.get_weights(), before))
    print(json.dumps({"backend": keras.backend.backend(), "same": same, "change": change,
                      "pixel_loss": logs["pixel_loss"][-1]}))
    """
)


@pytest.mark.slow
def test_residual_hng_on_jax():
    proc = subprocess.run([sys.executable, "-c", _JAX_SCRIPT, os.path.dirname(__file__)],
                          capture_output=True, text=True, env=jax_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["backend"] == "jax"
    assert out["same"] < 1e-6
    assert out["change"] > 0 and np.isfinite(out["pixel_loss"])
