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


def main(argv):
    del argv
    from keras_fer.training import runner
    from keras_fer.training.idennet import IDEnNetMethod, train_variants, write_comparison

    config = config_from_flags()
    unknown = sorted(set(_VARIANTS.value) - {"original", "i", "f", "if"})
    if unknown:
        raise app.UsageError(f"--variants: unknown variant(s) {unknown}; "
                             "known: original, i, f, if.")
    if common.AGGREGATE_ONLY.value:
        if not _VARIANTS.value:
            common.aggregate_only(config)
            return
        from keras_fer.data.experiments import experiment_for

        root, exp = config.model_dir, experiment_for(config)
        write_comparison(Path(root), {
            v: runner.aggregate(dataclasses.replace(config, variant=v, model_dir=f"{root}/{v}"),
                                experiment=exp)
            for v in _VARIANTS.value})
        return
    after_fold = None
    if config.heatmaps:
        from keras_fer.evaluation.heatmaps import heatmap_callback

        after_fold = heatmap_callback(config)
    if _VARIANTS.value:
        train_variants(config, _VARIANTS.value, after_fold=after_fold)
    else:
        runner.train_and_evaluate(IDEnNetMethod(), config, after_fold=after_fold)


if __name__ == "__main__":
    app.run(main)
