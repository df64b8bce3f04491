"""SelfAttention2D: identity at init, attention arithmetic, serialisation."""

import keras
import numpy as np
import pytest

from keras_fer.layers.attention import SelfAttention2D


def _features(seed=0, shape=(2, 4, 3, 16)):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def test_identity_at_init_because_gamma_starts_at_zero():
    x = _features()
    layer = SelfAttention2D(name="att")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)
    assert float(keras.ops.convert_to_numpy(layer.gamma)) == 0.0
    # query/key at C/8 channels, value at C channels (16 -> 2 and 16).
    assert tuple(layer.query_kernel.shape) == (16, 2)
    assert tuple(layer.key_kernel.shape) == (16, 2)
    assert tuple(layer.value_kernel.shape) == (16, 16)


def test_attention_map_rows_are_distributions_over_positions():
    x = _features(1)
    layer = SelfAttention2D(reduction=4, name="att")
    maps = keras.ops.convert_to_numpy(layer.attention_map(x))
    assert maps.shape == (2, 12, 12)
    np.testing.assert_allclose(maps.sum(axis=-1), 1.0, rtol=1e-5)
    assert (maps >= 0).all()


def test_uniform_attention_adds_gamma_times_mean_of_values():
    # With zero query/key kernels every energy is 0, the softmax is uniform (1/N), so each
    # position receives the mean of the values; with value = identity that is the mean
    # feature over all positions: out = gamma * mean_positions(x) + x.
    x = _features(2, shape=(1, 2, 2, 8))
    layer = SelfAttention2D(name="att")
    layer.build(x.shape)
    layer.query_kernel.assign(np.zeros((8, 1), "float32"))
    layer.key_kernel.assign(np.zeros((8, 1), "float32"))
    layer.value_kernel.assign(np.eye(8, dtype="float32"))
    layer.gamma.assign(0.5)
    expected = 0.5 * x.mean(axis=(1, 2), keepdims=True) + x
    out = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_config_round_trip_and_saved_model_outputs(tmp_path):
    layer = SelfAttention2D(reduction=4, name="att")
    assert layer.get_config()["reduction"] == 4
    clone = SelfAttention2D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()

    inputs = keras.Input((4, 3, 16))
    model = keras.Model(inputs, SelfAttention2D(reduction=4, name="att")(inputs))
    model.get_layer("att").gamma.assign(0.7)
    x = _features(3)
    path = tmp_path / "att.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(restored.predict(x, verbose=0), expected, atol=1e-6)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="reduction"):
        SelfAttention2D(reduction=0)
    with pytest.raises(ValueError, match="input_shape"):
        SelfAttention2D().build((2, 16))
