"""Tests for IDEnNet: variants, golden parameter counts, weight sharing, transfer and freezing,
the joint loss with missing identity labels, save/load, the inference model, one fit step on
TensorFlow and on JAX, and the SGD step schedule."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_fer.models.densenet import (
    feature_group_channels,
    is_feature_group_layer,
    layers_per_block,
)
from keras_fer.models.idennet import (
    VARIANTS,
    IDEnNetConfig,
    IDEnNetTrainer,
    build_emotion_pretrain_model,
    build_idennet,
    build_identity_pretrain_model,
    freeze_feature_groups,
    inference_model,
    passthrough_fusion_conv,
    transfer_weights,
)
from keras_fer.training.optim import make_sgd, step_schedule

NUM_CLASSES, NUM_IDS = 7, 5


def _tiny(variant="if", **kwargs):
    kwargs.setdefault("num_identities", NUM_IDS)
    return IDEnNetConfig(
        variant=variant, depth=16, layers_per_block=1, num_classes=NUM_CLASSES, **kwargs
    )


def _batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 48, 48, 1)).astype("float32")
    y = {
        "expression": rng.integers(0, NUM_CLASSES, size=n),
        "identity": np.array([0, -1, 3, 4, 1, -1, 2, 0][:n]),
    }
    return x, y


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _compile(model, run_eagerly=True):
    # Eager steps are ~4x faster to start than a traced graph on CI's CPUs; the graph path is
    # covered by test_one_fit_step_tensorflow[if] and the (always jitted) JAX test.
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9), run_eagerly=run_eagerly,
        jit_compile=False,
    )


# Golden parameter counts (num_classes=7, num_identities=100, growth 12, compression 0.5),
# computed once with this code and pinned: any silent change of the architecture (a missing
# layer, another bottleneck width, a bias that appears) changes them. Relations that hold by
# construction: i = original + (C + 1) * 100 with C the width after block 3 (58, 69, 132);
# f = original + identity group + fusion conv (2D * D + D).
GOLDEN = {
    16: {"original": 45055, "i": 49955, "f": 76879, "if": 81779, "D": 24},
    22: {"original": 73036, "i": 80036, "f": 124369, "if": 131369, "D": 33},
    40: {"original": 180379, "i": 193679, "f": 306223, "if": 319523, "D": 60},
}
GOLDEN_PRETRAIN_40 = {"emotion": 180379, "identity": 192748}


@pytest.mark.parametrize("depth", [16, 22, 40])
def test_golden_parameter_counts_and_output_shapes(depth):
    x, _ = _batch(2)
    for variant in VARIANTS:
        config = IDEnNetConfig(
            variant=variant, depth=depth, num_classes=NUM_CLASSES, num_identities=100
        )
        model = build_idennet(config)
        assert model.count_params() == GOLDEN[depth][variant], variant
        outputs = model(x, training=False)
        assert tuple(outputs["expression"].shape) == (2, NUM_CLASSES)
        if config.has_identity_head:
            assert tuple(outputs["identity"].shape) == (2, 100)
        else:
            assert set(outputs) == {"expression"}
        np.testing.assert_allclose(_np(outputs["expression"]).sum(-1), 1.0, rtol=1e-5)
    assert config.group_channels == GOLDEN[depth]["D"]
    d = config.group_channels
    assert model.get_layer("fusion_conv").kernel.shape == (1, 1, 2 * d, d)


def test_golden_pretrain_parameter_counts():
    config = IDEnNetConfig(variant="original", depth=40, num_classes=NUM_CLASSES)
    emotion = build_emotion_pretrain_model(config)
    identity = build_identity_pretrain_model(config, num_identities=100)
    assert emotion.count_params() == GOLDEN_PRETRAIN_40["emotion"]
    assert identity.count_params() == GOLDEN_PRETRAIN_40["identity"]
    # "original" is exactly the emotion pretraining architecture (block 3 = fusion block).
    assert emotion.count_params() == GOLDEN[40]["original"]
    assert emotion.output.shape == (None, NUM_CLASSES)
    assert identity.output.shape == (None, 100)


def test_depth_to_layers_per_block_and_channels():
    assert [layers_per_block(d) for d in (16, 22, 40)] == [2, 3, 6]
    with pytest.raises(ValueError, match="depth=23"):
        layers_per_block(23)
    # Depth 40, k = 12: stem 24 -> +72 = 96 -> 48 -> +72 = 120 -> 60.
    assert feature_group_channels(6, 12, 0.5) == 60


def test_tiny_variants_have_the_right_streams():
    names = {v: {layer.name for layer in build_idennet(_tiny(v)).layers} for v in VARIANTS}
    assert "id_block1_layer1_conv1" not in names["original"] | names["i"]
    assert "fusion_conv" in names["f"] and "fusion_conv" in names["if"]
    assert "fc_id" in names["i"] and "fc_id" not in names["f"]
    assert all("emo_block3_layer1_conv2" in n for n in names.values())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"variant": "x"}, "variant='x'"),
        ({"variant": "if", "num_identities": None}, "num_identities=None"),
        ({"variant": "f", "fusion_channels": 32}, "D=24.*fusion_channels=32"),
        ({"variant": "f", "layers_per_block": 0}, "layers_per_block=0"),
    ],
)
def test_config_errors_say_what_was_received(kwargs, message):
    base = {"variant": "f", "depth": 16, "num_classes": 7, "num_identities": 3}
    with pytest.raises(ValueError, match=message):
        IDEnNetConfig(**{**base, **kwargs})


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_fit_step_tensorflow(variant):
    model = build_idennet(_tiny(variant))
    _compile(model, run_eagerly=variant != "if")
    x, y = _batch(4)
    # Each label format once: dict, (expression, identity) pair, bare expression labels.
    labels = {"if": y, "i": (y["expression"], y["identity"])}.get(variant, y["expression"])
    history = model.fit(x, labels, batch_size=4, epochs=1, verbose=0).history
    assert set(history) == {"loss", "emo_loss", "id_loss", "accuracy"}
    assert np.isfinite(history["loss"][0])
    if variant in ("i", "if"):
        assert history["id_loss"][0] > 0
        assert history["loss"][0] == pytest.approx(
            history["emo_loss"][0] + history["id_loss"][0], rel=1e-5
        )
    else:
        assert history["id_loss"][0] == 0.0


def test_identity_head_needs_identity_labels():
    model = build_idennet(_tiny("if"))
    x, y = _batch(2)
    with pytest.raises(ValueError, match="has an identity head"):
        model.compute_loss(x, y["expression"], model(x))


def test_identity_minus_one_labels_are_masked_out():
    model = build_idennet(_tiny("if", alpha=0.5, gamma=2.0))
    x, y = _batch(4)
    y_pred = model(x, training=False)
    probs = _np(y_pred["identity"])
    emo_only = float(_np(model.compute_loss(x, {**y, "identity": np.full(4, -1)}, y_pred)))
    expected_emo = float(
        np.mean(-np.log(_np(y_pred["expression"])[np.arange(4), y["expression"]]))
    )
    assert emo_only == pytest.approx(expected_emo, rel=1e-5)
    # Labelled samples 0, 2, 3 (ids 0, 3, 4): mean of 0.5 * (1 - p)^2 * -ln p over those three.
    p = probs[[0, 2, 3], [0, 3, 4]]
    expected_id = np.mean(0.5 * (1 - p) ** 2 * -np.log(p))
    total = float(_np(model.compute_loss(x, y, y_pred)))
    assert total == pytest.approx(expected_emo + expected_id, rel=1e-5)
    # The identity prediction of the unlabelled sample 1 must not matter.
    other = dict(y_pred, identity=keras.ops.convert_to_tensor(probs[[0, 3, 2, 3]]))
    assert float(_np(model.compute_loss(x, y, other))) == pytest.approx(total, rel=1e-6)


def test_fusion_block_shares_variables_with_emotion_block3():
    config = _tiny("if")
    emotion = build_emotion_pretrain_model(config)
    model = build_idennet(config, emotion_model=emotion)
    block3 = [layer for layer in emotion.layers if layer.name.startswith("emo_block3_")]
    assert block3
    for layer in block3:
        assert model.get_layer(layer.name) is layer
    assert model.get_layer("emo_head_bn") is not emotion.get_layer("emo_head_bn")
    kernel = emotion.get_layer("emo_block3_layer1_conv2").kernel
    before = _np(kernel).copy()
    _compile(model)
    model.fit(*_batch(4), batch_size=4, verbose=0)
    after_in_idennet = _np(model.get_layer("emo_block3_layer1_conv2").kernel)
    assert not np.allclose(before, after_in_idennet)
    np.testing.assert_array_equal(_np(kernel), after_in_idennet)


def _randomise(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])


def test_passthrough_fusion_makes_f_start_where_original_starts():
    emotion = build_emotion_pretrain_model(_tiny("original"))
    identity = build_identity_pretrain_model(_tiny("f"), NUM_IDS)
    _randomise(emotion, 1)
    _randomise(identity, 2)
    original, fused = build_idennet(_tiny("original")), build_idennet(_tiny("f"))
    for model in (original, fused):
        transfer_weights(emotion, model)
        transfer_weights(identity, model)
    # The expression head is not in the pretrain models: give both the same one.
    for name in ("fc_emo",):
        fused.get_layer(name).set_weights(original.get_layer(name).get_weights())
    x, _ = _batch(4)
    want = _np(original(x, training=False)["expression"])
    assert not np.allclose(_np(fused(x, training=False)["expression"]), want, atol=1e-3)
    passthrough_fusion_conv(fused)
    np.testing.assert_allclose(_np(fused(x, training=False)["expression"]), want, atol=1e-5)
    # The identity map does reach the output once the identity half of the kernel moves.
    kernel, bias = fused.get_layer("fusion_conv").get_weights()
    kernel[0, 0, kernel.shape[3]:, :] += 0.5
    fused.get_layer("fusion_conv").set_weights([kernel, bias])
    assert not np.allclose(_np(fused(x, training=False)["expression"]), want, atol=1e-3)
    with pytest.raises(ValueError, match="fusion_conv"):
        passthrough_fusion_conv(original)


def test_transfer_weights_by_name_then_freeze_groups():
    config = _tiny("if")
    emotion = build_emotion_pretrain_model(
        IDEnNetConfig(variant="original", depth=16, layers_per_block=1, num_classes=8)
    )
    identity = build_identity_pretrain_model(config, num_identities=40)
    _randomise(emotion, 1)
    _randomise(identity, 2)
    model = build_idennet(config)
    from_emotion = transfer_weights(emotion, model)
    from_identity = transfer_weights(identity, model)
    assert "emo_block3_layer1_conv1" in from_emotion.copied
    assert "emo_head_bn" in from_emotion.copied
    assert from_emotion.shape_mismatch == ["fc_emo"]  # 8 pretraining classes vs 7
    assert {"fusion_conv", "fc_id", "id_stem_conv"} <= set(from_emotion.not_in_source)
    assert "id_block2_layer1_conv2" in from_identity.copied
    assert not any(name.startswith("emo_") for name in from_identity.copied)
    pairs = [
        (emotion, "emo_block1_layer1_conv1"),
        (emotion, "emo_block3_layer1_bn2"),
        (identity, "id_transition2_conv"),
    ]
    for src, name in pairs:
        for a, b in zip(src.get_layer(name).get_weights(), model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="fc_emo"):
        transfer_weights(emotion, model, skip_mismatched=False)

    frozen = freeze_feature_groups(model)
    assert frozen and all(is_feature_group_layer(name) for name in frozen)
    assert {"emo_stem_conv", "id_transition2_bn", "emo_block2_layer1_conv2"} <= set(frozen)
    assert not any(name.startswith(("emo_block3", "fusion", "fc_")) for name in frozen)
    frozen_before = {n: [w.copy() for w in model.get_layer(n).get_weights()] for n in frozen}
    fusion_before = model.get_layer("fusion_conv").get_weights()[0].copy()
    _compile(model)
    model.fit(*_batch(4), batch_size=4, verbose=0)
    for name, weights in frozen_before.items():  # includes BN moving statistics
        for a, b in zip(weights, model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert not np.allclose(fusion_before, model.get_layer("fusion_conv").get_weights()[0])


def test_inference_model_has_one_output_matching_the_expression_head():
    model = build_idennet(_tiny("if"))
    infer = inference_model(model)
    assert len(infer.outputs) == 1 and len(infer.inputs) == 1
    assert infer.inputs[0].name == "image" and infer.input.shape == (None, 48, 48, 1)
    x, _ = _batch(2)
    np.testing.assert_allclose(
        _np(infer(x)), _np(model(x, training=False)["expression"]), rtol=1e-6
    )
    assert "fc_id" not in {layer.name for layer in infer.layers}


def test_save_load_keras_same_outputs(tmp_path):
    model = build_idennet(_tiny("if", alpha=0.2, gamma=4.0))
    model(_batch(4)[0], training=True)  # moves BN moving statistics off their init
    x, _ = _batch(3, seed=5)
    model.save(tmp_path / "idennet.keras")
    loaded = keras.saving.load_model(tmp_path / "idennet.keras")
    assert isinstance(loaded, IDEnNetTrainer)
    assert (loaded.alpha, loaded.gamma) == (0.2, 4.0)
    expected, actual = model(x, training=False), loaded(x, training=False)
    for key in ("expression", "identity"):
        np.testing.assert_allclose(_np(actual[key]), _np(expected[key]), rtol=1e-5, atol=1e-6)
    inference_model(model).save(tmp_path / "inference.keras")
    infer = keras.saving.load_model(tmp_path / "inference.keras")
    np.testing.assert_allclose(_np(infer(x)), _np(expected["expression"]), rtol=1e-5, atol=1e-6)


_JAX_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import keras
    from keras_fer.models.idennet import IDEnNetConfig, build_idennet
    config = IDEnNetConfig(variant="if", depth=16, layers_per_block=1, num_classes=7,
                           num_identities=5)
    model = build_idennet(config)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    rng = np.random.default_rng(0)
    x = rng.random((4, 48, 48, 1)).astype("float32")
    y = {"expression": rng.integers(0, 7, size=4), "identity": np.array([0, -1, 3, 4])}
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    print(json.dumps({"backend": keras.backend.backend(),
                      **{k: float(v[-1]) for k, v in history.items()}}))
    """
)


@pytest.mark.slow
def test_one_fit_step_jax_backend_subprocess():
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", _JAX_SCRIPT], env=env, capture_output=True, text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["backend"] == "jax"
    assert {"loss", "emo_loss", "id_loss", "accuracy"} <= set(metrics)
    assert np.isfinite(metrics["loss"]) and metrics["id_loss"] > 0
    assert metrics["loss"] == pytest.approx(metrics["emo_loss"] + metrics["id_loss"], rel=1e-5)


def test_step_schedule_divides_by_ten_at_half_and_three_quarters():
    schedule = step_schedule(0.1, total_steps=100)
    rates = {step: float(_np(schedule(step))) for step in (0, 49, 50, 74, 75, 99)}
    assert rates == pytest.approx({0: 0.1, 49: 0.1, 50: 0.01, 74: 0.01, 75: 0.001, 99: 0.001})
    with pytest.raises(ValueError, match="boundaries=.0.75, 0.5."):
        step_schedule(0.1, 100, boundaries=(0.75, 0.5))


def test_make_sgd_decays_weights_decoupled():
    optimizer = make_sgd(0.01, epochs=4, steps_per_epoch=10, weight_decay=1e-2)
    assert optimizer.momentum == 0.9 and optimizer.weight_decay == 1e-2
    assert float(_np(optimizer.learning_rate)) == pytest.approx(0.01)
    variable = keras.Variable(np.full((3,), 2.0, dtype="float32"))
    optimizer.apply_gradients([(keras.ops.zeros((3,)), variable)])
    # Zero gradient: only the decay acts, w <- w - lr * wd * w = 2 - 0.01 * 0.01 * 2 = 1.9998.
    np.testing.assert_allclose(_np(variable), 1.9998, rtol=1e-6)
    with pytest.raises(ValueError, match="epochs=0"):
        make_sgd(0.01, epochs=0, steps_per_epoch=10)


def test_make_sgd_clips_the_global_gradient_norm():
    optimizer = make_sgd(1.0, epochs=1, steps_per_epoch=10, weight_decay=0, global_clipnorm=1.0)
    a, b = keras.Variable(np.zeros((1,), "float32")), keras.Variable(np.zeros((1,), "float32"))
    # Gradients (30, 40) have global norm 50: clipped to (0.6, 0.8); the first momentum-SGD
    # step is w <- w - lr * g.
    optimizer.apply_gradients([(keras.ops.full((1,), 30.0), a), (keras.ops.full((1,), 40.0), b)])
    np.testing.assert_allclose([_np(a)[0], _np(b)[0]], [-0.6, -0.8], rtol=1e-6)
