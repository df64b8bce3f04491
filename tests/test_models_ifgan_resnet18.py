"""IF-GAN's E and baseline on the standard ResNet-18 (``classifier_backbone="resnet18_std"``).

E keeps its contract (``{name}_features`` Dense: the island-loss space; ``{name}_logits``)
on the FER+ model's trunk (layers ``resnet18_std_*``), so ``transfer_classifier_weights``
copies that trunk by name from the FER+ ResNet-18 (here ``resnet18_source.make_source``'s
stand-in for the 20 MB file), splitting its first convolution onto E's two input channels.
TensorFlow in process, JAX in a subprocess, as in tests/test_models_ifgan.py.
"""

import math

import keras
import numpy as np
import pytest

from keras_fer.models.ifgan import (
    IFGANConfig,
    average_identity_targets,
    build_classifier,
    build_expression_classifier,
    build_ifgan,
    ifgan_optimizer,
    ifgan_targets,
    transfer_classifier_weights,
)
from jax_subprocess import jax_report
from resnet18_source import TRUNK_LAYERS, make_source, trunk_features, trunk_weights

TINY_GD = dict(generator_filters=8, discriminator_filters=8, feature_dim=16)
STEM = "resnet18_std_stem_conv"


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _faces(n=3, seed=0):
    return np.random.default_rng(seed).random((n, 48, 48, 1), dtype=np.float32)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("ferplus") / "ferplus_resnet18_std.keras"
    return path, make_source(path)


def test_resnet18_backbone_keeps_the_feature_and_logits_contract():
    pair = build_expression_classifier(7, feature_dim=16, backbone="resnet18_std")
    assert pair.output["features"].shape == (None, 16)
    assert pair.output["logits"].shape == (None, 7)
    assert pair.get_layer(STEM).kernel.shape == (3, 3, 2, 64)  # the pair's two channels
    assert pair.get_layer("classifier_features").kernel.shape == (512, 16)
    assert pair.get_layer("classifier_logits").kernel.shape == (16, 7)
    assert not [l.name for l in pair.layers if l.name.startswith("classifier_block")]
    assert len(trunk_weights(pair)) == TRUNK_LAYERS
    baseline = build_classifier(7, feature_dim=16, backbone="resnet18_std")
    assert baseline.input.name == "image" and baseline.output.shape == (None, 7)
    assert baseline.get_layer(STEM).kernel.shape == (3, 3, 1, 64)
    assert baseline.get_layer("classifier_features").output.shape == (None, 16)
    gan = build_ifgan(IFGANConfig(num_classes=7, classifier_backbone="resnet18_std", **TINY_GD))
    assert gan.classifier.get_layer(STEM).kernel.shape == (3, 3, 2, 64)
    assert IFGANConfig(num_classes=7).classifier_backbone == "compact"


def test_unknown_backbone_is_rejected():
    with pytest.raises(ValueError, match="classifier_backbone must be one of"):
        IFGANConfig(num_classes=7, classifier_backbone="resnet101")
    with pytest.raises(ValueError, match="classifier_backbone must be one of"):
        build_classifier(7, backbone="vgg")


def test_ferplus_resnet18_trunk_moves_into_e_with_its_first_conv_split(source):
    path, _ = source
    src = keras.saving.load_model(path)  # as the trainer loads classifier_weights
    keras.utils.set_random_seed(3)
    pair = build_expression_classifier(7, feature_dim=16, backbone="resnet18_std")
    heads = {n: [np.array(w) for w in pair.get_layer(n).get_weights()]
             for n in ("classifier_features", "classifier_logits")}
    copied = transfer_classifier_weights(src, pair)
    want = trunk_weights(src)
    assert sorted(copied) == sorted(want)
    for name, values in trunk_weights(pair).items():
        if name == STEM:
            kernel = values[0]
            np.testing.assert_array_equal(kernel[:, :, :1], kernel[:, :, 1:])
            np.testing.assert_allclose(kernel.sum(axis=2, keepdims=True), want[name][0],
                                       rtol=1e-6)
            np.testing.assert_array_equal(kernel[:, :, :1], want[name][0] / 2)
            continue
        for got, expected in zip(values, want[name]):
            np.testing.assert_array_equal(got, expected)
    for name, values in heads.items():  # E's own feature and logits layers: as built
        for got, old in zip(pair.get_layer(name).get_weights(), values):
            np.testing.assert_array_equal(got, old)
    x = _faces()
    pair_trunk = trunk_features(pair)([x, x])
    np.testing.assert_allclose(_np(pair_trunk), _np(trunk_features(src)(x)), rtol=1e-4,
                               atol=1e-5)


def test_ferplus_resnet18_trunk_moves_into_the_baseline_unchanged(source):
    path, src = source
    baseline = build_classifier(7, feature_dim=16, backbone="resnet18_std")
    logits = [np.array(w) for w in baseline.get_layer("classifier_logits").get_weights()]
    copied = transfer_classifier_weights(keras.saving.load_model(path), baseline)
    assert sorted(copied) == sorted(trunk_weights(src))
    for name, values in trunk_weights(src).items():
        for got, expected in zip(baseline.get_layer(name).get_weights(), values):
            np.testing.assert_array_equal(got, expected)
    for got, old in zip(baseline.get_layer("classifier_logits").get_weights(), logits):
        np.testing.assert_array_equal(got, old)
    x = _faces()
    np.testing.assert_allclose(_np(trunk_features(baseline)(x)), _np(trunk_features(src)(x)),
                               rtol=1e-5, atol=1e-5)


def test_compact_e_takes_nothing_from_the_resnet18(source):
    path, _ = source
    pair = build_expression_classifier(7, filters=8, feature_dim=16)
    assert transfer_classifier_weights(keras.saving.load_model(path), pair) == []


def train_r18_steps(source_path: str) -> dict:
    """IF-GAN with the ResNet-18 E from ``source_path``: two fit steps on this backend."""
    keras.utils.set_random_seed(0)
    gan = build_ifgan(IFGANConfig(num_classes=3, classifier_backbone="resnet18_std", **TINY_GD))
    copied = transfer_classifier_weights(keras.saving.load_model(source_path), gan.classifier)
    x = _faces(4)
    labels = np.array([0, 1, 2, 0])
    y = ifgan_targets(labels, average_identity_targets(x, labels, 3))
    gan.compile(ifgan_optimizer(1), ifgan_optimizer(1), ifgan_optimizer(1))
    stem = np.array(gan.classifier.get_layer(STEM).kernel)
    features = np.array(gan.classifier.get_layer("classifier_features").kernel)
    history = gan.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0).history
    moved = lambda name, old: float(  # noqa: E731
        np.abs(np.array(gan.classifier.get_layer(name).kernel) - old).max())
    return {"backend": keras.backend.backend(), "copied": len(copied),
            "logs": {k: float(v[-1]) for k, v in history.items()},
            "stem_moved": moved(STEM, stem),
            "features_moved": moved("classifier_features", features)}


def _check_r18_report(report: dict, backend: str) -> None:
    assert report["backend"] == backend and report["copied"] == TRUNK_LAYERS
    assert all(math.isfinite(v) for v in report["logs"].values()), report["logs"]
    assert report["logs"]["island_loss"] >= 0 and report["logs"]["ce_loss"] > 0
    assert report["stem_moved"] > 0 and report["features_moved"] > 0


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow backend test")
def test_resnet18_e_train_step_tensorflow(source):
    _check_r18_report(train_r18_steps(str(source[0])), "tensorflow")


@pytest.mark.slow
def test_resnet18_e_train_step_jax(source):
    pytest.importorskip("jax")
    _check_r18_report(jax_report("test_models_ifgan_resnet18", "train_r18_steps", source[0]),
                      "jax")
