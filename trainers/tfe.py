"""Trains and evaluates TFE-JL (``--variant=tfe``) or its ResNet-only baseline on one protocol.

Quick start (synthetic faces, one fold, a few minutes on a laptop CPU):

    python -m trainers.tfe --flagfile=trainers/flagfiles/tfe_quickstart.flags

CK+ 7 classes / CK+ 8 classes (neutral first frames added) / FER+, and the baseline on the
same folds and budget:

    python -m trainers.tfe --flagfile=trainers/flagfiles/tfe_ckplus7.flags
    python -m trainers.tfe --flagfile=trainers/flagfiles/tfe_ckplus8.flags
    python -m trainers.tfe --flagfile=trainers/flagfiles/tfe_ferplus.flags
    python -m trainers.tfe --flagfile=trainers/flagfiles/tfe_ckplus7.flags --variant=baseline \\
        --model_dir=runs/tfe_ckplus7_baseline

Any flag after ``--flagfile`` overrides the file. ``--depth`` is the ResNet depth, 12 or 18
(default: 18 on FER+/FER2013, 12 otherwise); ``--pretrain_lr`` the ResNet pretraining rate
and ``--lr`` the joint-learning rate of the ResNet and tandem layers (defaults: the paper's,
0.16 / 0.16 on CK+, 0.1 / 0.001 on FER+). The identity network is dlib's face ResNet
(fine-tuned at ``deepid_lr``); ``--extra='{"identity": "deepid"}'`` takes the small DeepID
trained on the fold's subjects plus ORL instead. Identity settings go in ``--extra`` (see
:class:`keras_fer.training.tfe.TFEMethod`), e.g. ``--extra='{"deepid_lr": 0.001}'``.

Writes ``config.json``, per-fold stage folders (``pretrain_deepid``, ``pretrain_resnet``,
``joint`` or ``finetune``), ``fold_<k>/verification.json`` and ``verification.json`` (the
identity feature's verification rate on held-out identities), ``results.json``,
``confusion_matrix.png``, ``per_class_accuracy.png`` and, with ``--export``, the deployable
models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from absl import app, flags

from trainers import common

if TYPE_CHECKING:
    from keras_fer.training.config import TrainConfig
    from keras_fer.data.experiments import Experiment

FER_DATASETS = ("ferplus", "fer2013")


def config_from_flags() -> TrainConfig:
    """The run's ``TrainConfig`` from the parsed flags, with TFE-JL's defaults.

    Raises:
        app.UsageError: ``--depth`` other than 12 or 18.
    """
    fer = flags.FLAGS.dataset in FER_DATASETS
    depth = flags.FLAGS.depth if flags.FLAGS["depth"].present else (18 if fer else 12)
    if depth not in (12, 18):
        raise app.UsageError(f"--depth must be 12 or 18 for TFE-JL's ResNet. Received: {depth}")
    return common.train_config("tfe", default_variant="tfe",
                               default_lr=0.001 if fer else 0.16,
                               default_pretrain_lr=0.1 if fer else 0.16, depth=depth)


def _method():
    from keras_fer.training.tfe import TFEMethod

    return TFEMethod()


def run(config: TrainConfig, experiment: Experiment | None = None) -> dict:
    """Trains and evaluates ``config`` (on ``experiment`` when given, e.g. a subset in tests),
    then collects the identity network's verification rates; returns the results document."""
    return common.train(_method(), config, experiment)


main = common.trainer_main(config_from_flags, _method)

if __name__ == "__main__":
    common.start(main)
