"""IDFERM's training procedure (hard negative generation + radial metric learning), as a
runner ``Method``.

Variant ``rml`` trains, in each fold and each stage in its own resumable folder:

1. ``pretrain_expression`` / ``pretrain_identity``: the two frozen auxiliary networks of the
   HNG losses. The paper used VGG-Face (perceptual loss) and Light-CNN (identity loss),
   which are not available offline. The identity loss runs through dlib's face network
   (``extra identity="face_resnet"``, the default; ``"deepid"``: a DeepID identity
   classifier trained on the fold's training subjects plus ORL identities); the perceptual
   loss through a ResNet expression classifier trained on the fold's training faces
   (``extra perceptual="expression"``, the default) or the face network's late conv
   features (``"face_resnet"``): see :mod:`keras_fer.training.idferm_identity`.
2. ``hng``: the encoder-decoder GAN (``models.hng_step.HNGModel``) on pairs (expressive
   training face, real neutral face of the same subject). Only training subjects' neutral
   frames are used; each epoch draws one of the subject's neutral frames per face and flips
   both faces of a pair together. A grid of validation faces / generated / real neutral
   faces is written per epoch (``hng/grids/``). Afterwards the identity-preservation rate of
   faces generated from the held-out test subjects goes to ``hng.json``, and the neutral
   faces generated from the training faces (stage 4's references, uint8, ~3 MB a CK+ fold)
   to ``hng_references.npz``: with both files in the fold folder, stages 1-2 are skipped,
   so a fold can run its HNG in one process (``extra stop_after="hng"`` ends the fold
   there, writing no ``result.json``) and its RML stages in another, e.g. in two device
   calls (``tools/gpu_run.py --keep=hng_references.npz``: JSON files come back anyway).
3. ``pretrain_rml``: the RML network's conv groups and EC branch with softmax (the paper
   pretrains on Multi-PIE with SGD; we pretrain on the fold's training faces, with Adam:
   see :func:`rml_pretrain_optimizer`).
4. ``finetune``: softmax + lambda * RML with batches of ``per_class`` faces of every class,
   each query's reference being the neutral face HNG generates from it; query and
   reference get the same random flip / rotation / crop.

Variant ``baseline`` runs stages 3 and 4 with softmax only: the same network, folds,
batches and epochs. Both return the conv groups + EC branch as the inference model.

Method settings come from ``--extra`` (JSON): ``hng`` / ``rml`` (fields of ``HNGConfig`` /
``RMLConfig``: model sizes; ``"rml": {"trunk": "resnet18_std"}`` puts the standard ResNet-18
under both RML branches, for ``rml_init`` from the shipped FER+ model, rebuilt as .keras by
tools/keras_from_savedmodel.py), ``hng_epochs`` (default ``pretrain_epochs``), ``hng_lr`` (2e-4,
Adam with beta_1 0.5), ``hng_batch_size`` (64), ``hng_weights`` (``HNGModel`` loss weights),
``hng_init`` (a generator pretrained as a face autoencoder by tools/pretrain_hng.py, same
``hng`` settings: each fold's HNG starts from it; see ``training.hng_pretrain``),
``expression_depth`` (ResNet 12 or 18), ``clipnorm`` (5.0: global gradient-norm clip of the
fine-tuning stage, ``null`` for none), ``identity_lr`` / ``identity_epochs`` (Adam 1e-3 with
cosine decay for ``pretrain_epochs``; the CK+ flagfiles use 100: the DeepID identity net has
no batch normalisation and stayed at chance under the ResNets' SGD),
``rml_pretrain_optimizer`` / ``rml_pretrain_lr`` (``"adam"`` at 1e-3, or ``"sgd"`` at
``--pretrain_lr``: the RML network's pretraining), ``rml_init`` (a ``.keras`` RML network,
e.g. FER+-pretrained, to start from), ``per_class`` (2),
``weight_decay`` (1e-4), ``verification_pairs`` (2000), ``identity`` / ``perceptual`` /
``identity_far`` (above), ``stop_after`` (``"hng"``: end each fold after stage 2; variant
``rml`` only). An unknown key is an error.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np

from keras_fer import io_atomic
from keras_fer.data import preprocess
from keras_fer.data.augment import FaceBatches
from keras_fer.evaluation.hng_plots import HNGGridCallback
from keras_fer.losses.hng import feature_extractor
from keras_fer.models import idferm
from keras_fer.models.deepid import build_deepid
from keras_fer.models.resnet import RESNET_BLOCKS, build_resnet
from keras_fer.models.transfer import init_from
from keras_fer.training.config import TrainConfig
from keras_fer.data.experiments import FoldData
from keras_fer.models.face_embedding import check_extra
from keras_fer.training import hng_pretrain, idferm_identity
from keras_fer.training.idferm_batches import (  # noqa: F401 (re-exported)
    NeutralPairs, QueryBatches, neutral_targets, to_unit)
from keras_fer.training.idferm_identity import generate_neutral, identity_preservation
from keras_fer.training.optim import config_sgd, steps_per_epoch
from keras_fer.training.runner import StopAfterStage
from keras_fer.training.settings import ConfigError
from keras_fer.training.stages import fit_stage

VARIANTS = ("rml", "baseline")
EXTRA_KEYS = ("hng", "rml", "hng_epochs", "hng_lr", "hng_batch_size", "hng_weights",
              "expression_depth", "clipnorm", "identity_lr", "identity_epochs",
              "rml_pretrain_optimizer", "rml_pretrain_lr", "rml_init", "per_class",
              "weight_decay", "verification_pairs", "identity", "perceptual", "identity_far",
              "stop_after", "hng_init")
HNG_REPORT = "hng.json"
# The faces generated from the fold's test subjects, with their inputs and subjects, for
# idferm_identity.neutrality (benchmarks/identity.py --hng_probe), which needs the test
# subjects' real neutral frames that a fold never holds.
HNG_TEST_FACES = "hng_test_faces.npz"
HNG_REFERENCES = "hng_references.npz"
STOP_STAGES = ("hng",)
GRID_FACES = 8


def rml_pretrain_optimizer(config: TrainConfig, steps: int) -> keras.optimizers.Optimizer:
    """The RML network's pretraining optimizer (``extra rml_pretrain_optimizer``).

    ``"adam"`` (the default): Adam at ``extra rml_pretrain_lr`` (1e-3), cosine decay.
    ``"sgd"``: the paper's SGD at ``--pretrain_lr`` (momentum 0.9, lr /10 at 50% and 75%).

    The paper pretrains on 204k Multi-PIE faces with SGD at 0.1, halving the rate and
    reloading the best network whenever the loss climbs; here the network (no batch
    normalisation) meets a few hundred CK+ faces. On CK+ 8 classes (562 training faces, half
    of them neutral) SGD at 0.1 or 0.01 sat at the majority class (training accuracy 0.495)
    for all 40 epochs on JAX and 16 on TensorFlow, in every fold of the GPU run; fine-tuning
    then started from a one-class network and, with the RML term, collapsed to uniform
    outputs. Adam reaches 0.82 training accuracy in the same 40 epochs (fold 0, training
    split only).
    """
    choice = config.extra.get("rml_pretrain_optimizer", "adam")
    epochs = max(config.pretrain_epochs, 1)
    if choice == "adam":
        lr = keras.optimizers.schedules.CosineDecay(config.extra.get("rml_pretrain_lr", 1e-3),
                                                    epochs * max(steps, 1))
        return keras.optimizers.Adam(lr)
    if choice == "sgd":
        return config_sgd(config, config.pretrain_lr, epochs, steps=steps)
    raise ValueError(f"extra rml_pretrain_optimizer must be 'adam' or 'sgd'; got {choice!r}.")


def _sized(cls, values: dict, **fixed):
    """A frozen config dataclass from ``--extra`` JSON values (lists become tuples)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} field(s) {unknown} in --extra. Known: "
                         f"{sorted(known)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**{**values, **fixed})


class IDFERMMethod:
    """IDFERM variants ``rml`` (HNG + RML) and ``baseline`` (softmax only) for the runner."""

    name = "idferm"

    @staticmethod
    def after_run(config: TrainConfig) -> dict:
        """Post-run summary: each fold's HNG identity-preservation rate into ``results.json``
        (printed); returns the updated results document."""
        results = add_hng_results(config.model_dir)
        if "mean_identity_preserved_percent" in results:
            print(f"idferm: identity preserved in "
                  f"{results['mean_identity_preserved_percent']:.1f}% of faces generated from "
                  "held-out subjects", flush=True)
        return results

    def rml_config(self, config: TrainConfig, data: FoldData) -> idferm.RMLConfig:
        return _sized(idferm.RMLConfig, config.extra.get("rml", {}),
                      num_classes=data.num_classes, use_rml=config.variant == "rml")

    def build_rml(self, config: TrainConfig, data: FoldData) -> idferm.RMLModel:
        """The RML network (in its trainer), from ``extra rml_init`` when given: e.g. the
        ``inference.keras`` of a FER+ baseline run (conv groups + EC branch; its classifier
        head is skipped, the ML branch starts fresh), or with ``rml trunk="resnet18_std"`` the
        FER+ ResNet-18 (its trunk copied by name; EC and ML branches start fresh)."""
        model = idferm.build_rml(self.rml_config(config, data))
        init_from(model.network, config.extra.get("rml_init"), "RML network")
        return model

    def pretrain_expression(self, config, data, fold_dir: Path) -> keras.Model:
        if idferm_identity.perceptual_setting(config.extra) != "expression":
            return idferm_identity.face_perceptual_model()
        depth = config.extra.get("expression_depth", 12)
        model = build_resnet(depth, data.num_classes, name="hng_expression")
        steps = steps_per_epoch(len(data.y_train), config.batch_size)
        model.compile(optimizer=config_sgd(config, config.pretrain_lr, config.pretrain_epochs,
                                           steps=steps),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        train = FaceBatches(data.x_train, data.y_train, config.batch_size, augment=True,
                            seed=config.seed)
        fit_stage(model, fold_dir / "pretrain_expression", train, config.pretrain_epochs)
        # The last two residual stages: mid-level and top expression features (paper: conv5).
        last = len(RESNET_BLOCKS[depth])
        return feature_extractor(model, [f"hng_expression_block{last - 1}_out",
                                         f"hng_expression_block{last}_out"])

    def pretrain_identity(self, config, data, fold_dir: Path) -> keras.Model:
        if idferm_identity.identity_setting(config.extra) != "deepid":
            return idferm_identity.face_identity_model()
        keep = data.id_train >= 0
        x, y = data.x_train[keep], data.id_train[keep]
        if data.identity_x is not None:
            x, y = np.concatenate([x, data.identity_x]), np.concatenate([y, data.identity_y])
        if len(np.unique(y)) < 2:
            raise ValueError("The identity network needs at least 2 identities: this fold has "
                             f"{len(np.unique(y))}.")
        model = build_deepid(int(data.num_identities), name="hng_identity")
        steps = steps_per_epoch(len(y), config.batch_size)
        # Adam: DeepID (no batch normalisation) sat at chance for 40 epochs of SGD at 0.1 or
        # 0.01 on CK+ + ORL; Adam 1e-3 gets 43% training accuracy (146 identities) in 40.
        epochs = config.extra.get("identity_epochs", config.pretrain_epochs)
        lr = keras.optimizers.schedules.CosineDecay(config.extra.get("identity_lr", 1e-3),
                                                    max(epochs * steps, 1))
        model.compile(optimizer=keras.optimizers.Adam(lr),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        train = FaceBatches(x, y, config.batch_size, augment=True, seed=config.seed + 1)
        fit_stage(model, fold_dir / "pretrain_identity", train, epochs)
        # Paper Eq. 6: the last two layers; the last (the 160-d feature) is the embedding.
        return feature_extractor(model, ["hng_identity_concat", "hng_identity_feature"])

    def train_hng(self, config, data, fold_dir: Path, perceptual, identity) -> keras.Model:
        extra = config.extra
        hcfg = _sized(idferm.HNGConfig, extra.get("hng", {}))
        size = hcfg.image_size
        train_subjects = set(data.subj_train.tolist())
        own = np.isin(data.neutral_subjects, list(train_subjects))
        pairs = NeutralPairs(
            preprocess.resize_uint8(data.x_train, size), data.subj_train,
            preprocess.resize_uint8(data.neutral_faces[own], size), data.neutral_subjects[own],
            extra.get("hng_batch_size", 64), seed=config.seed + 3)
        print(f"[idferm] HNG: {len(pairs.faces)} (expressive, neutral) training pairs of "
              f"{len(set(data.neutral_subjects[own].tolist()))} subjects", flush=True)
        hng = hng_pretrain.make_hng(hcfg, perceptual, identity, extra.get("hng_weights", {}),
                                    extra.get("hng_lr", 2e-4))
        if extra.get("hng_init"):
            print(f"[idferm] {hng_pretrain.load_generator(hng, extra['hng_init'])}", flush=True)
        epochs = extra.get("hng_epochs", config.pretrain_epochs)
        grid = self._grid(data, size, fold_dir / "hng" / "grids")
        hng_pretrain.fit_hng(hng, fold_dir / "hng", pairs, epochs,
                             [grid] if grid is not None else [])
        return hng.generator

    def _grid(self, data: FoldData, size: int, out_dir: Path) -> HNGGridCallback | None:
        """Grid of validation faces (unseen by HNG) with real neutrals; else training faces."""
        for faces, subjects in ((data.x_val, data.subj_val), (data.x_train, data.subj_train)):
            targets = neutral_targets(subjects, data.neutral_subjects)
            rows = [i for i, t in enumerate(targets) if len(t)]
            if rows:
                pick = np.array(rows)[np.linspace(0, len(rows) - 1, GRID_FACES).astype(int)]
                pick = np.unique(pick)
                neutrals = data.neutral_faces[[targets[i][0] for i in pick]]
                return HNGGridCallback(to_unit(preprocess.resize_uint8(faces[pick], size)),
                                       to_unit(preprocess.resize_uint8(neutrals, size)), out_dir)
        return None

    def _hng_stages(self, config, data: FoldData, fold_dir: Path) -> np.ndarray:
        """Stages 1-2; writes ``hng_references.npz`` then ``hng.json``; returns the neutral
        faces generated from the training faces."""
        perceptual = self.pretrain_expression(config, data, fold_dir)
        identity = self.pretrain_identity(config, data, fold_dir)
        generator = self.train_hng(config, data, fold_dir, perceptual, identity)
        references = generate_neutral(generator, data.x_train)
        generated_test = generate_neutral(generator, data.x_test)
        with io_atomic.atomic_path(fold_dir / HNG_TEST_FACES) as tmp:
            np.savez_compressed(tmp, inputs=data.x_test, generated=generated_test,
                                subjects=np.asarray(data.subj_test).astype(str))
        report = identity_preservation(
            data, generated_test,
            config.extra.get("verification_pairs", 2000), config.seed,
            config.extra.get("identity_far", idferm_identity.DEFAULT_FAR))
        with io_atomic.atomic_path(fold_dir / HNG_REFERENCES) as tmp:
            np.savez_compressed(tmp, references=references)
        io_atomic.write_json(fold_dir / HNG_REPORT, report)
        print(f"[idferm] fold {data.fold}: identity preserved in "
              f"{report['identity_preserved_percent']:.1f}% of {report['num_test_faces']} "
              f"faces generated from held-out subjects", flush=True)
        return references

    def fit_fold(self, data: FoldData, config: TrainConfig, fold_dir: Path) -> keras.Model:
        if config.variant not in VARIANTS:
            raise ValueError(f"Unknown IDFERM variant {config.variant!r}. Known: {VARIANTS}")
        check_extra(config.extra, EXTRA_KEYS, "IDFERM")
        idferm_identity.identity_setting(config.extra)
        idferm_identity.perceptual_setting(config.extra)
        stop_after = _stop_after(config)
        references = None
        if config.variant == "rml":
            if data.neutral_faces is None or data.subj_train is None:
                raise ValueError(
                    f"Variant 'rml' needs real neutral frames per subject; {config.dataset} "
                    "has none (use synthetic, ckplus48 with ckplus_neutral next to it, or "
                    "ckplus_neutral), or run --variant=baseline.")
            references = load_references(fold_dir, len(data.x_train))
            if references is None:
                references = self._hng_stages(config, data, fold_dir)
            if stop_after == "hng":
                raise StopAfterStage("hng")

        model = self.build_rml(config, data)
        pretrain = idferm.inference_model(model)
        steps = steps_per_epoch(len(data.y_train), config.batch_size)
        pretrain.compile(optimizer=rml_pretrain_optimizer(config, steps),
                         loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        fit_stage(pretrain, fold_dir / "pretrain_rml",
                  FaceBatches(data.x_train, data.y_train, config.batch_size, augment=True,
                              seed=config.seed + 4), config.pretrain_epochs)

        train = QueryBatches(data.x_train, data.y_train, references,
                             config.extra.get("per_class", 2), seed=config.seed + 5)
        # The RML term is quadratic in the embedding, so its gradient grows with the
        # embedding's scale: on CK+ (JAX, lr 0.01, after 40 pretraining epochs) it ran to inf
        # within 34 steps. Clipping the global gradient norm keeps the joint loss finite.
        model.compile(optimizer=config_sgd(config, config.lr, config.epochs, steps=len(train),
                                     global_clipnorm=config.extra.get("clipnorm", 5.0)))
        val = FaceBatches(data.x_val, data.y_val, config.batch_size) if len(data.y_val) else None
        fit_stage(model, fold_dir / "finetune", train, config.epochs, val)
        return idferm.inference_model(model)


def _stop_after(config: TrainConfig) -> str | None:
    value = config.extra.get("stop_after")
    if value is None:
        return None
    if value not in STOP_STAGES or config.variant != "rml":
        raise ConfigError(f"IDFERM: extra stop_after must be one of {STOP_STAGES} with "
                          f"--variant=rml. Received: stop_after={value!r}, "
                          f"variant={config.variant!r}")
    return value


def load_references(fold_dir: str | Path, num_train: int) -> np.ndarray | None:
    """The fold's HNG references (neutral faces generated from its ``num_train`` training
    faces) when an earlier process finished its HNG (``hng_references.npz`` and ``hng.json``
    both there), else ``None``.

    Raises:
        ConfigError: the file holds another number of faces (another fold or protocol).
    """
    fold_dir = Path(fold_dir)
    path = fold_dir / HNG_REFERENCES
    if not (path.exists() and (fold_dir / HNG_REPORT).exists()):
        return None
    with np.load(path) as stored:
        references = stored["references"]
    if len(references) != num_train:
        raise ConfigError(f"{path} holds {len(references)} generated faces but this fold has "
                          f"{num_train} training faces: it comes from another fold or "
                          "protocol; remove it (and hng.json) or use another --model_dir.")
    print(f"[idferm] {fold_dir.name}: HNG references loaded from {path} (stages 1-2 skipped)",
          flush=True)
    return references


def add_hng_results(model_dir: str | Path) -> dict:
    """Adds each fold's ``hng.json`` identity-preservation rate to ``results.json``.

    Returns:
        The updated results document (unchanged when no fold has an ``hng.json``).
    """
    path = Path(model_dir) / "results.json"
    results = json.loads(path.read_text())
    rates, frame_rates = [], []
    for fold in results["folds"]:
        hng = Path(model_dir) / f"fold_{fold['fold']}" / HNG_REPORT
        if hng.exists():
            report = json.loads(hng.read_text())
            fold["identity_preserved_percent"] = report["identity_preserved_percent"]
            rates.append(fold["identity_preserved_percent"])
            if "frame60" in report:  # hng.json of session 9 and later
                fold["identity_preserved_percent_frame60"] = report["frame60"][
                    "identity_preserved_percent"]
                frame_rates.append(fold["identity_preserved_percent_frame60"])
    if rates:
        results["mean_identity_preserved_percent"] = float(np.mean(rates))
        if len(frame_rates) == len(rates):
            results["mean_identity_preserved_percent_frame60"] = float(np.mean(frame_rates))
        io_atomic.write_json(path, results)
    return results
