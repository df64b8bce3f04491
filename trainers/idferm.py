"""Trains and evaluates IDFERM (hard negative generation + radial metric learning).

Quick start (synthetic faces, one fold, small networks; a few minutes on a laptop CPU):

    python -m trainers.idferm --flagfile=trainers/flagfiles/idferm_quickstart.flags

CK+ 7 classes (CK+48, neutral frames from ckplus_neutral) and 8 classes, 10 subject-disjoint
folds (on the GPU machine: tools/README.md):

    python -m trainers.idferm --flagfile=trainers/flagfiles/idferm_ckplus7.flags
    python -m trainers.idferm --flagfile=trainers/flagfiles/idferm_ckplus8.flags
    python -m trainers.idferm --flagfile=trainers/flagfiles/idferm_ckplus7.flags \
        --variant=baseline --model_dir=runs/idferm_ckplus7_baseline

Variants: ``rml`` (HNG + RML, default) and ``baseline`` (the same network, softmax only, same
folds and budget). ``--pretrain_epochs`` trains the auxiliary networks and pretrains the RML
network, ``--epochs`` fine-tunes; HNG sizes, epochs and learning rate go in ``--extra``
(see ``keras_fer/training/idferm.py``), e.g. ``--extra='{"hng_epochs": 60}'``; ``--depth``
is not used. Writes ``config.json``, per-fold stages (``pretrain_expression``,
``pretrain_identity``, ``hng`` with per-epoch grids, ``pretrain_rml``, ``finetune``),
``fold_<k>/hng.json``, ``results.json`` (with the identity-preservation rate of generated
faces of held-out subjects for ``rml``), plots and, with ``--export``, the deployable models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainers import common

if TYPE_CHECKING:
    from keras_fer.training.config import TrainConfig
    from keras_fer.data.experiments import Experiment


def config_from_flags() -> TrainConfig:
    """The run's ``TrainConfig`` from the parsed flags, with IDFERM's defaults."""
    return common.train_config("idferm", default_variant="rml", default_lr=0.01,
                               default_pretrain_lr=0.01)


def _method():
    from keras_fer.training.idferm import IDFERMMethod

    return IDFERMMethod()


def run(config: TrainConfig, experiment: Experiment | None = None) -> dict:
    """Trains and evaluates ``config`` (on ``experiment`` when given, e.g. a subset in tests)
    and adds the identity-preservation rates; returns the results document."""
    return common.train(_method(), config, experiment)


main = common.trainer_main(config_from_flags, _method)

if __name__ == "__main__":
    common.start(main)
