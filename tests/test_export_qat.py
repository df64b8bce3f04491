"""tf_keras rebuild of Keras 3 models, pruning and quantization-aware training to TFLite."""

import keras
import numpy as np
import pytest

from keras_fer.export import qat
from keras_fer.export.tflite import LiteRTClassifier

L = keras.layers


def _dense_layer(x, name):
    y = L.BatchNormalization(epsilon=1.001e-5, name=f"{name}_bn")(x)
    y = L.ReLU(name=f"{name}_relu")(y)
    y = L.Conv2D(4, 3, padding="same", use_bias=False, name=f"{name}_conv")(y)
    return L.Concatenate(name=f"{name}_concat")([x, y])


def _dense_net_like(num_classes=3, seed=0):
    """The DenseNet-BC patterns QAT has to handle: conv-BN-ReLU stem; a conv feeding both a BN
    and a concatenation; pre-activation dense layers (BN-ReLU-conv + concat); a transition
    (BN-ReLU-1x1 conv-average pool) whose pooled map feeds the next concatenation; BN-ReLU-GAP
    head, dropout, float32 softmax."""
    keras.utils.set_random_seed(seed)
    image = keras.Input((48, 48, 1), name="image")
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(image)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="conv0")(x)
    x = _dense_layer(_dense_layer(x, "block1_layer1"), "block1_layer2")
    x = L.BatchNormalization(name="transition_bn")(x)
    x = L.Activation("relu", name="transition_relu")(x)
    x = L.Conv2D(8, 1, use_bias=False, name="transition_conv")(x)
    x = L.AveragePooling2D(2, name="transition_pool")(x)
    x = _dense_layer(x, "block2_layer1")
    x = L.BatchNormalization(name="head_bn")(x)
    x = L.ReLU(name="head_relu")(x)
    x = L.GlobalAveragePooling2D(name="head_gap")(x)
    x = L.Dropout(0.5, name="dropout")(x)
    x = L.Dense(num_classes, name="fc")(x)
    probs = L.Activation("softmax", dtype="float32", name="expression")(x)
    model = keras.Model(image, probs, name="tiny_densenet")
    _randomise_batchnorm(model)
    return model


def _randomise_batchnorm(model):
    """Non-trivial BN statistics, so a wrong weight order or epsilon would show."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    gamma * rng.uniform(0.5, 1.5, gamma.shape),
                    beta + rng.normal(0, 0.1, beta.shape),
                    mean + rng.normal(0, 0.1, mean.shape),
                    var * rng.uniform(0.5, 1.5, var.shape),
                ]
            )


@pytest.fixture(scope="module")
def train_data():
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (48, 60, 60), dtype=np.uint8)
    # Labels from mean brightness: a learnable signal for the short fine-tuning.
    labels = np.digitize(faces[:, 6:54, 6:54].mean(axis=(1, 2)), [127.2, 127.8])
    return faces, labels


def test_rebuilt_tf_keras_model_matches_keras3(train_data):
    import tf_keras

    model = _dense_net_like()
    twin = qat.rebuild_tf_keras(model)
    assert isinstance(twin, tf_keras.Model)
    assert [layer.name for layer in twin.layers] == [layer.name for layer in model.layers]
    x = train_data[0][:8, 6:54, 6:54, None].astype("float32") / 255.0
    np.testing.assert_allclose(twin(x).numpy(), model(x).numpy(), atol=1e-5, rtol=0)
    assert twin.count_params() == model.count_params()


def test_rebuild_refuses_unknown_layers():
    image = keras.Input((48, 48, 1), name="image")
    x = L.Lambda(lambda t: t * 2.0, name="doubler")(image)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(image, L.Dense(2, activation="softmax", name="fc")(x))
    with pytest.raises(ValueError, match="'doubler' of type Lambda"):
        qat.rebuild_tf_keras(model)


def test_rebuilds_the_idennet_inference_model(train_data):
    idennet = pytest.importorskip("keras_fer.models.idennet")
    config = idennet.IDEnNetConfig(
        variant="if", depth=10, growth_rate=4, num_classes=7, num_identities=5,
        layers_per_block=1,
    )
    inference = idennet.inference_model(idennet.build_idennet(config))
    _randomise_batchnorm(inference)
    twin = qat.rebuild_tf_keras(inference)
    x = train_data[0][:4, 6:54, 6:54, None].astype("float32") / 255.0
    np.testing.assert_allclose(twin(x).numpy(), inference(x).numpy(), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_prune_reaches_target_sparsity(train_data):
    faces, labels = train_data
    pruned = qat.prune(qat.rebuild_tf_keras(_dense_net_like()), faces, labels, 0.5, epochs=1)
    kernel = pruned.get_layer("transition_conv").get_weights()[0]
    assert 0.45 <= np.mean(kernel == 0) <= 0.55
    assert not any("prune" in layer.name for layer in pruned.layers)
    with pytest.raises(ValueError, match="target_sparsity"):
        qat.prune(pruned, faces, labels, 1.5)


@pytest.mark.slow
def test_qat_export_runs_with_litert_as_int8(train_data, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    faces, labels = train_data
    model = _dense_net_like()
    path = qat.export_qat_tflite(model, faces, labels, tmp_path / "qat.tflite", epochs=1)
    x = faces[:, 6:54, 6:54, None].astype("float32") / 255.0
    probs = LiteRTClassifier(path).predict(x)
    assert probs.shape == (len(faces), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-2)
    # Short fine-tuning at a small learning rate stays close to the float model.
    assert np.abs(probs - model(x).numpy()).max() < 0.1
    interpreter = Interpreter(model_path=str(path))
    tensors = interpreter.get_tensor_details()
    # Fully integer: the only float tensors are the model's input and output.
    float_tensors = {d["index"] for d in tensors if d["dtype"] == np.float32}
    io = {interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]}
    assert float_tensors == io
    assert any(d["dtype"] == np.int8 and len(d["shape"]) == 4 for d in tensors)
