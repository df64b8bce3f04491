"""Tests for the TFE-JL models: DeepID, ResNet12/18, the tandem model, weight transfer.

Golden parameter counts (single-channel 48x48 input), worked out by hand in the module
docstrings' terms:
- DeepID backbone: conv 340 + 7240 + 21660 + 19280, feature dense (960 + 720) * 160 + 160
  = 268960, total 317480; + identity softmax 161 * K.
- ResNet12 backbone 88208, ResNet18 backbone 185552; + softmax 65 * K.
- TFE (ResNet12, 8 classes): 317480 + 88208 + BN 4 * 224 + FC 225 * 256 + 257 * 8 = 466240.
"""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_fer.models.deepid import build_deepid, deepid_feature_model
from keras_fer.models.resnet import build_resnet
from keras_fer.models.tfe import (
    TFEConfig,
    build_tfe,
    build_tfe_pretraining_models,
    inference_model,
    joint_optimizer,
)
from keras_fer.models.transfer import transfer_weights

CONFIG = TFEConfig(identity="deepid", num_classes=8, num_identities=10)


def _images(n=4, seed=0):
    return np.random.default_rng(seed).random((n, 48, 48, 1), dtype=np.float32)


def _kernel_layers(model):
    """Layers counted by 'ResNet-N': 3x3 convolutions and dense layers (not 1x1 shortcuts)."""
    return [
        layer
        for layer in model.layers
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
        and tuple(layer.kernel.shape[:-2]) != (1, 1)
    ]


def test_deepid_shapes_and_param_count():
    model = build_deepid(10)
    assert model.count_params() == 319090
    assert model.get_layer("deepid_pool3").output.shape == (None, 4, 4, 60)
    assert model.get_layer("deepid_conv4").output.shape == (None, 3, 3, 80)
    assert model.get_layer("deepid_concat").output.shape == (None, 960 + 720)
    assert model.input.name == "image"
    features = deepid_feature_model(model).predict(_images(2), verbose=0)
    assert features.shape == (2, 160) and (features >= 0).all()


def test_deepid_rejects_bad_arguments():
    with pytest.raises(ValueError, match="too small"):
        build_deepid(10, input_shape=(20, 20, 1))
    with pytest.raises(ValueError, match="num_identities=1"):
        build_deepid(1)
    with pytest.raises(ValueError, match="no layer 'deepid_feature'"):
        deepid_feature_model(build_resnet(12, 3))


@pytest.mark.parametrize("depth, params, last_map", [(12, 88728, 2), (18, 186072, 3)])
def test_resnet_param_counts_and_depth(depth, params, last_map):
    model = build_resnet(depth, 8)
    assert model.count_params() == params
    assert len(_kernel_layers(model)) == depth
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers)
    last_block = [layer for layer in model.layers if layer.name.endswith("_out")][-1]
    assert last_block.output.shape == (None, last_map, last_map, 64)
    assert model.get_layer("resnet_feature").output.shape == (None, 64)
    probs = model.predict(_images(2), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_resnet_rejects_unknown_depth():
    with pytest.raises(ValueError, match="depth=34"):
        build_resnet(34, 8)


@pytest.mark.parametrize("depth, params", [(12, 466240), (18, 563584)])
def test_tfe_param_counts_and_layer_names(depth, params):
    model = build_tfe(
        TFEConfig(identity="deepid", num_classes=8, num_identities=10, resnet_depth=depth))
    assert model.count_params() == params
    assert model.get_layer("tandem_concat").output.shape == (None, 224)
    weighted = [layer.name for layer in model.layers if layer.weights]
    assert all(name.split("_")[0] in {"deepid", "resnet", "tandem"} for name in weighted)


def test_tfe_config_is_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CONFIG.num_classes = 7
    with pytest.raises(ValueError, match="resnet_depth=50"):
        TFEConfig(identity="deepid", num_classes=8, num_identities=10, resnet_depth=50)
    with pytest.raises(ValueError, match="dropout=1.0"):
        TFEConfig(identity="deepid", num_classes=8, num_identities=10, dropout=1.0)


def _assert_differential_step(model, optimizer):
    """Applies an all-ones gradient twice; SGD momentum moves each variable by lr, 1.9 lr."""
    before = [np.array(v) for v in model.trainable_variables]
    grads = [keras.ops.ones(v.shape, v.dtype) for v in model.trainable_variables]
    optimizer.apply(grads, model.trainable_variables)
    optimizer.apply(grads, model.trainable_variables)
    for var, start in zip(model.trainable_variables, before):
        lr = 0.01 if var.path.startswith("deepid_") else 0.16
        np.testing.assert_allclose(start - np.array(var), 2.9 * lr, rtol=1e-4, err_msg=var.path)


def test_joint_optimizer_gives_deepid_the_smaller_rate():
    model = build_tfe(CONFIG)
    optimizer = joint_optimizer(CONFIG)
    _assert_differential_step(model, optimizer)
    groups = {opt.name: len(opt._trainable_variables) for opt in optimizer.optimizers}
    # 4 convs + feature dense = 10 DeepID variables; everything else (ResNet, tandem) = 56.
    assert groups == {"deepid_sgd": 10, "resnet_sgd": 56}


@pytest.mark.slow
def test_fit_step_and_keras_round_trip(tmp_path):
    model = build_tfe(CONFIG)
    model.compile(optimizer=joint_optimizer(CONFIG), loss="sparse_categorical_crossentropy")
    history = model.fit(_images(), np.arange(4), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    path = tmp_path / "tfe.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = _images(3, seed=1)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    rates = {opt.name: float(opt.learning_rate) for opt in loaded.optimizer.optimizers}
    assert rates == pytest.approx({"resnet_sgd": 0.16, "deepid_sgd": 0.01})


_JAX_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    from keras_fer.models.tfe import TFEConfig, build_tfe, joint_optimizer

    def moves(model, before):
        by_group = {"deepid": [], "other": []}
        for v in model.trainable_variables:
            group = "deepid" if v.path.startswith("deepid_") else "other"
            by_group[group].append(np.abs(before[v.path] - np.array(v)).ravel())
        return {g: [float(np.min(np.concatenate(m))), float(np.max(np.concatenate(m)))]
                for g, m in by_group.items()}

    config = TFEConfig(identity="deepid", num_classes=8, num_identities=10)
    model = build_tfe(config)
    model.compile(optimizer=joint_optimizer(config), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((4, 48, 48, 1), dtype=np.float32)
    before = {v.path: np.array(v) for v in model.trainable_variables}
    loss = model.fit(x, np.arange(4), batch_size=4, epochs=1, verbose=0).history["loss"][0]
    fit_moves = moves(model, before)
    model.save(sys.argv[1])
    probs = model.predict(x, verbose=0).tolist()
    before = {v.path: np.array(v) for v in model.trainable_variables}
    ones = [keras.ops.ones(v.shape, v.dtype) for v in model.trainable_variables]
    optimizer = joint_optimizer(config)
    optimizer.apply(ones, model.trainable_variables)
    optimizer.apply(ones, model.trainable_variables)
    print(json.dumps({"backend": keras.backend.backend(), "loss": float(loss),
                      "fit_moves": fit_moves, "ones_moves": moves(model, before),
                      "probs": probs}))
    """
)


@pytest.mark.slow
def test_jax_fit_step_then_load_on_tensorflow(tmp_path):
    script = tmp_path / "jax_fit.py"
    script.write_text(_JAX_SCRIPT)
    saved = tmp_path / "tfe_jax.keras"
    # XLA's CPU optimisation passes dominate a one-step run (3x slower on 2 cores); the
    # numerics checked here do not depend on them.
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(saved)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax"
    assert np.isfinite(result["loss"])
    # The fit step trained both groups.
    assert result["fit_moves"]["deepid"][1] > 0 and result["fit_moves"]["other"][1] > 0
    # Same all-ones gradient, two SGD-momentum steps: every variable moves by 2.9 * its lr.
    np.testing.assert_allclose(result["ones_moves"]["deepid"], [0.029, 0.029], rtol=1e-3)
    np.testing.assert_allclose(result["ones_moves"]["other"], [0.464, 0.464], rtol=1e-3)
    loaded = keras.saving.load_model(saved)
    x = np.random.default_rng(0).random((4, 48, 48, 1), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), result["probs"], atol=1e-5)


def test_transfer_pretrained_weights_into_tfe():
    deepid, resnet = build_tfe_pretraining_models(CONFIG)
    tfe = build_tfe(CONFIG)
    x = _images(2)
    id_report = transfer_weights(deepid, tfe)
    assert id_report.copied == [
        "deepid_conv1",
        "deepid_conv2",
        "deepid_conv3",
        "deepid_conv4",
        "deepid_feature",
    ]
    assert id_report.unused_from_source == ["deepid_predictions"]
    emo_report = transfer_weights(resnet, tfe)
    assert len(emo_report.copied) == 2 + 5 * 6  # stem conv+BN, 5 blocks of 3 conv+BN pairs
    assert emo_report.unused_from_source == ["resnet_predictions"]
    assert set(emo_report.not_in_source) >= {"tandem_fc1", "tandem_predictions"}
    np.testing.assert_allclose(
        deepid_feature_model(tfe).predict(x, verbose=0),
        deepid_feature_model(deepid).predict(x, verbose=0),
        atol=1e-5,
    )
    resnet_feature = keras.Model(tfe.input, tfe.get_layer("resnet_feature").output)
    pretrained_feature = keras.Model(resnet.input, resnet.get_layer("resnet_feature").output)
    np.testing.assert_allclose(
        resnet_feature.predict(x, verbose=0), pretrained_feature.predict(x, verbose=0), atol=1e-5
    )


def test_transfer_shape_mismatch_and_nested_source():
    with pytest.raises(ValueError, match="resnet_predictions"):
        transfer_weights(build_resnet(12, 8), build_resnet(12, 7), skip_mismatched=False)
    # The default skips (and reports) a head pretrained on another number of classes.
    report = transfer_weights(build_resnet(12, 8), build_resnet(12, 7))
    assert report.shape_mismatch == ["resnet_predictions"]
    assert len(report.copied) == 32 and "resnet_predictions" not in report.copied
    inner = build_deepid(5)
    image = keras.Input((48, 48, 1))
    wrapper = keras.Model(image, inner(image))
    target = build_deepid(5)
    report = transfer_weights(wrapper, target)
    assert len(report.copied) == 6 and not report.not_in_source
    for a, b in zip(inner.weights, target.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b))


def test_inference_model_contract():
    tfe = build_tfe(CONFIG)
    serving = inference_model(tfe)
    assert len(serving.inputs) == 1 and len(serving.outputs) == 1
    assert serving.input.name == "image"
    assert tuple(serving.input.shape) == (None, 48, 48, 1)
    x = _images(3)
    probs = serving.predict(x, verbose=0)
    assert probs.shape == (3, 8)
    np.testing.assert_allclose(probs, tfe.predict(x, verbose=0), atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="tandem_predictions"):
        inference_model(build_resnet(12, 8))
