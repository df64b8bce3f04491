"""TFE-JL's training procedure (and its ResNet-only baseline), as a runner ``Method``.

Per fold, each stage in its own resumable folder under ``fold_dir``:

0. With ``extra identity="face_resnet"`` (the default), the identity network is dlib's
   face ResNet, already trained on about 3 million faces, so there is no stage 1: its raw
   128-d embedding is scored by the same verification protocol on the same held-out
   subjects (``fold_dir/verification.json``, ``"network": "face_resnet"``) and the network
   enters the tandem model as it is, to be fine-tuned in stage 3 at the identity rate.
1. ``pretrain_deepid`` (``identity="deepid"``, the small option): the DeepID identity classifier on the fold's training subjects
   (``id_train >= 0``) plus the extra identities (ORL). A share of the identities
   (``extra verification_fraction``, default 0.2, taken from ORL when present, otherwise from
   the fold's training subjects) is held out of this stage; the 160-d feature is then scored
   on them by face verification (cosine similarity; the held-out subjects are split in two
   disjoint halves, the threshold is chosen on the pairs of one half and the rate reported
   on the pairs of the other) and written to ``fold_dir/verification.json``.
2. ``pretrain_resnet``: the ResNet12/18 emotion classifier on the fold's expression data
   (from scratch, or from ``extra resnet_init``: a FER+-pretrained ResNet of the same depth).
3. ``joint`` (variant ``tfe``): the tandem model, initialised from both by layer name, learnt
   jointly with :func:`keras_fer.models.tfe.joint_optimizer` (ResNet and tandem layers at
   ``lr``, the identity network's layers at ``extra deepid_lr``). ``finetune`` (variant ``baseline``): the
   pretrained ResNet alone, trained for the same epochs with the same ResNet rate schedule,
   so that both variants see the same expression data for the same number of epochs and
   differ only in the identity feature.

Every stage uses SGD with momentum 0.9 and the step schedule of
:func:`keras_fer.training.optim.step_schedule` (rate /10 at 50% and 75% of the stage). The
pretraining stages use the project's decoupled weight decay (``extra weight_decay``); the
joint stage does not, since the paper gives none and its sub-optimizers are the plain SGDs
of :func:`~keras_fer.models.tfe.joint_optimizer`.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from keras_fer import io_atomic
from keras_fer.data.augment import FaceBatches
from keras_fer.data.preprocess import to_model_input
from keras_fer.evaluation import verification
from keras_fer.models import face_embedding, tfe
from keras_fer.models.deepid import build_deepid, deepid_feature_model
from keras_fer.models.transfer import init_from, transfer_weights
from keras_fer.training import distill
from keras_fer.training.config import TrainConfig
from keras_fer.data.experiments import FoldData
from keras_fer.training.optim import config_sgd, step_schedule, steps_per_epoch
from keras_fer.training.stages import fit_stage, validation_batches

VARIANTS = ("tfe", "baseline")
DEFAULT_DEEPID_LR = 0.01
DEFAULT_DEEPID_PRETRAIN_LR = 0.01
DEFAULT_VERIFICATION_FRACTION = 0.2
DEFAULT_VERIFICATION_PAIRS = 1000
# Two halves of at least two subjects each: different-subject pairs need two subjects.
MIN_HELD_OUT = 4
EXTRA_KEYS = ("identity", "deepid_lr", "deepid_pretrain_lr", "deepid_epochs", "hidden_units",
              "dropout", "weight_decay", "verification_fraction", "verification_pairs",
              "resnet_init", "emotion_backbone", "distill_epochs", "distill_lr", "distill_ferplus_dir")


def split_identities(data: FoldData, fraction: float, seed: int):
    """Identity pretraining data and the held-out identities used for verification.

    The held-out subjects come from the extra identities (ORL) when there are any, else
    from the fold's labelled training subjects; the remaining identities are relabelled
    ``0..M-1``.

    Args:
        data: the fold.
        fraction: share of the source's subjects to hold out (0 disables verification).
        seed: seeds the choice of subjects.

    Returns:
        ``(x_fit, y_fit, x_held, subjects_held, source)``: uint8 faces and contiguous labels
        for pretraining, uint8 faces and identity ids of the held-out subjects (empty when
        fewer than 4 subjects would be held out), and ``"orl"``/``"training_subjects"``.
    """
    keep = data.id_train >= 0
    x = data.x_train[keep]
    y = data.id_train[keep]
    source = "training_subjects"
    if data.identity_x is not None and len(data.identity_y):
        x = np.concatenate([x, data.identity_x])
        y = np.concatenate([y, data.identity_y])
        pool = np.unique(data.identity_y)
        source = "orl"
    else:
        pool = np.unique(y)
    n_held = int(round(fraction * len(pool)))
    if n_held < MIN_HELD_OUT or len(np.unique(y)) - n_held < 2:
        n_held = 0
    held = np.random.default_rng(seed).permutation(pool)[:n_held]
    is_held = np.isin(y, held)
    _, y_fit = np.unique(y[~is_held], return_inverse=True)
    return x[~is_held], y_fit.astype(np.int64), x[is_held], y[is_held], source


def verification_rate(feature_model: keras.Model, faces: np.ndarray, subjects: np.ndarray,
                      n_pairs: int, seed: int) -> dict:
    """Verification accuracy (percent) of an identity feature on held-out subjects.

    The subjects are split into two disjoint halves: the cosine threshold is chosen on pairs
    of the first ("threshold") half and evaluated on pairs of the second ("test") half, so
    neither a pair nor a person used to choose the threshold is scored with it.

    Args:
        feature_model: ``image -> feature`` model.
        faces: uint8 ``(N, 60, 60)`` aligned faces of at least 4 subjects.
        subjects: ``(N,)`` integer identity ids.
        n_pairs: pairs sampled in each half.
        seed: seeds the subject split and the pairs.

    Returns:
        ``{"threshold", "threshold_accuracy", "verification_rate", "pairs",
        "threshold_identities", "test_identities"}`` (the two halves' identity ids).
    """
    ids = np.unique(subjects)
    if len(ids) < MIN_HELD_OUT:
        raise ValueError(f"Verification needs at least {MIN_HELD_OUT} subjects. "
                         f"Received {len(ids)}.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(ids)
    halves = order[: len(ids) // 2], order[len(ids) // 2:]
    embeddings = np.asarray(feature_model.predict(to_model_input(faces), verbose=0))
    scored = []
    for k, half in enumerate(halves):
        rows = np.flatnonzero(np.isin(subjects, half))
        pairs, same = verification.verification_pairs(subjects[rows], n_pairs, seed + k)
        scored.append((verification.cosine_scores(embeddings[rows], pairs), same))
    threshold = verification.choose_threshold(*scored[0])
    return {
        "threshold": threshold,
        "threshold_accuracy": verification.verification_accuracy(*scored[0], threshold),
        "verification_rate": verification.verification_accuracy(*scored[1], threshold),
        "pairs": n_pairs,
        "threshold_identities": sorted(int(s) for s in halves[0]),
        "test_identities": sorted(int(s) for s in halves[1]),
    }


class TFEMethod:
    """TFE-JL (variant ``tfe``) and its ResNet-only baseline for the runner.

    Method-specific settings (``config.extra``, validated: an unknown key is an error):
    ``identity`` (``"face_resnet"``, the default, or ``"deepid"``), ``distill_epochs`` (DeepID
    only: > 0 first distils DeepID from the face network, see
    :mod:`keras_fer.training.distill`; default 0), ``distill_lr`` (0.01),
    ``distill_ferplus_dir`` (FER+ folder whose Train faces join the distillation), ``deepid_lr``
    (joint-learning rate of the identity network's layers, DeepID or face network, default
    0.01), ``deepid_pretrain_lr`` (0.01), ``deepid_epochs`` (default
    ``pretrain_epochs``), ``hidden_units`` (tandem FC widths, ``[256]``), ``dropout`` (0.5),
    ``weight_decay`` (pretraining, 1e-4), ``verification_fraction`` (0.2),
    ``verification_pairs`` (1000 per half), ``emotion_backbone`` (``"resnet"``, the paper's
    ResNet of ``--depth``, or ``"resnet18_std"``, the shipped FER+ model's backbone).
    """

    name = "tfe"

    @staticmethod
    def after_run(config: TrainConfig) -> None:
        """Post-run summary: the identity network's verification rates (``verification.json``,
        printed); ``results.json`` is unchanged."""
        summary = summarise_verification(config.model_dir)
        if summary is not None:
            network = {"deepid": "DeepID", "face_resnet": "Face network"}[
                summary["folds"][0].get("network", "deepid")]
            print(f"{network} verification rate: {summary['mean_verification_rate']:.2f} ± "
                  f"{summary['std_verification_rate']:.2f}% over {len(summary['folds'])} "
                  "fold(s)", flush=True)

    @staticmethod
    def identity(config: TrainConfig) -> str:
        """The run's identity network, after checking every ``--extra`` key."""
        face_embedding.check_extra(config.extra, EXTRA_KEYS, "TFE-JL")
        return face_embedding.check_identity(
            config.extra.get("identity", face_embedding.FACE_RESNET), tfe.IDENTITIES, "TFE-JL")

    def model_config(self, config: TrainConfig, data: FoldData, num_identities: int):
        """The :class:`~keras_fer.models.tfe.TFEConfig` of this run and fold."""
        extra = config.extra
        return tfe.TFEConfig(
            identity=self.identity(config),
            num_classes=data.num_classes,
            num_identities=num_identities,
            resnet_depth=config.depth,
            hidden_units=tuple(extra.get("hidden_units", (256,))),
            dropout=extra.get("dropout", 0.5),
            resnet_lr=config.lr,
            deepid_lr=extra.get("deepid_lr", DEFAULT_DEEPID_LR),
            emotion=extra.get("emotion_backbone", "resnet"),
        )

    def pretrain_deepid(self, config: TrainConfig, data: FoldData, fold_dir: Path):
        """Stage 1: DeepID on identities, then its verification rate on held-out ones."""
        extra = config.extra
        seed = config.seed + data.fold
        x, y, x_held, s_held, source = split_identities(
            data, extra.get("verification_fraction", DEFAULT_VERIFICATION_FRACTION), seed)
        if len(np.unique(y)) < 2:
            raise ValueError("DeepID pretraining needs at least 2 identities: this fold has "
                             f"{len(np.unique(y))} (use --use_orl or a dataset with subjects).")
        deepid = build_deepid(int(y.max()) + 1, name=tfe.DEEPID_PREFIX)
        epochs = extra.get("deepid_epochs", config.pretrain_epochs)
        lr = extra.get("deepid_pretrain_lr", DEFAULT_DEEPID_PRETRAIN_LR)
        deepid.compile(optimizer=config_sgd(config, lr, epochs, len(y)),
                       loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        train = FaceBatches(x, y, config.batch_size, augment=True, seed=config.seed + 1)
        if extra.get("distill_epochs", 0) > 0:
            self.distill_deepid(config, data, deepid, x, fold_dir)
        fit_stage(deepid, fold_dir / "pretrain_deepid", train, epochs)
        if len(s_held):
            report = verification_rate(
                deepid_feature_model(deepid), x_held, s_held,
                extra.get("verification_pairs", DEFAULT_VERIFICATION_PAIRS), seed)
            report.update(source=source, pretrain_identities=int(y.max()) + 1,
                          network=face_embedding.DEEPID)
            io_atomic.write_json(fold_dir / "verification.json", report)
            print(f"[tfe] fold {data.fold}: DeepID verification rate "
                  f"{report['verification_rate']:.2f}% on {len(np.unique(s_held))} held-out "
                  f"{source} subjects (threshold {report['threshold']:.3f})", flush=True)
        else:
            print(f"[tfe] fold {data.fold}: too few identities to hold out for verification; "
                  "skipped", flush=True)
        return deepid

    def distill_deepid(self, config, data, deepid: keras.Model, x_fit, fold_dir: Path):
        """Stage ``distill_deepid``: DeepID's 160-d feature (+ a 128-d projection) trained to
        the face network's embedding on FER+ Train (``distill_ferplus_dir``), the fold's
        faces and the pretraining identities' faces (held-out ones excluded)."""
        extra = config.extra
        # x_fit: the fold's identity-labelled faces plus ORL, less the held-out subjects.
        faces, targets, counts = distill.distillation_faces(
            extra, x_fit, None, Path(config.model_dir) / "teacher", data.fold)
        report = distill.distill_stream(
            distill.student_model(deepid, f"{tfe.DEEPID_PREFIX}_feature", tfe.DEEPID_PREFIX),
            faces, targets, fold_dir / "distill_deepid", extra["distill_epochs"],
            config.batch_size, extra.get("distill_lr", DEFAULT_DEEPID_PRETRAIN_LR),
            config.seed + 7)
        report["sources"] = counts
        io_atomic.write_json(fold_dir / "distill.json", report)
        print(f"[tfe] fold {data.fold}: DeepID distilled from the face network on "
              f"{report['faces']} faces: mean cosine {report['final_cosine']:.3f}", flush=True)

    def verify_face_network(self, config: TrainConfig, data: FoldData, fold_dir: Path) -> None:
        """Stage 0 (``face_resnet``): the face network's verification rate on the subjects
        DeepID would hold out, into ``fold_dir/verification.json``."""
        extra = config.extra
        seed = config.seed + data.fold
        _, _, x_held, s_held, source = split_identities(
            data, extra.get("verification_fraction", DEFAULT_VERIFICATION_FRACTION), seed)
        if not len(s_held):
            return
        report = verification_rate(face_embedding.face_embedding_model(), x_held, s_held,
                                   extra.get("verification_pairs", DEFAULT_VERIFICATION_PAIRS),
                                   seed)
        report.update(source=source, network=face_embedding.FACE_RESNET)
        io_atomic.write_json(fold_dir / "verification.json", report)
        print(f"[tfe] fold {data.fold}: face network verification rate "
              f"{report['verification_rate']:.2f}% on {len(np.unique(s_held))} held-out "
              f"{source} subjects", flush=True)

    @staticmethod
    def build_resnet(config: TrainConfig, data: FoldData) -> keras.Model:
        """The emotion classifier (``extra emotion_backbone``: TFE's ResNet of ``--depth``, or
        ``resnet18_std``), from ``extra resnet_init`` when given (e.g. the ``inference.keras``
        of a FER+ baseline run at the same depth, or the FER+ ResNet-18 rebuilt by
        ``tools/keras_from_savedmodel.py``; its head is skipped)."""
        resnet = tfe.build_emotion_classifier(TFEMethod().model_config(config, data, 2))
        # The head never comes along: FER+'s 8 classes are not CK+'s 8 (same shape).
        head = "logits" if config.extra.get("emotion_backbone") == "resnet18_std" else (
            f"{tfe.RESNET_PREFIX}_predictions")
        init_from(resnet, config.extra.get("resnet_init"), "ResNet", skip=(head,))
        return resnet

    def pretrain_resnet(self, config: TrainConfig, data: FoldData, fold_dir: Path):
        """Stage 1b: the ResNet emotion classifier on the fold's expression data (skipped with
        ``--pretrain_epochs=0``)."""
        resnet = self.build_resnet(config, data)
        if config.pretrain_epochs == 0:
            # Straight from ``resnet_init``: both variants then start from the same weights.
            return resnet
        resnet.compile(optimizer=config_sgd(config, config.pretrain_lr,
                                               config.pretrain_epochs, len(data.y_train)),
                       loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        fit_stage(resnet, fold_dir / "pretrain_resnet", self._train(config, data, 2),
                  config.pretrain_epochs, validation_batches(config, data.x_val, data.y_val))
        return resnet

    def fit_fold(self, data: FoldData, config: TrainConfig, fold_dir: Path) -> keras.Model:
        """Trains the variant on one fold (resuming stages) and returns its inference model."""
        if config.variant not in VARIANTS:
            raise ValueError(f"TFE-JL variants are {VARIANTS}. Received: variant="
                             f"{config.variant!r}")
        identity = self.identity(config)
        resnet = self.pretrain_resnet(config, data, fold_dir)
        total = config.epochs * steps_per_epoch(len(data.y_train), config.batch_size)
        if config.variant == "baseline":
            resnet.compile(optimizer=keras.optimizers.SGD(step_schedule(config.lr, total),
                                                          momentum=0.9),
                           loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            fit_stage(resnet, fold_dir / "finetune", self._train(config, data, 3),
                      config.epochs, validation_batches(config, data.x_val, data.y_val))
            return resnet

        if identity == face_embedding.DEEPID:
            deepid = self.pretrain_deepid(config, data, fold_dir)
            mcfg = self.model_config(config, data, deepid.output_shape[-1])
            model = tfe.build_tfe(mcfg)
            # Every pretrained layer but the two heads has its twin in the tandem model.
            transfer_weights(deepid, model, skip_mismatched=False)
        else:
            if not (fold_dir / "verification.json").exists():
                self.verify_face_network(config, data, fold_dir)
            mcfg = self.model_config(config, data, 0)
            model = tfe.build_tfe(mcfg, face_weights="dlib")
        transfer_weights(resnet, model, skip_mismatched=False)
        optimizer = tfe.joint_optimizer(mcfg, resnet_lr=step_schedule(mcfg.resnet_lr, total),
                                        deepid_lr=step_schedule(mcfg.deepid_lr, total))
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        fit_stage(model, fold_dir / "joint", self._train(config, data, 3), config.epochs,
                  validation_batches(config, data.x_val, data.y_val))
        return tfe.inference_model(model)

    @staticmethod
    def _train(config: TrainConfig, data: FoldData, offset: int) -> FaceBatches:
        return FaceBatches(data.x_train, data.y_train, config.batch_size, augment=True,
                           seed=config.seed + offset)



def summarise_verification(model_dir: str | Path) -> dict | None:
    """Collects ``fold_*/verification.json`` into ``<model_dir>/verification.json``.

    Returns:
        ``{"folds": [...], "mean_verification_rate", "std_verification_rate"}`` (percent), or
        ``None`` when no fold measured one (baseline runs, too few identities).
    """
    model_dir = Path(model_dir)
    folds = []
    for path in sorted(model_dir.glob("fold_*/verification.json")):
        report = json.loads(path.read_text())
        report["fold"] = int(path.parent.name.split("_")[1])
        folds.append(report)
    if not folds:
        return None
    rates = np.array([f["verification_rate"] for f in folds])
    summary = {"folds": folds, "mean_verification_rate": float(rates.mean()),
               "std_verification_rate": float(rates.std())}
    io_atomic.write_json(model_dir / "verification.json", summary)
    return summary
