"""The committed pretrained weights (pretrained/) and the flagfile that starts from them."""

import json
from pathlib import Path
from typing import Callable, NamedTuple

import keras
import numpy as np
import pytest
from absl import flags

from keras_fer.models import idennet
from keras_fer.models.transfer import init_from
from trainers import idennet as trainer
from flag_helpers import parsed_flags

REPO = Path(__file__).resolve().parents[1]
EMOTION = REPO / "pretrained" / "ferplus_emotion_idennet40.keras"


def test_ferplus_emotion_stream_initialises_a_ckplus_depth40_stream(capsys):
    source = keras.saving.load_model(EMOTION, compile=False)
    assert source.output_shape[-1] == 8  # FER+ majority vote, 8 classes
    config = idennet.IDEnNetConfig(variant="original", depth=40, num_classes=7)
    model = idennet.build_emotion_pretrain_model(config)
    init_from(model, str(EMOTION), "emotion stream")
    assert "emotion stream initialised from" in capsys.readouterr().out
    # Every conv of the stream carries the FER+ weights; the 8-class head is not copied.
    convs = [layer for layer in source.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) > 30
    for layer in convs:
        for a, b in zip(layer.get_weights(), model.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert model.output_shape[-1] == 7


def test_flagfile_points_at_the_committed_stream(tmp_path):
    with parsed_flags("idennet",
                      f"--flagfile={REPO}/trainers/flagfiles/idennet_ckplus_ferplus.flags",
                      f"--model_dir={tmp_path}"):
        config = trainer.config_from_flags()
        variants = flags.FLAGS.variants
    assert (config.dataset, config.protocol, config.depth, config.folds) == (
        "ckplus48", "ck7", 40, 10)
    assert variants == ["original", "f", "if"] and config.val_fraction == 0
    assert (REPO / config.extra["emotion_init"]).resolve() == EMOTION.resolve()
    assert config.extra["fusion_init"] == "passthrough"


# The FER+ baselines of the other three methods (pretrained/README.md), by file name.
class Backbone(NamedTuple):
    build: Callable[[], keras.Model]  # the CK+ 7-class model it initialises
    transfer: Callable  # (target, path, what): how the method's trainer copies it in
    extra_key: str  # the --extra key that names it
    flagfiles: tuple  # the CK+ flagfiles that start from it
    run: str  # its FER+ run under benchmarks/results/gpu


def _tfe_resnet():
    from keras_fer.models import tfe
    from keras_fer.models.resnet import build_resnet

    return build_resnet(12, 7, name=tfe.RESNET_PREFIX)


def _idferm_rml():
    from keras_fer.models import idferm as idferm_models

    return idferm_models.build_rml(idferm_models.RMLConfig(num_classes=7)).network


def _ifgan_classifier():
    from keras_fer.models import ifgan

    return ifgan.build_classifier(7)


def _init(target, path, what):
    init_from(target, str(path), what)


def _ifgan_transfer(target, path, what):
    from keras_fer.models import ifgan
    from keras_fer.models.loading import load_model

    assert ifgan.transfer_classifier_weights(load_model(path), target)


BACKBONES = {
    "ferplus_tfe_resnet12.keras": Backbone(_tfe_resnet, _init, "resnet_init",
                                           ("tfe_ckplus7_ferplus", "tfe_ckplus8_ferplus"),
                                           "ferplus_tfe_r12"),
    "ferplus_idferm_rml.keras": Backbone(_idferm_rml, _init, "rml_init",
                                         ("idferm_ckplus7_ferplus", "idferm_ckplus8_ferplus"),
                                         "ferplus_idferm"),
    "ferplus_ifgan_classifier.keras": Backbone(_ifgan_classifier, _ifgan_transfer,
                                               "classifier_weights", ("ifgan_ckplus_ferplus",),
                                               "ferplus_ifgan"),
}


def _load(name):
    from keras_fer.models.loading import load_model

    return load_model(REPO / "pretrained" / name)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_ferplus_backbone_fills_every_layer_but_the_head_of_a_ckplus_model(name):
    backbone = BACKBONES[name]
    source = _load(name)
    assert source.input_shape == (None, 48, 48, 1) and source.output_shape == (None, 8)
    target = backbone.build()
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in target.layers}
    backbone.transfer(target, REPO / "pretrained" / name, name)
    names = {layer.name for layer in source.layers}
    copied, fresh = [], []
    for layer in target.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        theirs = source.get_layer(layer.name).get_weights() if layer.name in names else None
        if theirs is not None and [a.shape for a in theirs] == [b.shape for b in weights]:
            for a, b in zip(theirs, weights):
                np.testing.assert_array_equal(a, b, err_msg=f"{name}: {layer.name} not copied")
            copied.append(layer.name)
        else:  # the head (8 FER+ classes there, 7 here) and layers FER+ runs do not have
            for a, b in zip(before[layer.name], weights):
                np.testing.assert_array_equal(a, b, err_msg=f"{name}: {layer.name} changed")
            fresh.append(layer)
    assert len(copied) >= 5, copied
    head = [layer for layer in target.layers if layer.get_weights()][-1]
    assert head in fresh and head.get_weights()[0].shape[-1] == 7


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_ferplus_backbone_recognises_ferplus_test_faces(name, ferplus_dir):
    """The committed weights classify real FER+ Test faces about as well as their run said
    (71-79% on all 3,545 faces; 8 classes, chance is about 12.5%, the majority class ~35%)."""
    from keras_fer.data.preprocess import to_model_input
    from keras_fer.data.experiments import fold_indices, load_experiment, make_fold

    exp = load_experiment("ferplus", ferplus_dir.parent.parent, "ferplus8", limit=200)
    data = make_fold(exp, 0, fold_indices(exp, 1, 0, 0.0)[0])
    model = _load(name)
    probs = model.predict(to_model_input(data.x_test), verbose=0)
    accuracy = 100 * np.mean(probs.argmax(1) == data.y_test)
    reported = json.loads((REPO / "benchmarks" / "results" / "gpu" / BACKBONES[name].run
                           / "baseline" / "results.json").read_text())["mean_accuracy"]
    # Faces whose top crowd vote is unknown / not a face are dropped from the 200 read.
    assert 150 <= len(data.y_test) <= 200
    assert accuracy >= 60 and abs(accuracy - reported) <= 10, (name, accuracy, reported)


@pytest.mark.parametrize("flagfile,name", [(f, n) for n, b in sorted(BACKBONES.items())
                                           for f in b.flagfiles])
def test_ckplus_flagfiles_start_from_the_committed_backbone(flagfile, name, tmp_path):
    import importlib

    method = flagfile.split("_")[0]
    module = importlib.import_module(f"trainers.{method}")
    with parsed_flags(method, f"--flagfile={REPO}/trainers/flagfiles/{flagfile}.flags",
                      f"--model_dir={tmp_path}"):
        config = module.config_from_flags()
    eight = "ckplus8" in flagfile
    assert (config.dataset, config.protocol, config.folds, config.val_fraction) == (
        "ckplus_neutral" if eight else "ckplus48", "ck8" if eight else "ck7", 10, 0)
    key = BACKBONES[name].extra_key
    assert (REPO / config.extra[key]).resolve() == (REPO / "pretrained" / name).resolve()
