"""Trains and evaluates IDEnNet (Original / I / F / IF) on one protocol.

Quick start (synthetic faces, a few minutes on a laptop CPU):

    python -m trainers.idennet --flagfile=trainers/flagfiles/quickstart.flags

CK+ 7 classes, 10 subject-disjoint folds (on the GPU machine: tools/README.md):

    python -m trainers.idennet --flagfile=trainers/flagfiles/idennet_ckplus.flags --variant=if

All four variants on the same folds, each fold's streams pretrained once and shared
(``<model_dir>/<variant>/results.json`` and ``<model_dir>/variants.json``):

    python -m trainers.idennet --flagfile=trainers/flagfiles/idennet_ckplus.flags \
        --variants=original,i,f,if

Any flag after ``--flagfile`` overrides the file. Writes ``config.json``, per-fold
checkpoints and histories, ``results.json``, ``confusion_matrix.png``,
``per_class_accuracy.png`` and, with ``--export``, the deployable models.
"""

import dataclasses
from pathlib import Path

from absl import app, flags

from trainers import common  # noqa: F401  (defines the shared flags)

_HEATMAPS = flags.DEFINE_integer("heatmaps", 0, "Write Grad-CAM heatmaps (after the fusion "
                                 "block) for this many test faces per class.")
_IDENTITY_FRACTION = flags.DEFINE_float(
    "identity_fraction", 1.0, "Share of training subjects whose identity labels are used "
    "(the paper's Fig. 3 ablation).")

_VARIANTS = flags.DEFINE_list(
    "variants", [], "Train these variants side by side (comma-separated, e.g. "
    "original,i,f,if) in <model_dir>/<variant>, sharing each fold's pretrained streams; "
    "overrides --variant.")


def config_from_flags():
    """The run's ``TrainConfig`` from the parsed flags, with IDEnNet's defaults."""
    return common.train_config("idennet", default_variant="if", default_lr=0.01,
                               default_pretrain_lr=0.1, heatmaps=_HEATMAPS.value,
                               identity_fraction=_IDENTITY_FRACTION.value)


def _heatmaps(config):
    """The Grad-CAM per-fold callback of ``--heatmaps``, or None."""
    if not config.heatmaps:
        return None
    from keras_fer.evaluation.heatmaps import heatmap_callback

    return heatmap_callback(config)


def main(argv):
    del argv
    from keras_fer.training import runner, settings
    from keras_fer.training.idennet import IDEnNetMethod, train_variants, write_comparison

    config = config_from_flags()
    unknown = sorted(set(_VARIANTS.value) - {"original", "i", "f", "if"})
    if unknown:
        raise app.UsageError(f"--variants: unknown variant(s) {unknown}; "
                             "known: original, i, f, if.")
    if not _VARIANTS.value:
        common.trainer_main(lambda: config, IDEnNetMethod, _heatmaps)([])
        return
    settings.validate(config)
    if common.AGGREGATE_ONLY.value:
        from keras_fer.data.experiments import experiment_for

        root, exp = config.model_dir, experiment_for(config)
        write_comparison(Path(root), {
            v: runner.aggregate(dataclasses.replace(config, variant=v, model_dir=f"{root}/{v}"),
                                experiment=exp)
            for v in _VARIANTS.value})
        return
    train_variants(config, _VARIANTS.value, after_fold=_heatmaps(config),
                   overwrite=common.OVERWRITE.value)


if __name__ == "__main__":
    common.start(main)
