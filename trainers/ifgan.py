"""Trains and evaluates IF-GAN (``--variant=ifgan``), its no-attention ablation
(``--variant=noattention``) or its plain classifier baseline (``--variant=baseline``).

Quick start (synthetic faces, one fold, small networks, a few minutes on a laptop CPU):

    python -m trainers.ifgan --flagfile=trainers/flagfiles/ifgan_quickstart.flags

CK+48 7 classes, 10-fold subject-independent, and the ablation / baseline on the same folds
and budget:

    python -m trainers.ifgan --flagfile=trainers/flagfiles/ifgan_ckplus.flags
    python -m trainers.ifgan --flagfile=trainers/flagfiles/ifgan_ckplus.flags \\
        --variant=noattention --model_dir=runs/ifgan_ckplus_noattention
    python -m trainers.ifgan --flagfile=trainers/flagfiles/ifgan_ckplus.flags \\
        --variant=baseline --model_dir=runs/ifgan_ckplus_baseline

Any flag after ``--flagfile`` overrides the file. ``--lr`` is the Adam rate of G, D and E
(default the paper's 1e-4); network widths, loss weights and a FER+-pretrained E go in
``--extra`` (see :class:`keras_fer.training.ifgan.IFGANMethod`), e.g.
``--extra='{"generator_filters": 16}'``; ``ifgan_ckplus_ferplus.flags`` starts E from
``pretrained/ferplus_ifgan_classifier.keras``.
``--depth`` and ``--pretrain_epochs`` are unused.

Writes ``config.json``, per fold the stage folder (``gan`` or ``classifier``),
``average_faces.npy``, ``generation.png`` and (``ifgan``) ``attention.png``, then
``results.json``, ``confusion_matrix.png``, ``per_class_accuracy.png`` and, with
``--export``, the deployable G-then-E model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainers import common

if TYPE_CHECKING:
    from keras_fer.training.config import TrainConfig
    from keras_fer.data.experiments import Experiment


def config_from_flags() -> TrainConfig:
    """The run's ``TrainConfig`` from the parsed flags, with IF-GAN's defaults."""
    return common.train_config("ifgan", default_variant="ifgan", default_lr=1e-4,
                               default_pretrain_lr=1e-4)


def _method():
    from keras_fer.training.ifgan import IFGANMethod

    return IFGANMethod()


def run(config: TrainConfig, experiment: Experiment | None = None) -> dict:
    """Trains and evaluates ``config`` (on ``experiment`` when given, e.g. a subset in tests);
    returns the results document."""
    return common.train(_method(), config, experiment)


main = common.trainer_main(config_from_flags, _method)

if __name__ == "__main__":
    common.start(main)
