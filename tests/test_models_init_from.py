"""Starting a network from pretrained weights (``init_from``): the shared helper and the
trainers' ``--extra`` keys that use it (TFE-JL ``resnet_init``, IDFERM ``rml_init``)."""

from types import SimpleNamespace

import keras
import numpy as np
import pytest

from keras_fer.models import idferm
from keras_fer.models.resnet import build_resnet
from keras_fer.models.transfer import init_from
from keras_fer.training.config import TrainConfig
from keras_fer.training.idferm import IDFERMMethod
from keras_fer.training.tfe import TFEMethod

SEVEN_CLASSES = SimpleNamespace(num_classes=7)


def _saved(model, tmp_path):
    path = tmp_path / "source.keras"
    model.save(path)
    return str(path)


def _equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_init_from_copies_the_body_and_skips_an_other_sized_head(tmp_path, capsys):
    source = build_resnet(12, 8, name="resnet")  # FER+: 8 classes
    destination = build_resnet(12, 7, name="resnet")  # CK+: 7
    report = init_from(destination, _saved(source, tmp_path), "ResNet")
    assert report.skipped == ["resnet_predictions"]  # the 8-class head, left as built
    assert report.shape_mismatch == []
    convs = [layer.name for layer in destination.layers if "conv" in layer.name]
    assert convs and set(convs) <= set(report.copied)
    for name in report.copied:
        assert _equal(source.get_layer(name), destination.get_layer(name)), name
    assert destination.get_layer("resnet_predictions").get_weights()[0].shape[-1] == 7
    assert "ResNet initialised from" in capsys.readouterr().out


def test_init_from_nothing_is_a_no_op_and_another_architecture_an_error(tmp_path):
    destination = build_resnet(12, 7, name="resnet")
    before = [w.copy() for w in destination.get_weights()]
    assert init_from(destination, None, "ResNet") is None
    assert init_from(destination, "", "ResNet") is None
    assert all(np.array_equal(a, b) for a, b in zip(before, destination.get_weights()))
    other = build_resnet(12, 7, name="other")  # every layer named other_*
    with pytest.raises(ValueError, match="No layer of .* matches the ResNet"):
        init_from(destination, _saved(other, tmp_path), "ResNet")


def test_tfe_resnet_init_starts_the_emotion_resnet_from_the_file(tmp_path):
    source = build_resnet(12, 8, name="resnet")
    config = TrainConfig(method="tfe", depth=12, model_dir=str(tmp_path),
                         extra={"resnet_init": _saved(source, tmp_path)})
    resnet = TFEMethod.build_resnet(config, SEVEN_CLASSES)
    assert resnet.output_shape[-1] == 7
    body = [layer for layer in resnet.layers
            if layer.weights and layer.name != "resnet_predictions"]
    assert body and all(_equal(layer, source.get_layer(layer.name)) for layer in body)
    fresh = TFEMethod.build_resnet(TrainConfig(method="tfe", depth=12), SEVEN_CLASSES)
    assert not _equal(fresh.get_layer(body[0].name), source.get_layer(body[0].name))


def test_idferm_rml_init_starts_the_conv_groups_and_ec_branch_from_a_baseline(tmp_path):
    """A FER+ baseline run's inference model (no ML branch) initialises the RML network."""
    baseline = idferm.build_rml(idferm.RMLConfig(num_classes=8, use_rml=False))
    path = _saved(idferm.inference_model(baseline), tmp_path)
    config = TrainConfig(method="idferm", variant="rml", model_dir=str(tmp_path),
                         extra={"rml_init": path})
    model = IDFERMMethod().build_rml(config, SEVEN_CLASSES)
    network = model.network
    shared = [layer for layer in network.layers
              if layer.weights and layer.name in {lay.name for lay in baseline.network.layers}]
    copied = [layer for layer in shared if "probabilities" not in layer.name]
    assert len(copied) > 10
    for layer in copied:
        assert _equal(layer, baseline.network.get_layer(layer.name)), layer.name
    # The ML branch is not in a baseline: it starts fresh; the 7-class head too.
    assert any(layer.name.startswith("rml_ml_") for layer in network.layers if layer.weights)
    assert network.get_layer("rml_probabilities").get_weights()[0].shape[-1] == 7


def test_tfe_resnet_init_never_copies_the_head_even_with_eight_classes(tmp_path):
    """FER+'s 8 classes and CK+ 8's have the same shape but not the same meaning: the FER+
    head must not become the CK+ 8 baseline's head (both emotion backbones)."""
    from keras_fer.models.expression import build_expression_model

    eight = SimpleNamespace(num_classes=8)
    for backbone, head, source in (
            ("resnet", "resnet_predictions", build_resnet(12, 8, name="resnet")),
            ("resnet18_std", "logits", build_expression_model("resnet18_std", 8, weights=None))):
        config = TrainConfig(method="tfe", depth=12, model_dir=str(tmp_path),
                             extra={"resnet_init": _saved(source, tmp_path),
                                    "emotion_backbone": backbone, "identity": "deepid"})
        resnet = TFEMethod.build_resnet(config, eight)
        assert resnet.get_layer(head).get_weights()[0].shape == \
            source.get_layer(head).get_weights()[0].shape
        assert not _equal(resnet.get_layer(head), source.get_layer(head)), backbone
        body = [layer for layer in resnet.layers if layer.weights and layer.name != head]
        assert all(_equal(layer, source.get_layer(layer.name)) for layer in body), backbone


def test_init_from_leaves_a_same_sized_head_as_built(tmp_path):
    # FER+ (8 classes) -> CK+ 8 classes: same shape, other class order; the head stays fresh.
    source = build_resnet(12, 8, name="resnet")
    destination = build_resnet(12, 8, name="resnet")
    head_before = [w.copy() for w in destination.get_layer("resnet_predictions").get_weights()]
    report = init_from(destination, _saved(source, tmp_path), "ResNet")
    assert report.skipped == ["resnet_predictions"] and "resnet_predictions" not in report.copied
    for before, after in zip(head_before,
                             destination.get_layer("resnet_predictions").get_weights()):
        np.testing.assert_array_equal(before, after)
    assert not _equal(source.get_layer("resnet_predictions"),
                      destination.get_layer("resnet_predictions"))
    body = [name for name in report.copied if "conv" in name]
    assert body and all(_equal(source.get_layer(n), destination.get_layer(n)) for n in body)


def test_output_heads_names_each_dense_output_layer():
    from keras_fer.models.transfer import output_heads

    assert output_heads(build_resnet(12, 7, name="resnet")) == ("resnet_predictions",)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="hidden")(inputs)
    logits = keras.layers.Dense(2, name="logits")(hidden)
    probs = keras.layers.Activation("softmax", name="probs")(logits)
    embedding = keras.layers.Dense(5, name="embedding")(hidden)
    assert output_heads(keras.Model(inputs, [probs, embedding])) == ("logits", "embedding")
