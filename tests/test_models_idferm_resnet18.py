"""IDFERM's RML network on the standard ResNet-18 trunk (``RMLConfig.trunk="resnet18_std"``).

The trunk is the shipped FER+ model's (``keras_fer.models.expression``, layers
``resnet18_std_*``), so ``transfer.init_from`` copies it by name into both the RML network
and its softmax baseline, and leaves the EC/ML heads as built. The source is
``resnet18_source.make_source``'s stand-in for the 20 MB FER+ file. The JAX check runs in a
subprocess (``KERAS_BACKEND=jax``), as in tests/test_models_idferm.py.
"""

from __future__ import annotations


import keras
import numpy as np
import pytest

from keras_fer.models import idferm
from keras_fer.models.transfer import init_from
from jax_subprocess import jax_report
from resnet18_source import TRUNK_LAYERS, make_source, trunk_features, trunk_weights

R18_RML = dict(num_classes=7, trunk="resnet18_std", fc_units=8, connect_units=8,
               embedding_dim=6, metric_units=5)


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("ferplus") / "ferplus_resnet18_std.keras"
    return path, make_source(path)


def test_resnet18_trunk_replaces_stem_and_groups_under_both_branches():
    network = idferm.build_rml_network(idferm.RMLConfig(**R18_RML))
    names = [layer.name for layer in network.layers]
    assert not [n for n in names if n.startswith(("rml_stem", "rml_group", "rml_flatten"))]
    assert network.get_layer("resnet18_std_pool").output.shape == (None, 512)
    assert network.get_layer("resnet18_std_s4b2_2_conv").kernel.shape == (3, 3, 512, 512)
    # The pooled 512-d feature feeds the EC and the ML branch, as ``features`` did.
    assert network.get_layer("rml_ec_fc1").kernel.shape == (512, 8)
    assert network.get_layer("rml_ml_fc1").kernel.shape == (512, 8)
    assert network.output["probabilities"].shape == (None, 7)
    assert network.output["embedding"].shape == (None, 6)
    baseline = idferm.build_rml_network(idferm.RMLConfig(**{**R18_RML, "use_rml": False}))
    assert set(baseline.output) == {"probabilities"}
    assert baseline.get_layer("rml_ec_fc1").kernel.shape == (512, 8)
    # The default stays the paper's inception trunk.
    assert idferm.RMLConfig().trunk == "inception"
    assert "rml_group1_concat" in [l.name for l in idferm.build_rml_network().layers]


def test_unknown_trunk_is_rejected():
    with pytest.raises(ValueError, match="`trunk` must be one of"):
        idferm.RMLConfig(trunk="resnet50")


@pytest.mark.parametrize("use_rml", [True, False])
def test_rml_init_copies_the_ferplus_trunk_and_leaves_the_heads(source, use_rml):
    path, src = source
    keras.utils.set_random_seed(1)
    model = idferm.build_rml(idferm.RMLConfig(**{**R18_RML, "use_rml": use_rml}))
    heads = ["rml_probabilities"] + (["rml_ml_embedding"] if use_rml else [])
    before = {n: [np.array(w) for w in model.network.get_layer(n).get_weights()]
              for n in heads + ["rml_ec_fc1"]}
    report = init_from(model.network, str(path), "RML network")
    expected = trunk_weights(src)
    assert sorted(report.copied) == sorted(expected) and len(expected) == TRUNK_LAYERS
    assert report.unused_from_source == ["logits"]
    for name, values in trunk_weights(model.network).items():
        for got, want in zip(values, expected[name]):
            np.testing.assert_array_equal(got, want)
    for name, values in before.items():  # heads and the fresh EC layer: as built
        for got, old in zip(model.network.get_layer(name).get_weights(), values):
            np.testing.assert_array_equal(got, old)
    x = np.random.default_rng(2).random((3, 48, 48, 1)).astype("float32")
    np.testing.assert_allclose(_np(trunk_features(model.network)(x)),
                               _np(trunk_features(src)(x)), rtol=1e-5, atol=1e-5)


def test_inception_network_refuses_the_resnet18_source(source):
    path, _ = source
    network = idferm.build_rml_network(idferm.RMLConfig(num_classes=7, stem_filters=4,
                                                        group_filters=(4,), fc_units=8))
    with pytest.raises(ValueError, match="No layer of"):
        init_from(network, str(path), "RML network")


def _rml_batch(n_per_class: int = 2, classes: int = 7, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = n_per_class * classes
    x = {"image": rng.random((n, 48, 48, 1)).astype("float32"),
         "reference": rng.random((n, 48, 48, 1)).astype("float32")}
    return x, np.repeat(np.arange(classes), n_per_class)


def fit_step_report(source_path: str) -> dict:
    """rml_init from ``source_path`` then one joint-loss fit step on this backend."""
    model = idferm.build_rml(idferm.RMLConfig(**R18_RML))
    report = init_from(model.network, source_path, "RML network")
    src = keras.saving.load_model(source_path)
    equal = all(np.array_equal(a, b) for name, values in trunk_weights(src).items()
                for a, b in zip(values, model.network.get_layer(name).get_weights()))
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    x, y = _rml_batch()
    kernel = np.array(model.network.get_layer("resnet18_std_stem_conv").kernel)
    logs = model.fit(x, y, batch_size=len(y), epochs=1, verbose=0).history
    moved = np.abs(np.array(model.network.get_layer("resnet18_std_stem_conv").kernel) - kernel)
    return {"backend": keras.backend.backend(), "copied": len(report.copied), "equal": equal,
            "logs": {k: float(v[-1]) for k, v in logs.items()},
            "trunk_moved": float(moved.max())}


def _check_fit_report(out: dict, backend: str) -> None:
    assert out["backend"] == backend
    assert out["copied"] == TRUNK_LAYERS and out["equal"]
    logs = out["logs"]
    assert np.isfinite(logs["loss"]) and logs["rml_loss"] > 0
    np.testing.assert_allclose(logs["loss"], logs["softmax_loss"] + logs["rml_loss"], rtol=1e-5)
    assert out["trunk_moved"] > 0


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow backend test")
def test_resnet18_rml_fit_step_tensorflow(source):
    _check_fit_report(fit_step_report(str(source[0])), "tensorflow")


@pytest.mark.slow
def test_resnet18_rml_fit_step_jax(source):
    pytest.importorskip("jax")
    _check_fit_report(jax_report("test_models_idferm_resnet18", "fit_step_report", source[0]),
                      "jax")
