"""IF-GAN's training procedure, its no-attention ablation and its plain-classifier baseline.

One runner ``Method`` (``name = "ifgan"``) with three variants, all on the same folds and
the same budget (``config.epochs`` epochs of the fold's training faces):

- ``ifgan``: G (U-Net with three self-attention modules), D (PatchGAN) and E (pair
  classifier with island loss) trained jointly by :class:`keras_fer.models.ifgan.IFGAN`
  in the stage folder ``gan``. The average-identity targets are the class-mean faces of the
  fold's *training* faces only (``fold_dir/average_faces.npy``), so no test subject reaches
  them. Writes ``fold_dir/generation.png`` (test faces of different subjects, generated
  faces, class targets) and ``fold_dir/attention.png`` (attention maps of a few query
  positions). Returns :func:`~keras_fer.models.ifgan.build_inference_model` ``(G, E)``.
  G and E train with batch statistics only; after their stage the batch-norm moving
  averages of both are replaced by population statistics of the fold's training faces (G's
  input, then E's pairs ``(x, G(x))``: ``extra recalibrate_bn``, default on since session 18;
  earlier runs scored the moving averages), and ``fold_dir/recalibration.json`` records G's
  inference-vs-training-mode gap and ``E(x, G(x))``'s training-face accuracy before and after
  (:func:`recalibrate`). The recalibrated weights are kept (``gan/recalibrated.weights.h5``):
  a run killed after them, e.g. in its test pass, loads them instead of recalibrating again.
- ``noattention``: the same without the attention modules (no ``attention.png``).
- ``baseline``: :func:`~keras_fer.models.ifgan.build_classifier` (E's backbone on the face
  alone) trained with softmax cross-entropy in the stage folder ``classifier``.

Every variant uses the paper's optimizer (:func:`~keras_fer.models.ifgan.ifgan_optimizer`:
Adam ``config.lr``, betas 0.9/0.99, weight decay 1e-4, rate x0.9 every 10 epochs).

E and the baseline share one backbone, ``extra classifier_backbone``: ``"compact"`` (the
default) or ``"resnet18_std"``, the standard ResNet-18 of the shipped FER+ model; with it,
``extra classifier_weights`` may be that FER+ model as ``.keras`` (rebuilt by
tools/keras_from_savedmodel.py): its trunk is copied by name, its first convolution split
onto E's two input channels, and E's feature and logits layers start fresh.
"""

from __future__ import annotations

import json

from pathlib import Path

import keras
import numpy as np

from keras_fer import io_atomic
from keras_fer.data.augment import FaceBatches
from keras_fer.data.preprocess import to_model_input
from keras_fer.evaluation.gan_plots import plot_attention_maps, plot_generation_grid
from keras_fer.models import ifgan
from keras_fer.models.loading import load_model
from keras_fer.training import batchnorm
from keras_fer.training.config import TrainConfig
from keras_fer.training.ifgan_identity import (
    REPORT as IDENTITY_REPORT,
    add_identity_freeness,
    identity_freeness,
)
from keras_fer.data.experiments import FoldData
from keras_fer.training.optim import steps_per_epoch
from keras_fer.training.stages import fit_stage

VARIANTS = ("ifgan", "noattention", "baseline")
# Query positions (row, col) on the 48x48 input for the attention figure: left eye, right
# eye, mouth of an aligned face (the paper's Fig. 6 shows such facial points).
QUERY_POINTS = ((18, 16), (18, 32), (36, 24))
ATTENTION_FACES = 3
RECALIBRATION_REPORT = "recalibration.json"
RECALIBRATED_WEIGHTS = "recalibrated.weights.h5"
# Training faces the batch norm is recalibrated on, and the gap measured on, at most.
RECALIBRATION_FACES = 8192
GAP_FACES = 1024


def _pair_accuracy(generator: keras.Model, classifier: keras.Model, faces: np.ndarray,
                   labels: np.ndarray) -> float:
    """Accuracy (%) of the exported path ``E(x, G(x))``, both in inference mode."""
    generated = np.asarray(generator.predict(faces, batch_size=256, verbose=0))
    logits = np.asarray(classifier.predict([faces, generated], batch_size=256,
                                           verbose=0)["logits"])
    return float(100.0 * np.mean(logits.argmax(axis=-1) == labels))


def recalibrate(generator: keras.Model, classifier: keras.Model, faces: np.ndarray,
                targets: np.ndarray, labels: np.ndarray, enabled: bool, seed: int = 0,
                batch_size: int = 32) -> dict:
    """After the GAN stage: G's and E's batch norm set to their inputs' population
    statistics (with ``enabled``), and what that changed on training faces.

    Both train with batch statistics only, and their moving averages miss what the exported
    path ``E(x, G(x))`` sees: G's lag its weights and miss the variance between batches; E's
    average two calls a step, on ``(x, target)`` and on ``(x, G(x))`` pairs, while inference
    sees only the second. G is recalibrated on up to :data:`RECALIBRATION_FACES` training
    faces, then E on those faces paired with the recalibrated G's. Measured on up to
    :data:`GAP_FACES` training faces, before and after: G's inference-vs-training-mode gap
    (and each mode's L1 to the faces' average-identity targets,
    :func:`~keras_fer.training.batchnorm.mode_gap`) and the exported path's accuracy.

    Returns:
        ``{"before": {"generator": gap, "train_accuracy": %}, "after": the same or None,
        "faces": faces recalibrated on (0 when not enabled)}``.
    """
    rows = np.random.default_rng(seed).permutation(len(faces))
    probe = rows[:GAP_FACES]

    def measure():
        # Training mode normalises per batch: batches of the training batch size.
        return {"generator": batchnorm.mode_gap(generator, faces[probe], targets[probe],
                                                batch_size),
                "train_accuracy": _pair_accuracy(generator, classifier, faces[probe],
                                                 labels[probe])}

    before = measure()
    if not enabled:
        return {"before": before, "after": None, "faces": 0}
    chosen = faces[np.sort(rows[:RECALIBRATION_FACES])]
    batchnorm.recalibrate_batchnorm(generator, chosen)
    generated = np.asarray(generator.predict(chosen, batch_size=256, verbose=0))
    batchnorm.recalibrate_batchnorm(classifier, [chosen, generated])
    return {"before": before, "after": measure(), "faces": len(chosen)}


def recalibrate_once(gan: keras.Model, stage_dir: Path, report_path: Path, stage_resumed: bool,
                     *args, **kwargs) -> dict:
    """:func:`recalibrate` of the IF-GAN ``gan`` after its stage in ``stage_dir``, resumable.

    The recalibrated weights (``stage_dir/``:data:`RECALIBRATED_WEIGHTS`) and the report
    (``report_path``) are written atomically, weights first; when the stage was complete
    before this run (``stage_resumed``) and both exist, they are loaded instead. A stage
    trained in this run discards an earlier run's recalibrated weights.
    ``args``/``kwargs``: :func:`recalibrate`'s after its two networks.
    """
    weights = Path(stage_dir) / RECALIBRATED_WEIGHTS
    if stage_resumed and report_path.exists():
        report = json.loads(report_path.read_text())
        if report["after"] is None or weights.exists():
            if report["after"] is not None:
                gan.load_weights(str(weights))
            print(f"[ifgan] batch norm: {report_path.name} and its weights from the run "
                  "before", flush=True)
            return report
    weights.unlink(missing_ok=True)
    report = recalibrate(gan.generator, gan.classifier, *args, **kwargs)
    if report["after"] is not None:
        with io_atomic.atomic_path(weights) as tmp:
            gan.save_weights(str(tmp))
    io_atomic.write_json(report_path, report)
    return report


def model_config(config: TrainConfig, data: FoldData) -> ifgan.IFGANConfig:
    """The :class:`~keras_fer.models.ifgan.IFGANConfig` of this run and fold.

    ``config.extra`` may set any ``IFGANConfig`` field except ``num_classes`` and
    ``use_attention`` (which the variant decides), e.g. ``{"generator_filters": 8}``.
    """
    fields = set(ifgan.IFGANConfig.__dataclass_fields__) - {"num_classes", "use_attention"}
    chosen = {k: v for k, v in config.extra.items() if k in fields}
    return ifgan.IFGANConfig(num_classes=data.num_classes,
                             use_attention=config.variant == "ifgan", **chosen)


def one_face_per_subject(labels: np.ndarray, subjects: np.ndarray | None) -> np.ndarray:
    """Rows of the first face of each (class, subject) pair, in their original order.

    CK+ gives three consecutive frames of a sequence, nearly the same picture: the figures
    show different people rather than one face three times.

    Args:
        labels: ``(N,)`` class indices.
        subjects: ``(N,)`` subject ids, or ``None`` (every row is kept).

    Returns:
        Sorted row indices.
    """
    if subjects is None:
        return np.arange(len(labels))
    seen, rows = set(), []
    for row, key in enumerate(zip(np.asarray(labels).tolist(), np.asarray(subjects).tolist())):
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return np.array(rows, dtype=np.int64)


def _report_init(config: TrainConfig, copied: list) -> None:
    if not copied:
        raise ValueError(f"No layer of {config.extra['classifier_weights']} matches IF-GAN's "
                         "classifier: pass a build_classifier model (same filters/feature_dim "
                         "and classifier_backbone) or, with classifier_backbone resnet18_std, "
                         "a resnet18_std expression model.")
    print(f"classifier initialised from {config.extra['classifier_weights']}: {len(copied)} "
          "layers copied", flush=True)


class IFGANMethod:
    """IF-GAN (variant ``ifgan``), its ablation (``noattention``) and baseline for the runner.

    Method-specific settings (``config.extra``): any :class:`~keras_fer.models.ifgan.IFGANConfig`
    field (filters, ``feature_dim``, loss weights, ``adversarial``, ``classifier_backbone``...)
    and ``classifier_weights``, a FER+-pretrained :func:`build_classifier` (same
    ``classifier_filters`` / ``feature_dim`` / ``classifier_backbone``) that initialises E (and
    the baseline): a ``.weights.h5`` of the same class count, or a ``.keras`` model of any class
    count (e.g. the ``inference.keras`` of a FER+ baseline run; its logits are not copied); with
    ``classifier_backbone="resnet18_std"`` also the FER+ ResNet-18 expression model (trunk only).
    """

    name = "ifgan"

    @staticmethod
    def after_run(config: TrainConfig) -> dict:
        """Post-run summary: the folds' mean identity-freeness figures into ``results.json``;
        returns the updated results document."""
        return add_identity_freeness(config.model_dir)

    def fit_fold(self, data: FoldData, config: TrainConfig, fold_dir: Path) -> keras.Model:
        """Trains the variant on one fold (resuming its stage) and returns its inference model."""
        if config.variant not in VARIANTS:
            raise ValueError(f"IF-GAN variants are {VARIANTS}. Received: variant="
                             f"{config.variant!r}")
        mcfg = model_config(config, data)
        optimizer = lambda: ifgan.ifgan_optimizer(  # noqa: E731
            steps_per_epoch(len(data.y_train), config.batch_size), config.lr)
        if config.variant == "baseline":
            return self._fit_baseline(data, config, fold_dir, mcfg, optimizer())

        faces = to_model_input(data.x_train)
        average = ifgan.average_identity_targets(faces, data.y_train, data.num_classes,
                                                 fill_missing=True)
        io_atomic.save_npy(fold_dir / "average_faces.npy", average)
        gan = ifgan.build_ifgan(mcfg)
        pretrained = self._pretrained_classifier(config, mcfg)
        if pretrained is not None:
            _report_init(config, ifgan.transfer_classifier_weights(pretrained, gan.classifier))
        gan.compile(g_optimizer=optimizer(), d_optimizer=optimizer(), e_optimizer=optimizer(),
                    jit_compile=config.extra.get("jit_compile", "auto"))
        train = FaceBatches(data.x_train, ifgan.ifgan_targets(data.y_train, average),
                            config.batch_size, augment=True, seed=config.seed + 3)
        resumed = fit_stage(gan, fold_dir / "gan", train, config.epochs) is None
        recalibration = recalibrate_once(gan, fold_dir / "gan", fold_dir / RECALIBRATION_REPORT,
                                         resumed, faces, train.labels["target"],
                                         np.asarray(data.y_train),
                                         config.extra.get("recalibrate_bn", True), config.seed,
                                         config.batch_size)
        before, after = recalibration["before"], recalibration["after"]
        if after:
            print(f"[ifgan] fold {data.fold}: batch norm recalibrated on "
                  f"{recalibration['faces']} training faces: G's inference vs training mode, "
                  f"mean |diff| {before['generator']['inference_vs_training']:.4f} -> "
                  f"{after['generator']['inference_vs_training']:.4f}; E(x, G(x)) on training "
                  f"faces {before['train_accuracy']:.2f}% -> {after['train_accuracy']:.2f}%",
                  flush=True)
        self._figures(gan.generator, data, average, fold_dir, mcfg.use_attention)
        report = identity_freeness(gan.generator, to_model_input(data.x_test), data.y_test,
                                   data.subj_test, seed=config.seed)
        io_atomic.write_json(fold_dir / IDENTITY_REPORT, report)
        print(f"[ifgan] fold {data.fold}: face-network distance between same-expression "
              f"faces of different subjects, generated / input: {report['distance_ratio']}",
              flush=True)
        return ifgan.build_inference_model(gan.generator, gan.classifier)

    @staticmethod
    def fold_metrics(model, data: FoldData, fold_dir: Path) -> dict:
        """The fold's ``identity_free`` figures (IF-GAN variants), for ``results.json``."""
        found = {}
        for key, name in (("identity_free", IDENTITY_REPORT),
                          ("recalibration", RECALIBRATION_REPORT)):
            if (fold_dir / name).exists():
                found[key] = json.loads((fold_dir / name).read_text())
        return found

    def _fit_baseline(self, data: FoldData, config: TrainConfig, fold_dir: Path,
                      mcfg: ifgan.IFGANConfig, optimizer) -> keras.Model:
        model = ifgan.build_classifier(data.num_classes, mcfg.input_size,
                                       mcfg.classifier_filters, mcfg.feature_dim,
                                       backbone=mcfg.classifier_backbone)
        pretrained = self._pretrained_classifier(config, mcfg)
        if pretrained is not None:
            _report_init(config, ifgan.transfer_classifier_weights(pretrained, model))
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        train = FaceBatches(data.x_train, data.y_train, config.batch_size, augment=True,
                            seed=config.seed + 3)
        val = FaceBatches(data.x_val, data.y_val, config.batch_size) if len(data.y_val) else None
        fit_stage(model, fold_dir / "classifier", train, config.epochs, val)
        return model

    @staticmethod
    def _pretrained_classifier(config: TrainConfig, mcfg: ifgan.IFGANConfig):
        path = config.extra.get("classifier_weights")
        if not path:
            return None
        if str(path).endswith(".keras"):
            # A whole model, e.g. a FER+ baseline run's inference.keras (8 classes: its
            # logits are left out of the transfer).
            return load_model(path)
        source = ifgan.build_classifier(mcfg.num_classes, mcfg.input_size,
                                        mcfg.classifier_filters, mcfg.feature_dim,
                                        backbone=mcfg.classifier_backbone)
        source.load_weights(path)
        return source

    @staticmethod
    def _figures(generator: keras.Model, data: FoldData, average: np.ndarray, fold_dir: Path,
                 attention: bool) -> None:
        """``generation.png`` on the fold's test faces and, with attention, ``attention.png``."""
        rows = one_face_per_subject(data.y_test, data.subj_test)
        faces = to_model_input(data.x_test[rows])
        generated = np.asarray(generator.predict(faces, verbose=0))
        plot_generation_grid(faces, generated, data.y_test[rows], data.class_names,
                             fold_dir / "generation.png", targets=average)
        if attention:
            plot_attention_maps(generator, faces[:ATTENTION_FACES], QUERY_POINTS,
                                fold_dir / "attention.png")
