"""IF-GAN: G/D/E shapes, ablation, targets, losses, inference export, TF and JAX train steps."""

import math
from pathlib import Path

import keras
import numpy as np
import pytest

from jax_subprocess import jax_report
from keras_fer.evaluation.gan_plots import plot_attention_maps, plot_generation_grid
from keras_fer.layers.attention import SelfAttention2D
from keras_fer.losses.gan import discriminator_loss, generator_adversarial_loss, l1_loss
from keras_fer.models.ifgan import (
    IFGANConfig,
    average_identity_targets,
    build_classifier,
    build_expression_classifier,
    build_ifgan,
    build_inference_model,
    ifgan_optimizer,
    ifgan_targets,
    transfer_classifier_weights,
)
from keras_fer.models.patchgan import PatchGANConfig, build_patchgan
from keras_fer.models.unet import ATTENTION_LAYERS, UNetConfig, build_unet_generator

TINY = dict(generator_filters=8, discriminator_filters=8, classifier_filters=8, feature_dim=16)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _faces(n=4, seed=0):
    return np.random.default_rng(seed).random((n, 48, 48, 1), dtype=np.float32)


def test_generator_shapes_range_and_three_attention_modules():
    generator = build_unet_generator(UNetConfig(base_filters=8))
    attention = [layer for layer in generator.layers if isinstance(layer, SelfAttention2D)]
    assert ATTENTION_LAYERS == ("skip_attention", "encoder_attention", "decoder_attention")
    assert sorted(layer.name for layer in attention) == sorted(
        f"generator_{kind}" for kind in ATTENTION_LAYERS
    )
    # Skip attention at 24x24 (2f channels); encoder/decoder attention at 12x12 (4f).
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in attention}
    assert shapes["generator_skip_attention"] == (24, 24, 16)
    assert shapes["generator_encoder_attention"] == (12, 12, 32)
    assert shapes["generator_decoder_attention"] == (12, 12, 32)
    out = _np(generator(_faces()))
    assert out.shape == (4, 48, 48, 1)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_ablation_is_the_same_unet_without_attention():
    with_attention = build_unet_generator(UNetConfig(base_filters=8))
    ablation = build_unet_generator(UNetConfig(base_filters=8, use_attention=False))
    assert not any(isinstance(layer, SelfAttention2D) for layer in ablation.layers)
    attention_params = sum(
        layer.count_params()
        for layer in with_attention.layers
        if isinstance(layer, SelfAttention2D)
    )
    assert ablation.count_params() == with_attention.count_params() - attention_params
    # gamma = 0: at initialisation the attention modules are identities, so both
    # networks compute the same function once they share the other weights.
    for layer in ablation.layers:
        if layer.weights:
            layer.set_weights(with_attention.get_layer(layer.name).get_weights())
    x = _faces(2)
    np.testing.assert_allclose(_np(ablation(x)), _np(with_attention(x)), atol=1e-6)


def test_default_parameter_counts():
    # Golden counts catch silent architecture drift. The attention modules add, at 12x12 with
    # C = 128: q, k = 128*16 + 16 = 2064 each, v = 128*128 + 128 = 16512, gamma 1 -> 20641
    # (x2: encoder + decoder); at 24x24 with C = 64: 520 + 520 + 4160 + 1 = 5201.
    assert build_unet_generator().count_params() == 1_814_004
    assert build_unet_generator(UNetConfig(use_attention=False)).count_params() == (
        1_814_004 - 2 * 20_641 - 5_201
    )
    assert build_patchgan().count_params() == 167_713
    # The pair classifier differs from the baseline by the second input channel of the first
    # 3x3x32 convolution: 3 * 3 * 32 = 288 weights.
    assert build_expression_classifier(7).count_params() == 305_479
    assert build_classifier(7).count_params() == 305_479 - 288


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_patchgan_gives_patch_logits_for_a_pair(spectral_norm):
    discriminator = build_patchgan(PatchGANConfig(base_filters=8, spectral_norm=spectral_norm))
    logits = _np(discriminator([_faces(), _faces(seed=1)]))
    assert logits.shape == (4, 12, 12, 1)
    wrapped = [l for l in discriminator.layers if isinstance(l, keras.layers.SpectralNormalization)]
    assert bool(wrapped) == spectral_norm


def test_gan_losses_golden_values():
    zeros = np.zeros((2, 3, 3, 1), "float32")
    log2 = math.log(2.0)
    # BCE at logit 0: -log(sigmoid(0)) = -log(1 - sigmoid(0)) = log 2.
    assert float(_np(generator_adversarial_loss(zeros))) == pytest.approx(log2, rel=1e-6)
    assert float(_np(discriminator_loss(zeros, zeros))) == pytest.approx(2 * log2, rel=1e-6)
    # LSGAN: real 2 -> (2-1)^2 = 1, fake 3 -> 3^2 = 9; generator on fake 3 -> (3-1)^2 = 4.
    assert float(_np(discriminator_loss(zeros + 2, zeros + 3, "lsgan"))) == pytest.approx(10.0)
    assert float(_np(generator_adversarial_loss(zeros + 3, "lsgan"))) == pytest.approx(4.0)
    # L1: |[1, -2] - [0, 0]| mean = 1.5.
    assert float(_np(l1_loss(np.array([1.0, -2.0]), np.zeros(2)))) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="mode"):
        generator_adversarial_loss(zeros, "wgan")


def test_average_identity_targets_are_class_means():
    faces = np.zeros((4, 2, 2, 1), "float32")
    faces[:, 0, 0, 0] = [0.2, 0.4, 1.0, 0.6]
    labels = np.array([0, 0, 1, 2])
    targets = average_identity_targets(faces, labels, num_classes=3)
    assert targets.shape == (3, 2, 2, 1)
    np.testing.assert_allclose(targets[:, 0, 0, 0], [0.3, 1.0, 0.6], rtol=1e-6)
    with pytest.raises(ValueError, match=r"classes \[3\]"):
        average_identity_targets(faces, labels, num_classes=4)
    filled = average_identity_targets(faces, labels, num_classes=4, fill_missing=True)
    assert filled[3, 0, 0, 0] == pytest.approx(0.55)  # mean of all four faces
    y = ifgan_targets(labels, targets)
    assert y["expression"].dtype == np.int32
    np.testing.assert_array_equal(y["target"][:, 0, 0, 0], targets[labels, 0, 0, 0])


def test_optimizer_follows_the_paper_schedule():
    optimizer = ifgan_optimizer(steps_per_epoch=5)
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.weight_decay) == (0.9, 0.99, 1e-4)
    schedule = keras.optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"])
    assert float(_np(schedule(49))) == pytest.approx(1e-4)  # epoch 9
    assert float(_np(schedule(50))) == pytest.approx(0.9e-4)  # epoch 10
    assert float(_np(schedule(100))) == pytest.approx(0.81e-4)


def test_pretrained_baseline_transfers_into_the_pair_classifier():
    baseline = build_classifier(3, filters=8, feature_dim=16)
    assert baseline.input.name == "image" and baseline.output.shape == (None, 3)
    pair = build_expression_classifier(3, filters=8, feature_dim=16)
    copied = transfer_classifier_weights(baseline, pair)
    assert "classifier_block1_conv1" in copied and "classifier_logits" in copied
    x = _faces(2)
    pair_probs = _np(keras.ops.softmax(pair([x, x])["logits"]))
    np.testing.assert_allclose(pair_probs, baseline.predict(x, verbose=0), atol=1e-5)


def test_inference_model_is_one_functional_model_that_round_trips(tmp_path):
    gan = build_ifgan(IFGANConfig(num_classes=3, **TINY))
    model = build_inference_model(gan.generator, gan.classifier)
    assert [t.name for t in model.inputs] == ["image"]
    assert len(model.outputs) == 1 and model.output.shape == (None, 3)
    x = _faces()
    probs = model.predict(x, verbose=0)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probs, _np(gan(x)), atol=1e-6)
    path = tmp_path / "ifgan.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.predict(x, verbose=0), probs, atol=1e-6)


def test_wrapper_weights_round_trip_for_checkpoints(tmp_path):
    config = IFGANConfig(num_classes=3, **TINY)
    gan, fresh = build_ifgan(config), build_ifgan(config)
    path = tmp_path / "ifgan.weights.h5"
    gan.save_weights(path)
    fresh.load_weights(path)
    np.testing.assert_array_equal(_np(fresh.island.centres), _np(gan.island.centres))
    x = _faces(2)
    np.testing.assert_allclose(_np(fresh(x)), _np(gan(x)), atol=1e-6)


def test_compile_checks_optimizer_groups():
    gan = build_ifgan(IFGANConfig(num_classes=3, **TINY))
    shared = ifgan_optimizer()
    with pytest.raises(ValueError, match="own optimizer"):
        gan.compile(shared, shared, ifgan_optimizer())
    with pytest.raises(ValueError, match="one optimizer per variable group"):
        super(type(gan), gan).compile(optimizers={"generator": ifgan_optimizer()})


def test_plots_write_files(tmp_path):
    generator = build_unet_generator(UNetConfig(base_filters=8))
    generator.get_layer("generator_decoder_attention").gamma.assign(0.5)
    x = _faces(3)
    labels = np.array([0, 1, 1])
    targets = average_identity_targets(x, labels, 2)
    grid = plot_generation_grid(
        x, _np(generator(x)), labels, ["neutral", "happiness"], tmp_path / "grid.png", targets
    )
    maps = plot_attention_maps(generator, x[:2], [(16, 16), (32, 24)], tmp_path / "att.png")
    assert grid.stat().st_size > 0 and maps.stat().st_size > 0
    ablation = build_unet_generator(UNetConfig(base_filters=8, use_attention=False))
    with pytest.raises(ValueError, match="no SelfAttention2D"):
        plot_attention_maps(ablation, x[:1], [(0, 0)], tmp_path / "none.png")


def train_two_steps(export_dir: str | None = None) -> dict:
    """Builds a tiny IF-GAN, runs two ``fit`` steps on the current backend, reports changes.

    Shared by the in-process TensorFlow test and the JAX subprocess. With ``export_dir``
    the trained inference model and its predictions on the training faces are saved there.
    """
    keras.utils.set_random_seed(0)
    gan = build_ifgan(IFGANConfig(num_classes=3, **TINY))
    x = _faces()
    labels = np.array([0, 1, 2, 0])
    y = ifgan_targets(labels, average_identity_targets(x, labels, 3))
    gan.compile(ifgan_optimizer(1), ifgan_optimizer(1), ifgan_optimizer(1))
    parts = {
        "generator": gan.generator,
        "discriminator": gan.discriminator,
        "classifier": gan.classifier,
    }
    before = {name: [w.copy() for w in m.get_weights()] for name, m in parts.items()}
    centres = _np(gan.island.centres).copy()
    history = gan.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0).history
    unchanged = {}
    for name, model in parts.items():
        # Trainable weights only: moving statistics change even without an optimizer step.
        trainable = {id(v) for v in model.trainable_weights}
        unchanged[name] = sorted(
            v.path
            for v, old, new in zip(model.weights, before[name], model.get_weights())
            if id(v) in trainable and np.array_equal(old, new)
        )
    if export_dir:
        model = build_inference_model(gan.generator, gan.classifier)
        model.save(Path(export_dir) / "ifgan.keras")
        np.savez(Path(export_dir) / "predictions.npz", x=x, probs=model.predict(x, verbose=0))
    return {
        "backend": keras.backend.backend(),
        "logs": {k: float(v[-1]) for k, v in history.items()},
        "unchanged": unchanged,
        "centres_moved": float(np.abs(_np(gan.island.centres) - centres).max()),
        "iterations": [int(_np(o.iterations)) for o in gan.optimizer.by_group.values()],
    }


def _check_train_report(report: dict, backend: str) -> None:
    assert report["backend"] == backend
    assert set(report["logs"]) == {
        "g_loss", "d_loss", "e_loss", "adv_loss", "l1_loss", "ce_loss", "island_loss", "accuracy"
    }
    assert all(math.isfinite(v) for v in report["logs"].values()), report["logs"]
    # Every trainable variable of G, D and E moved. Two steps are needed for the attention
    # projections: with gamma = 0 their output is multiplied by 0, so on step one only gamma
    # gets a gradient.
    assert report["unchanged"] == {"generator": [], "discriminator": [], "classifier": []}
    assert report["centres_moved"] > 0
    assert report["iterations"] == [2, 2, 2]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow backend test")
@pytest.mark.slow
def test_train_step_tensorflow():
    _check_train_report(train_two_steps(), "tensorflow")


@pytest.mark.slow
def test_train_step_jax_in_subprocess_and_export_loads_here(tmp_path):
    """The GPU workflow: train on JAX, bring the .keras back, load it on this backend."""
    pytest.importorskip("jax")
    _check_train_report(jax_report("test_models_ifgan", "train_two_steps", tmp_path), "jax")
    saved = np.load(tmp_path / "predictions.npz")
    restored = keras.saving.load_model(tmp_path / "ifgan.keras")
    np.testing.assert_allclose(restored.predict(saved["x"], verbose=0), saved["probs"], atol=1e-5)


def test_a_classifier_of_other_classes_transfers_all_but_its_logits():
    """A FER+ baseline (8 classes) starts a CK+ (7-class) pair classifier and baseline."""
    fer = build_classifier(8, filters=8, feature_dim=16)
    pair = build_expression_classifier(7, filters=8, feature_dim=16)
    copied = transfer_classifier_weights(fer, pair)
    assert "classifier_block1_conv1" in copied and "classifier_logits" not in copied
    assert pair.get_layer("classifier_logits").get_weights()[0].shape[-1] == 7
    ck = build_classifier(7, filters=8, feature_dim=16)
    copied = transfer_classifier_weights(fer, ck)
    assert "classifier_logits" not in copied and len(copied) > 3
    for name in copied:
        for a, b in zip(fer.get_layer(name).get_weights(), ck.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
