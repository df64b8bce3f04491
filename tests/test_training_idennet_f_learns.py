"""IDEnNet F's fine-tuning (``IDEnNetMethod.fit_fold``, ResNet-18 emotion stream, pass-through
fusion init) trains the identity half of the fusion conv, and the model it returns for
evaluation is the fine-tuned F, not Original.

Why: on the GPU (CK+ 7, idennet_ckplus7_r18_face.flags) F scored exactly Original's accuracy
on all 10 folds. The pass-through init starts F exactly at the emotion stream (identity half
of ``fusion_conv`` at 0); this checks that, when the loss is not ~0, fine-tuning moves that
half off 0 and the evaluated model's predictions move with it, so an equal score means the
fine-tuning had (almost) no gradient, not a frozen or bypassed identity path.

Tiny: 16 random faces with random labels (loss ~ log 7), the identity DenseNet at one layer
per block, pretraining stages skipped by writing their ``final.weights.h5`` (``fit_stage``
then loads them), 2 fine-tuning steps per variant.
"""

import dataclasses

import keras
import numpy as np
import pytest

from keras_fer.data import preprocess
from keras_fer.data.experiments import FoldData
from keras_fer.models import idennet
from keras_fer.training.config import TrainConfig
from keras_fer.training.idennet import IDEnNetMethod

N, CLASSES, SUBJECTS = 16, 7, 4
# The stage-1 weights are written from uncompiled models (no optimizer variables to load).
pytestmark = pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")


def _fold() -> FoldData:
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (N, 60, 60), dtype=np.uint8)
    empty = np.zeros((0, 60, 60), np.uint8)
    return FoldData(
        fold=0, class_names=tuple(f"c{i}" for i in range(CLASSES)),
        x_train=faces, y_train=rng.integers(0, CLASSES, N), id_train=np.arange(N) % SUBJECTS,
        x_val=empty, y_val=np.zeros(0, int), id_val=np.zeros(0, int),
        x_test=rng.integers(0, 256, (8, 60, 60), dtype=np.uint8), y_test=np.zeros(8, int),
        train_subjects=[f"S{i}" for i in range(SUBJECTS)], test_subjects=["T"],
        num_identities=SUBJECTS)


def _write_pretrained_streams(method, config, data, fold_dir):
    """Both streams' stage-1 weights, as a finished ``fit_stage`` leaves them."""
    mcfg = method.model_config(config, data, None)
    keras.utils.set_random_seed(1)
    streams = {"pretrain_emotion": idennet.build_emotion_pretrain_model(mcfg),
               "pretrain_identity": idennet.build_identity_pretrain_model(
                   mcfg, data.num_identities)}
    for stage, model in streams.items():
        (fold_dir / stage).mkdir(parents=True)
        model.save_weights(str(fold_dir / stage / "final.weights.h5"))


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory):
    """``{variant: inference model}`` after F's and Original's fine-tuning from the same
    pretrained streams."""
    data = _fold()
    method = IDEnNetMethod()
    base = TrainConfig(method="idennet", variant="f", depth=16, epochs=1, pretrain_epochs=1,
                       batch_size=8, lr=0.01, val_fraction=0.0,
                       extra={"layers_per_block": 1, "identity": "densenet",
                              "emotion_backbone": "resnet18_std",
                              "fusion_init": "passthrough"})
    models = {}
    for variant in ("f", "original"):
        fold_dir = tmp_path_factory.mktemp(variant) / "fold_0"
        config = dataclasses.replace(base, variant=variant, model_dir=str(fold_dir.parent))
        _write_pretrained_streams(method, base, data, fold_dir)
        keras.utils.set_random_seed(0)
        models[variant] = method.fit_fold(data, config, fold_dir)
    return data, models


def _identity_half(model):
    kernel = model.get_layer("fusion_conv").get_weights()[0]
    return kernel[0, 0, kernel.shape[3]:, :]


def test_f_fine_tuning_moves_the_identity_half_of_the_passthrough_fusion_conv(fine_tuned):
    _, models = fine_tuned
    # The pass-through init leaves it at exactly 0; 2 SGD steps on a loss ~ log 7 move it.
    assert np.abs(_identity_half(models["f"])).max() > 1e-6


def test_evaluated_f_uses_the_identity_stream_and_differs_from_original(fine_tuned):
    data, models = fine_tuned
    f = models["f"]
    x = preprocess.to_model_input(data.x_test)
    probs = f.predict(x, verbose=0)
    assert "fusion_conv" in [layer.name for layer in f.layers]
    assert not any(layer.name == "fusion_conv" for layer in models["original"].layers)
    assert np.abs(probs - models["original"].predict(x, verbose=0)).max() > 1e-6
    # The identity path is live in the evaluated model: removing it changes the output.
    conv = f.get_layer("fusion_conv")
    kernel, bias = conv.get_weights()
    no_identity = kernel.copy()
    no_identity[0, 0, kernel.shape[3]:, :] = 0.0
    conv.set_weights([no_identity, bias])
    try:
        assert np.abs(probs - f.predict(x, verbose=0)).max() > 1e-6
    finally:
        conv.set_weights([kernel, bias])
