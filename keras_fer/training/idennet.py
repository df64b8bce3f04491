"""IDEnNet's two-stage training procedure, as a runner ``Method``.

Stage 1 pretrains each stream with its own third block and head: the emotion stream on the
fold's expression data (optionally starting from FER+-pretrained weights, ``extra
emotion_init``), the identity stream (variants F/IF) on the fold's training subjects plus
ORL identities (``extra identity_init`` likewise). Stage 2 builds the variant, copies both
streams in by layer name, freezes the two feature groups and fine-tunes the fusion block and
heads with the joint loss L_emo + L_id. The 1x1 fusion conv starts as a pass-through of the
emotion map (``extra fusion_init``: ``"passthrough"``, the default, or ``"random"``, He
normal): see :func:`keras_fer.models.idennet.passthrough_fusion_conv`. Each stage resumes
from its own folder.

With ``extra identity="face_resnet"`` (the default: the paper pretrained its identity stream
on identity data), the identity stream is first distilled from dlib's face network (stage
``distill_identity``, :mod:`keras_fer.training.distill`: its GAP feature plus a 128-d
projection trained to the face network's embedding, cosine loss, on FER+ Train when
``extra distill_ferplus_dir`` names a FER+ folder, the fold's training faces and ORL;
``distill_epochs``, default ``pretrain_epochs``, and ``distill_lr``, default
``pretrain_lr``), then identity-pretrained as before from the distilled weights.
``distill_epochs=0`` with ``identity_init`` set to a stream distilled once outside the folds
(``tools/distill_identity.py``: on FER+ Train alone, so no CK+ face is seen) skips the
per-fold stage.
``extra emotion_backbone="resnet18_std"`` builds the emotion stream from the standard
ResNet-18 (:mod:`keras_fer.models.idennet`), e.g. with ``emotion_init`` the shipped FER+
ResNet-18 rebuilt as ``.keras`` (``tools/keras_from_savedmodel.py``); the default is
``"densenet"``, the paper's.
``identity="densenet"`` skips the distillation (the identity stream learns from the fold's
subjects and ORL only). The teacher's embeddings are cached in ``<model_dir>/teacher/``.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import keras
import numpy as np

from keras_fer import io_atomic
from keras_fer.data.augment import FaceBatches
from keras_fer.models import face_embedding, idennet
from keras_fer.models.transfer import init_from
from keras_fer.training.config import TrainConfig
from keras_fer.training import distill, rundir, runner
from keras_fer.data.experiments import Experiment, FoldData, experiment_for, fold_indices
from keras_fer.training.optim import config_sgd
from keras_fer.training.stages import fit_stage, validation_batches


EXTRA_KEYS = ("identity", "alpha", "dropout", "emotion_init", "fusion_init", "gamma",
              "identity_init", "layers_per_block", "weight_decay", "distill_epochs",
              "distill_lr", "distill_ferplus_dir", "emotion_backbone")


class IDEnNetMethod:
    """IDEnNet variants (original, i, f, if) for :func:`runner.train_and_evaluate`."""

    name = "idennet"
    # Under --distribution the runner wraps fit_fold in the strategy's scope; validation is
    # then skipped, since sharded steps need every batch to split evenly over the devices.
    supports_distribution = True

    @staticmethod
    def identity(config: TrainConfig) -> str:
        """The run's identity source, after checking every ``--extra`` key."""
        face_embedding.check_extra(config.extra, EXTRA_KEYS, "IDEnNet")
        return face_embedding.check_identity(
            config.extra.get("identity", face_embedding.FACE_RESNET),
            (face_embedding.FACE_RESNET, face_embedding.DENSENET), "IDEnNet")

    def model_config(self, config: TrainConfig, data: FoldData, num_identities: int | None):
        self.identity(config)
        extra = config.extra
        return idennet.IDEnNetConfig(
            variant=config.variant,
            depth=config.depth,
            num_classes=data.num_classes,
            num_identities=num_identities,
            layers_per_block=extra.get("layers_per_block"),
            dropout=extra.get("dropout", 0.5),
            alpha=extra.get("alpha", 0.1),
            gamma=extra.get("gamma", 15.0),
            emotion_backbone=extra.get("emotion_backbone", "densenet"),
        )

    def pretrain_emotion(self, config, data, mcfg, fold_dir: Path) -> keras.Model:
        model = idennet.build_emotion_pretrain_model(mcfg)
        init_from(model, config.extra.get("emotion_init"), "emotion stream")
        model.compile(optimizer=config_sgd(config, config.pretrain_lr, config.pretrain_epochs,
                                     len(data.y_train)),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        train = FaceBatches(data.x_train, data.y_train, config.batch_size, augment=True,
                            seed=config.seed, drop_remainder=True)
        val = validation_batches(config, data.x_val, data.y_val)
        stage = fold_dir / "pretrain_emotion"
        fit_stage(model, stage, train, config.pretrain_epochs, val)
        # Kept whole so that other runs can start from this stream (``emotion_init``).
        with io_atomic.atomic_path(stage / "model.keras") as tmp:
            model.save(tmp)
        return model

    def pretrain_identity(self, config, data, mcfg, fold_dir: Path) -> keras.Model:
        keep = data.id_train >= 0
        x = data.x_train[keep]
        y = data.id_train[keep]
        if data.identity_x is not None:
            x = np.concatenate([x, data.identity_x])
            y = np.concatenate([y, data.identity_y])
        if len(np.unique(y)) < 2:
            raise ValueError("Identity pretraining needs at least 2 identities: this fold has "
                             f"{len(np.unique(y))} (use --use_orl or a dataset with subjects).")
        model = idennet.build_identity_pretrain_model(mcfg, data.num_identities)
        init_from(model, config.extra.get("identity_init"), "identity stream")
        # ``distill_epochs=0`` with ``identity_init``: a stream distilled once, outside the
        # folds (tools/distill_identity.py), instead of once per fold.
        if (self.identity(config) == face_embedding.FACE_RESNET
                and config.extra.get("distill_epochs", config.pretrain_epochs) > 0):
            self.distill_identity(config, data, model, fold_dir)
        model.compile(optimizer=config_sgd(config, config.pretrain_lr, config.pretrain_epochs,
                                           len(y)),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        train = FaceBatches(x, y, config.batch_size, augment=True, seed=config.seed + 1,
                            drop_remainder=True)
        fit_stage(model, fold_dir / "pretrain_identity", train, config.pretrain_epochs)
        return model

    def distill_identity(self, config, data, model: keras.Model, fold_dir: Path) -> None:
        """Stage ``distill_identity``: the identity stream (``model``'s layers, trained in
        place) reproduces the face network's embedding; writes ``distill.json``."""
        extra = config.extra
        faces, targets, counts = distill.distillation_faces(
            extra, data.x_train, data.identity_x,
            Path(config.model_dir) / "teacher", data.fold)
        student = distill.student_model(model, "id_head_gap", "id")
        epochs = extra.get("distill_epochs", config.pretrain_epochs)
        report = distill.distill_stream(
            student, faces, targets, fold_dir / "distill_identity", epochs,
            config.batch_size, extra.get("distill_lr", config.pretrain_lr), config.seed + 7)
        report["sources"] = counts
        io_atomic.write_json(fold_dir / "distill.json", report)
        print(f"[idennet] fold {data.fold}: identity stream distilled from the face network "
              f"on {report['faces']} faces {counts}: mean cosine {report['final_cosine']:.3f}",
              flush=True)

    def fit_fold(self, data: FoldData, config: TrainConfig, fold_dir: Path) -> keras.Model:
        fold_ids = int(data.id_train.max()) + 1 if (data.id_train >= 0).any() else 0
        has_id_head = config.variant in ("i", "if")
        if has_id_head and fold_ids < 2:
            raise ValueError(f"Variant {config.variant!r} needs identity labels of at least 2 "
                             f"training subjects; {config.dataset} fold {data.fold} has "
                             f"{fold_ids}. Use 'original' or 'f' on datasets without subjects.")
        mcfg = self.model_config(config, data, fold_ids if has_id_head else None)
        emotion = self.pretrain_emotion(config, data, mcfg, fold_dir)
        identity = None
        if mcfg.has_fusion:
            identity = self.pretrain_identity(config, data, mcfg, fold_dir)

        model = idennet.build_idennet(mcfg)
        idennet.transfer_weights(emotion, model)
        if identity is not None:
            idennet.transfer_weights(identity, model)
        if mcfg.has_fusion and config.extra.get("fusion_init", "passthrough") == "passthrough":
            idennet.passthrough_fusion_conv(model)
        idennet.freeze_feature_groups(model)
        model.compile(optimizer=config_sgd(config, config.lr, config.epochs, len(data.y_train)))
        labels = {"expression": data.y_train}
        val_labels = {"expression": data.y_val}
        if has_id_head:
            labels["identity"] = data.id_train
            val_labels["identity"] = data.id_val
        train = FaceBatches(data.x_train, labels, config.batch_size, augment=True,
                            seed=config.seed + 2, drop_remainder=True)
        val = validation_batches(config, data.x_val, val_labels)
        fit_stage(model, fold_dir / "finetune", train, config.epochs, val)
        return idennet.inference_model(model)


def variant_config(config: TrainConfig, variant: str) -> TrainConfig:
    """The same run for another variant, in a sibling folder (for side-by-side comparisons)."""
    return dataclasses.replace(config, variant=variant,
                               model_dir=str(Path(config.model_dir).parent / variant))


# Stages whose weights do not depend on the variant (same fold data, seed and architecture).
SHARED_STAGES = ("pretrain_emotion", "distill_identity", "pretrain_identity")


def share_pretraining(work_dir: Path, model_dir: Path, fold: int,
                      stages: Sequence[str] = SHARED_STAGES) -> List[str]:
    """Copies finished variant-independent ``stages`` of ``fold`` from sibling variant runs.

    ``work_dir/<variant>/fold_<k>/<stage>/final.weights.h5`` of any variant is copied into
    ``model_dir``'s fold, where :func:`fit_stage` then loads it instead of training.

    Returns:
        The stage folders copied into ``model_dir``, as ``"<stage> <- <variant>"``.
    """
    copied = []
    for stage in stages:
        target = model_dir / f"fold_{fold}" / stage
        if (target / "final.weights.h5").exists():
            continue
        for source in sorted(work_dir.glob(f"*/fold_{fold}/{stage}/final.weights.h5")):
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / "final.weights.h5")
            if (source.parent / "history.csv").exists():
                shutil.copy2(source.parent / "history.csv", target / "history.csv")
            copied.append(f"{stage} <- {source.parent.parent.parent.name}")
            break
    return copied


def train_variants(config: TrainConfig, variants: Sequence[str],
                   after_fold: Optional[Callable] = None,
                   experiment: Optional[Experiment] = None,
                   overwrite: bool = False) -> Dict[str, Dict]:
    """Trains several variants on the same folds, pretraining each fold's streams once.

    Each variant runs in ``<model_dir>/<variant>`` (its own ``results.json``); within a fold
    the first variant pretrains the emotion stream (and, if it fuses, the identity stream)
    and the others reuse those weights, so the comparison isolates what the identity parts
    add and the pretraining is paid once. ``<model_dir>/variants.json`` puts the variants
    side by side. Resumable like a single run; ``<model_dir>`` is locked for the whole run,
    and ``overwrite`` empties each variant's folder first.

    Returns:
        ``{variant: results document}``.
    """
    root = Path(config.model_dir)
    with rundir.locked(root, config.fold):
        return _train_variants(config, variants, after_fold, experiment, overwrite)


def _train_variants(config, variants, after_fold, experiment, overwrite) -> Dict[str, Dict]:
    root = Path(config.model_dir)
    exp = experiment or experiment_for(config)
    n_folds = len(fold_indices(exp, config.folds, config.split_seed, config.val_fraction))
    folds = range(n_folds) if config.fold < 0 else [config.fold]
    configs = {v: dataclasses.replace(config, variant=v, model_dir=str(root / v))
               for v in variants}
    method = IDEnNetMethod()
    if overwrite:
        for cfg in configs.values():
            with rundir.locked(cfg.model_dir):
                rundir.prepare(cfg, overwrite=True)
    for k in folds:
        for v, cfg in configs.items():
            copied = share_pretraining(root, Path(cfg.model_dir), k)
            if copied:
                print(f"[idennet/{v}] fold {k}: reusing {', '.join(copied)}", flush=True)
            runner.train_and_evaluate(method, dataclasses.replace(cfg, fold=k, export=()),
                                      experiment=exp, after_fold=after_fold)
    results = {v: runner.train_and_evaluate(method, cfg, experiment=exp)
               for v, cfg in configs.items()}
    write_comparison(root, results)
    return results


def write_comparison(root: Path, results: Dict[str, Dict]) -> Path:
    """``variants.json``: mean, std and per-fold accuracy of each variant, side by side."""
    doc = {v: {"mean_accuracy": r["mean_accuracy"], "std_accuracy": r["std_accuracy"],
               "folds": {f["fold"]: f["accuracy"] for f in r["folds"]}}
           for v, r in results.items()}
    path = root / "variants.json"
    io_atomic.write_json(path, doc)
    print("  ".join(f"{v}: {d['mean_accuracy']:.2f} ± {d['std_accuracy']:.2f}%"
                    for v, d in doc.items()), flush=True)
    return path
