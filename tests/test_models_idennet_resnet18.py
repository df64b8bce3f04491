"""IDEnNet with the standard ResNet-18 as its emotion stream (issue 20: every method from the
shipped FER+ backbone): the FER+ trunk moves in by name, F starts exactly where Original
starts, and the ResNet's group (stem, stages 1-3) is frozen while stage 4 (the fusion
block) trains."""

import keras
import numpy as np
import pytest

from keras_fer.models.idennet import (
    IDEnNetConfig,
    build_emotion_pretrain_model,
    build_idennet,
    build_identity_pretrain_model,
    freeze_feature_groups,
    inference_model,
    passthrough_fusion_conv,
    transfer_weights,
)
from keras_fer.models.transfer import init_from
from resnet18_source import TRUNK_LAYERS, make_source, trunk_features

NUM_CLASSES, NUM_IDS = 7, 5


def _config(variant):
    return IDEnNetConfig(variant=variant, depth=16, layers_per_block=1, num_classes=NUM_CLASSES,
                         num_identities=NUM_IDS if variant in ("i", "if") else None,
                         emotion_backbone="resnet18_std")


def _faces(n=4, seed=0):
    return np.random.default_rng(seed).random((n, 48, 48, 1)).astype("float32")


@pytest.fixture(scope="module")
def ferplus_resnet(tmp_path_factory):
    path = tmp_path_factory.mktemp("ferplus") / "ferplus_resnet18_std.keras"
    return make_source(path), str(path)  # FER+'s 8 classes, BN moved off its initial values


def test_emotion_stream_takes_the_ferplus_trunk_by_name_and_leaves_fc_emo(ferplus_resnet):
    source, path = ferplus_resnet
    emotion = build_emotion_pretrain_model(_config("original"))
    fc_before = [w.copy() for w in emotion.get_layer("fc_emo").get_weights()]
    report = init_from(emotion, path, "emotion stream")
    trunk = [layer.name for layer in source.layers
             if layer.weights and layer.name.startswith("resnet18_std_")]
    assert len(trunk) == TRUNK_LAYERS and sorted(report.copied) == sorted(trunk)
    assert report.unused_from_source == ["logits"]
    x = _faces()
    np.testing.assert_allclose(trunk_features(emotion).predict(x, verbose=0),
                               trunk_features(source).predict(x, verbose=0), atol=1e-5)
    for before, after in zip(fc_before, emotion.get_layer("fc_emo").get_weights()):
        np.testing.assert_array_equal(before, after)
    assert emotion.output_shape == (None, NUM_CLASSES)


def test_fused_model_starts_where_the_emotion_stream_ends_and_freezes_stages_1_to_3(
        ferplus_resnet):
    _, path = ferplus_resnet
    emotion = build_emotion_pretrain_model(_config("original"))
    init_from(emotion, path, "emotion stream")
    identity = build_identity_pretrain_model(_config("f"), NUM_IDS)
    # Identity-stream weights off their initial values, so a missed copy would show.
    rng = np.random.default_rng(1)
    identity.set_weights([w + 0.05 * rng.standard_normal(w.shape).astype("float32")
                          for w in identity.get_weights()])
    fused = build_idennet(_config("if"))
    transfer_weights(emotion, fused)
    transfer_weights(identity, fused)
    kernel = fused.get_layer("fusion_conv").get_weights()[0]
    assert kernel.shape[2:] == (256 + _config("f").group_channels, 256)
    passthrough_fusion_conv(fused)
    x = _faces(6, seed=3)
    want = emotion.predict(x, verbose=0)
    np.testing.assert_allclose(inference_model(fused).predict(x, verbose=0), want, atol=1e-5)
    assert fused.get_layer("identity").output.shape[-1] == NUM_IDS

    frozen = set(freeze_feature_groups(fused))
    resnet = {layer.name for layer in fused.layers if layer.name.startswith("resnet18_std_")
              and layer.weights}
    assert {n for n in resnet if n.startswith(("resnet18_std_stem", "resnet18_std_s1",
                                               "resnet18_std_s2", "resnet18_std_s3"))} <= frozen
    assert not {n for n in resnet if n.startswith("resnet18_std_s4")} & frozen
    assert "fusion_conv" not in frozen and "id_stem_conv" in frozen


def test_an_unknown_emotion_backbone_is_named():
    with pytest.raises(ValueError, match="emotion_backbone.*Received: emotion_backbone='vgg'"):
        IDEnNetConfig(variant="original", depth=16, num_classes=7, emotion_backbone="vgg")
