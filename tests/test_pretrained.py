"""The committed pretrained weights (pretrained/) and the flagfile that starts from them."""

from pathlib import Path

import keras
import numpy as np
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
    with parsed_flags("idennet", f"--flagfile={REPO}/trainers/flagfiles/idennet_ckplus_ferplus.flags",
                       f"--model_dir={tmp_path}"):
        config = trainer.config_from_flags()
        variants = flags.FLAGS.variants
    assert (config.dataset, config.protocol, config.depth, config.folds) == (
        "ckplus48", "ck7", 40, 10)
    assert variants == ["original", "f", "if"] and config.val_fraction == 0
    assert (REPO / config.extra["emotion_init"]).resolve() == EMOTION.resolve()
    assert config.extra["fusion_init"] == "passthrough"
