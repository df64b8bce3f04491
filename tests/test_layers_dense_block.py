"""Tests for the DenseNet-BC free functions: shapes, stable names, weight sharing, errors."""

import keras
import numpy as np
import pytest

from keras_fer.layers.dense_block import apply_dense_block, apply_dense_layer, apply_transition


def _names(model):
    return [layer.name for layer in model.layers]


def test_dense_layer_adds_growth_channels_with_stable_names():
    inputs = keras.Input((8, 8, 5))
    model = keras.Model(inputs, apply_dense_layer(inputs, growth_rate=3, name="b_layer1"))
    assert model.output.shape == (None, 8, 8, 5 + 3)
    assert _names(model)[1:] == [
        "b_layer1_bn1", "b_layer1_relu1", "b_layer1_conv1", "b_layer1_bn2", "b_layer1_relu2",
        "b_layer1_conv2", "b_layer1_concat",
    ]
    # Bottleneck 1x1 conv has 4k filters, the 3x3 conv k; neither has a bias (BN follows).
    assert model.get_layer("b_layer1_conv1").kernel.shape == (1, 1, 5, 12)
    assert model.get_layer("b_layer1_conv2").kernel.shape == (3, 3, 12, 3)
    assert not model.get_layer("b_layer1_conv2").use_bias


def test_dense_layer_output_starts_with_its_input():
    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, apply_dense_layer(inputs, growth_rate=2, name="d"))
    x = np.random.default_rng(0).random((2, 4, 4, 2)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x))[..., :2], x)


def test_dense_block_and_transition_shapes():
    inputs = keras.Input((12, 12, 24))
    x = apply_dense_block(inputs, num_layers=3, growth_rate=12, name="blk")
    assert x.shape == (None, 12, 12, 24 + 3 * 12)
    y = apply_transition(x, filters=30, name="tr")
    model = keras.Model(inputs, y)
    assert y.shape == (None, 6, 6, 30)
    assert "blk_layer3_conv2" in _names(model)
    assert "blk_layer4_conv2" not in _names(model)
    assert _names(model)[-4:] == ["tr_bn", "tr_relu", "tr_conv", "tr_pool"]


def test_reuse_from_shares_the_same_variables():
    inputs = keras.Input((6, 6, 4))
    first = keras.Model(inputs, apply_dense_block(inputs, 2, 2, name="shared"))
    other = keras.Input((6, 6, 4))
    second = keras.Model(other, apply_dense_block(other, 2, 2, name="shared", reuse_from=first))
    for name in ("shared_layer1_conv1", "shared_layer2_bn2", "shared_layer2_conv2"):
        assert second.get_layer(name) is first.get_layer(name)
    first_ids = {id(v) for v in first.weights}
    assert all(id(v) in first_ids for v in second.weights)
    x = np.random.default_rng(1).random((2, 6, 6, 4)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(first(x)), keras.ops.convert_to_numpy(second(x))
    )


def test_reuse_from_reports_missing_or_wrong_layers():
    inputs = keras.Input((6, 6, 4))
    source = keras.Model(inputs, apply_dense_block(inputs, 1, 2, name="src"))
    with pytest.raises(ValueError, match="has no layer of that name"):
        apply_dense_block(keras.Input((6, 6, 4)), 1, 2, name="other", reuse_from=source)
    odd_inputs = keras.Input((6, 6, 4))
    odd = keras.Model(odd_inputs, keras.layers.Conv2D(2, 1, name="t_bn")(odd_inputs))
    with pytest.raises(ValueError, match="expected a BatchNormalization, found Conv2D"):
        apply_transition(keras.Input((6, 6, 4)), 2, name="t", reuse_from=odd)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda x: apply_dense_layer(x, growth_rate=0, name="a"), "growth_rate=0"),
        (lambda x: apply_dense_block(x, num_layers=0, growth_rate=2, name="a"), "num_layers=0"),
        (lambda x: apply_transition(x, filters=-1, name="a"), "filters=-1"),
    ],
)
def test_invalid_sizes_say_what_was_received(call, message):
    with pytest.raises(ValueError, match=f"Received: {message}"):
        call(keras.Input((4, 4, 2)))
