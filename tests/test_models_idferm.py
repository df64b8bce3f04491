"""IDFERM: HNG networks, losses and multi-optimizer steps; RML network, model and sampler.

The JAX checks run in one subprocess (``KERAS_BACKEND=jax``) because the backend is fixed
per process; everything else runs on the session's (TensorFlow) backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from jax_subprocess import jax_env
from keras_fer.losses.hng import (
    feature_extractor,
    identity_loss,
    identity_preservation_rate,
    laplacian,
    perceptual_loss,
    symmetry_loss,
)
from keras_fer.models import idferm
from keras_fer.models.hng_step import HNGModel

TINY_HNG = idferm.HNGConfig(
    image_size=16, latent_dim=8, encoder_filters=(4, 8), decoder_filters=(8, 4),
    discriminator_filters=(4,),
)  # fmt: skip
TINY_RML = idferm.RMLConfig(
    num_classes=3, stem_filters=4, group_filters=(4, 4), fc_units=8, connect_units=8,
    embedding_dim=6, metric_units=5,
)  # fmt: skip


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _scaled_features(scale: float, size: int = 4, name: str = "scaled") -> keras.Model:
    """A 1x1 convolution with weight ``scale``: features = scale * image."""
    inputs = keras.Input((size, size, 1))
    conv = keras.layers.Conv2D(1, 1, use_bias=False, name=f"{name}_conv")
    model = keras.Model(inputs, conv(inputs), name=name)
    conv.kernel.assign(np.full((1, 1, 1, 1), scale, dtype="float32"))
    return model


# ------------------------------------------------------------------------------------------
# HNG networks and losses
# ------------------------------------------------------------------------------------------


def test_hng_default_shapes():
    encoder = idferm.build_hng_encoder()
    decoder = idferm.build_hng_decoder()
    discriminator = idferm.build_hng_discriminator()
    assert encoder.input_shape == (None, 64, 64, 1)
    assert encoder.output_shape == (None, 256)
    assert decoder.output_shape == (None, 64, 64, 1)
    assert discriminator.output_shape == (None, 1)
    images = np.random.default_rng(0).random((2, 64, 64, 1)).astype("float32")
    generated = _np(decoder(encoder(images)))
    assert generated.min() >= 0.0 and generated.max() <= 1.0
    # LeakyReLU slope 0.1 everywhere (paper Sec. 5.3).
    slopes = {l.negative_slope for l in encoder.layers if isinstance(l, keras.layers.LeakyReLU)}
    assert slopes == {0.1}


def test_hng_golden_parameter_counts():
    # Encoder, 4x4 stride-2 convs + dense: 1->32: 16*1*32+32 = 544; 32->64: 16*32*64+64 = 32832;
    # 64->128: 131200; 128->256: 524544; dense 4*4*256 -> 256: 4096*256+256 = 1048832.
    assert idferm.build_hng_encoder().count_params() == 544 + 32832 + 131200 + 524544 + 1048832
    # Decoder: dense 256 -> 4*4*256: 256*4096+4096 = 1052672; deconvs 256->128: 524416;
    # 128->64: 131136; 64->32: 32800; 32->1: 16*32+1 = 513.
    assert idferm.build_hng_decoder().count_params() == 1052672 + 524416 + 131136 + 32800 + 513
    # Discriminator: 544 + 32832 + 131200 + dense 8*8*128 -> 1: 8193.
    assert idferm.build_hng_discriminator().count_params() == 544 + 32832 + 131200 + 8193


def test_hng_resize_decoder_has_no_transposed_convolutions():
    decoder = idferm.build_hng_decoder(idferm.HNGConfig(upsample="resize"))
    assert decoder.output_shape == (None, 64, 64, 1)
    kinds = {type(l).__name__ for l in decoder.layers}
    assert "Conv2DTranspose" not in kinds and {"UpSampling2D", "Conv2D"} <= kinds
    # the same projection; 3x3 convs 256->128: 9*256*128+128 = 295040; 128->64: 73792;
    # 64->32: 18464; 32->1: 9*32+1 = 289.
    assert decoder.count_params() == 1052672 + 295040 + 73792 + 18464 + 289
    out = _np(decoder(np.random.default_rng(0).random((2, 256)).astype("float32")))
    assert out.min() >= 0.0 and out.max() <= 1.0
    with pytest.raises(ValueError, match="'deconv' or 'resize'"):
        idferm.HNGConfig(upsample="nearest")


def test_hng_config_rejects_indivisible_size():
    with pytest.raises(ValueError, match="divisible"):
        idferm.HNGConfig(image_size=60, decoder_filters=(8, 8, 8))


def test_hng_resizing_round_trip_frame():
    # 60x60 aligned -> 64x64 HNG -> 48x48 model input; a constant image stays constant.
    aligned = np.full((2, 60, 60, 1), 0.25, dtype="float32")
    hng_in = _np(idferm.to_hng_input(aligned))
    assert hng_in.shape == (2, 64, 64, 1)
    model_in = _np(idferm.hng_to_model_input(hng_in))
    assert model_in.shape == (2, 48, 48, 1)
    np.testing.assert_allclose(model_in, 0.25, atol=1e-6)
    with pytest.raises(ValueError, match="size"):
        idferm.hng_to_model_input(hng_in, size=62)


def test_perceptual_loss_golden():
    # Features are 2x the image: mean((2a - 2b)^2) = 4 * mean((a - b)^2).
    a = np.zeros((1, 4, 4, 1), dtype="float32")
    b = np.full((1, 4, 4, 1), 0.5, dtype="float32")
    loss = perceptual_loss(_scaled_features(2.0), a, b)
    np.testing.assert_allclose(_np(loss), 4 * 0.25, rtol=1e-6)


def test_identity_loss_averages_the_last_two_layers():
    # Two outputs, 2x and 3x the image: (mean|2(a-b)| + mean|3(a-b)|) / 2 = 2.5 * 0.5.
    inputs = keras.Input((4, 4, 1))
    two = keras.layers.Conv2D(1, 1, use_bias=False, name="two")
    three = keras.layers.Conv2D(1, 1, use_bias=False, name="three")
    model = keras.Model(inputs, [two(inputs), three(inputs)])
    two.kernel.assign(np.full((1, 1, 1, 1), 2.0, dtype="float32"))
    three.kernel.assign(np.full((1, 1, 1, 1), 3.0, dtype="float32"))
    a = np.zeros((1, 4, 4, 1), dtype="float32")
    b = np.full((1, 4, 4, 1), 0.5, dtype="float32")
    np.testing.assert_allclose(_np(identity_loss(model, a, b)), 1.25, rtol=1e-6)


def test_symmetry_loss_golden():
    # One row [0.2, 0.6]: paper sums |0.2 - 0.6| over the left half and divides by H*W = 2.
    image = np.array([0.2, 0.6], dtype="float32").reshape(1, 1, 2, 1)
    np.testing.assert_allclose(_np(symmetry_loss(image)), 0.2, rtol=1e-6)
    mirror_symmetric = np.array([0.1, 0.7, 0.7, 0.1] * 4, dtype="float32").reshape(1, 4, 4, 1)
    assert float(_np(symmetry_loss(mirror_symmetric))) == 0.0
    laplacian_loss = float(_np(symmetry_loss(mirror_symmetric, use_laplacian=True)))
    assert laplacian_loss == pytest.approx(0.0, abs=1e-7)
    lopsided = np.array([0.0, 0.0, 0.0, 1.0] * 4, dtype="float32").reshape(1, 4, 4, 1)
    assert float(_np(symmetry_loss(lopsided, use_laplacian=True))) > 0.0


def test_laplacian_of_a_single_spike():
    image = np.zeros((1, 3, 3, 1), dtype="float32")
    image[0, 1, 1, 0] = 1.0
    expected = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype="float32")
    np.testing.assert_allclose(_np(laplacian(image))[0, :, :, 0], expected)


def test_feature_extractor_is_frozen_and_checks_names():
    model = _scaled_features(1.0, name="net")
    extractor = feature_extractor(model, ["net_conv"])
    assert not extractor.trainable and extractor.name == "net_features"
    with pytest.raises(ValueError, match="nope"):
        feature_extractor(model, ["nope"])


def test_identity_preservation_rate_hand_case():
    # Embedding = the 4 pixels. Cosine distances: same direction -> 0; orthogonal -> 1;
    # [1, 1, 0, 0] vs [1, 0, 0, 0] -> 1 - 1/sqrt(2) = 0.2929.
    model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten()])
    inputs = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]], dtype="float32")
    generated = np.array([[2, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]], dtype="float32")
    inputs, generated = inputs.reshape(3, 2, 2, 1), generated.reshape(3, 2, 2, 1)
    assert identity_preservation_rate(model, inputs, generated, 0.3) == pytest.approx(2 / 3)
    assert identity_preservation_rate(model, inputs, generated, 0.25) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="equal length"):
        identity_preservation_rate(model, inputs, generated[:2], 0.3)


# ------------------------------------------------------------------------------------------
# HNG training step (TensorFlow here, JAX in the subprocess below)
# ------------------------------------------------------------------------------------------


def _aux_net(name: str, size: int, two_outputs: bool = False) -> keras.Model:
    inputs = keras.Input((size, size, 1))
    conv = keras.layers.Conv2D(3, 3, name=f"{name}_conv")(inputs)
    dense = keras.layers.Dense(4, name=f"{name}_dense")(keras.layers.Flatten()(conv))
    return keras.Model(inputs, [conv, dense] if two_outputs else conv, name=name)


def _tiny_hng(**weights) -> HNGModel:
    return HNGModel(
        idferm.build_hng_encoder(TINY_HNG),
        idferm.build_hng_decoder(TINY_HNG),
        idferm.build_hng_discriminator(TINY_HNG),
        perceptual_model=_aux_net("expr", 16),
        # A 12x12 identity net exercises the resize-and-crop into its input frame.
        identity_model=_aux_net("ident", 12, two_outputs=True),
        **weights,
    )


def _fit_and_measure(hng: HNGModel, optimizer) -> tuple[dict, dict]:
    hng.compile(optimizer(), optimizer(), optimizer())
    rng = np.random.default_rng(0)
    x = rng.random((4, 16, 16, 1)).astype("float32")
    y = rng.random((4, 16, 16, 1)).astype("float32")
    before = {k: [_np(v).copy() for v in g] for k, g in hng.variable_groups().items()}
    history = hng.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    change = {
        k: max(float(np.abs(_np(v) - b).max()) for v, b in zip(g, before[k]))
        for k, g in hng.variable_groups().items()
    }
    return {k: v[-1] for k, v in history.items()}, change


def test_hng_tf_step_updates_all_three_networks():
    hng = _tiny_hng()
    logs, change = _fit_and_measure(hng, lambda: keras.optimizers.Adam(1e-3))
    assert set(logs) >= {"encoder_loss", "decoder_loss", "discriminator_loss", "symmetry_loss"}
    assert all(np.isfinite(v) for v in logs.values())
    assert change["encoder"] > 0 and change["decoder"] > 0 and change["discriminator"] > 0
    # Frozen auxiliary networks stay frozen and out of the optimisers' groups.
    assert not hng.perceptual_model.trainable_variables
    assert hng.generator.output_shape == (None, 16, 16, 1)


def test_hng_symmetry_and_adversarial_losses_do_not_reach_the_encoder_tf():
    hng = _tiny_hng(perceptual_weight=0.0, identity_weight=0.0, pixel_weight=0.0)
    logs, change = _fit_and_measure(hng, lambda: keras.optimizers.SGD(0.5))
    assert logs["symmetry_loss"] > 0 and logs["adversarial_loss"] > 0
    assert change["encoder"] == 0.0
    assert change["decoder"] > 0 and change["discriminator"] > 0


def test_hng_default_size_losses_with_48x48_auxiliary_nets():
    # The project's auxiliary nets take 48x48 crops; 64x64 HNG faces are brought to them.
    hng = HNGModel(
        idferm.build_hng_encoder(),
        idferm.build_hng_decoder(),
        idferm.build_hng_discriminator(),
        perceptual_model=_aux_net("expr48", 48),
        identity_model=_aux_net("ident48", 48, two_outputs=True),
    )
    images = np.random.default_rng(0).random((2, 64, 64, 1)).astype("float32")
    losses, logs = hng.compute_losses(images, images[::-1], training=False)
    assert set(losses) == {"encoder", "decoder", "discriminator"}
    assert all(np.isfinite(float(_np(v))) for v in logs.values())


def test_hng_rejects_negative_weights():
    with pytest.raises(ValueError, match="symmetry_weight"):
        _tiny_hng(symmetry_weight=-1.0)


# ------------------------------------------------------------------------------------------
# RML network, model, inference model and sampler
# ------------------------------------------------------------------------------------------


def _rml_batch():
    rng = np.random.default_rng(1)
    x = {
        "image": rng.random((6, 48, 48, 1)).astype("float32"),
        "reference": rng.random((6, 48, 48, 1)).astype("float32"),
    }
    return x, np.array([0, 0, 1, 1, 2, 2])


def test_rml_network_branches_and_inception_group():
    network = idferm.build_rml_network(TINY_RML)
    assert network.output["probabilities"].shape == (None, 3)
    assert network.output["embedding"].shape == (None, 6)
    group = network.get_layer("rml_group1_concat")
    assert group.output.shape[-1] == 3 * 4  # 1x1, 3x3 and 5x5 branches of 4 filters each
    assert network.get_layer("rml_connect").activation.__name__ == "linear"
    baseline = idferm.build_rml_network(idferm.RMLConfig(num_classes=3, use_rml=False))
    assert set(baseline.output) == {"probabilities"}


def test_rml_tf_fit_step_trains_metric_and_network():
    keras.utils.set_random_seed(0)
    model = idferm.build_rml(TINY_RML)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x, y = _rml_batch()
    kernel_before = _np(model.radial_metric.kernel).copy()
    logs = model.fit(x, y, batch_size=6, epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0]) and logs["rml_loss"][0] > 0
    np.testing.assert_allclose(
        logs["loss"][0], logs["softmax_loss"][0] + logs["rml_loss"][0], rtol=1e-5
    )
    assert np.abs(_np(model.radial_metric.kernel) - kernel_before).max() > 0


def test_rml_model_requires_references_when_training():
    model = idferm.build_rml(TINY_RML)
    model.compile(optimizer="adam")
    x, y = _rml_batch()
    with pytest.raises(ValueError, match="reference"):
        model.fit(x["image"], y, verbose=0)


def test_softmax_baseline_fits_on_images_alone():
    model = idferm.build_rml(
        idferm.RMLConfig(num_classes=3, stem_filters=4, group_filters=(4,), fc_units=8,
                         use_rml=False)  # fmt: skip
    )
    assert not model.use_rml and model.rml_weight == 0.0
    model.compile(optimizer="adam")
    x, y = _rml_batch()
    logs = model.fit(x["image"], y, verbose=0).history
    assert set(logs) == {"loss", "softmax_loss"} and np.isfinite(logs["loss"][0])


def test_inference_model_single_output_and_save_load(tmp_path):
    model = idferm.build_rml(TINY_RML)
    inference = idferm.inference_model(model)
    assert inference.input.name == "image"
    assert inference.output_shape == (None, 3)
    x, _ = _rml_batch()
    probs = _np(inference(x["image"]))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    path = tmp_path / "idferm.keras"
    inference.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(_np(restored(x["image"])), probs, atol=1e-6)


def test_rml_model_get_config_round_trip():
    model = idferm.build_rml(TINY_RML)
    clone = idferm.RMLModel.from_config(model.get_config())
    assert clone.num_classes == 3 and clone.rml_weight == 1.0 and clone.metric_units == 5
    assert [l.name for l in clone.network.layers] == [l.name for l in model.network.layers]


def test_per_class_batches_balanced_and_cover_every_sample():
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 2])
    batches = list(idferm.per_class_batches(labels, per_class=2, seed=3))
    assert len(batches) == 3  # ceil(5 / 2) for the largest class
    for batch in batches:
        assert list(labels[batch]) == [0, 0, 1, 1, 2, 2]
    assert set(np.concatenate(batches)) == set(range(len(labels)))
    again = list(idferm.per_class_batches(labels, per_class=2, seed=3))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    with pytest.raises(ValueError, match="per_class"):
        next(idferm.per_class_batches(labels, per_class=0))


# ------------------------------------------------------------------------------------------
# JAX backend: HNG stateless step (incl. encoder isolation) and RML compute_loss fit
# ------------------------------------------------------------------------------------------

_JAX_SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    import keras
    import numpy as np

    sys.path.insert(0, sys.argv[1])
    import test_models_idferm as t
    from keras_fer.models import idferm

    out = {"backend": keras.backend.backend()}
    out["hng"] = t._fit_and_measure(t._tiny_hng(), lambda: keras.optimizers.Adam(1e-3))
    isolated = t._tiny_hng(perceptual_weight=0.0, identity_weight=0.0, pixel_weight=0.0)
    out["isolated"] = t._fit_and_measure(isolated, lambda: keras.optimizers.SGD(0.5))

    model = idferm.build_rml(t.TINY_RML)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x, y = t._rml_batch()
    kernel = np.array(model.radial_metric.kernel)
    logs = model.fit(x, y, batch_size=6, epochs=1, verbose=0).history
    out["rml"] = {k: v[-1] for k, v in logs.items()}
    out["rml_kernel_change"] = float(np.abs(np.array(model.radial_metric.kernel) - kernel).max())
    print(json.dumps(out))
    """
)
# No keras.utils.set_random_seed in the script: it imports TensorFlow to seed it too, which
# costs seconds and is not needed (the assertions hold for any initialisation).


@pytest.fixture(scope="module")
def jax_results():
    proc = subprocess.run(
        [sys.executable, "-c", _JAX_SCRIPT, os.path.dirname(__file__)],
        capture_output=True,
        text=True,
        env=jax_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_hng_jax_step_updates_all_three_networks(jax_results):
    assert jax_results["backend"] == "jax"
    logs, change = jax_results["hng"]
    assert all(np.isfinite(v) for v in logs.values())
    assert change["encoder"] > 0 and change["decoder"] > 0 and change["discriminator"] > 0


@pytest.mark.slow
def test_hng_symmetry_and_adversarial_losses_do_not_reach_the_encoder_jax(jax_results):
    logs, change = jax_results["isolated"]
    assert logs["symmetry_loss"] > 0 and logs["adversarial_loss"] > 0
    assert change["encoder"] == 0.0
    assert change["decoder"] > 0 and change["discriminator"] > 0


@pytest.mark.slow
def test_rml_jax_fit_step(jax_results):
    logs = jax_results["rml"]
    assert np.isfinite(logs["loss"]) and logs["rml_loss"] > 0
    np.testing.assert_allclose(logs["loss"], logs["softmax_loss"] + logs["rml_loss"], rtol=1e-5)
    assert jax_results["rml_kernel_change"] > 0
