"""The expression recipe as a runner ``Method``: one stage per fold, epoch chosen on validation.

``fit_fold`` builds :func:`keras_fer.models.expression.build_expression_model` (backbone =
``config.variant``), optionally starts it from ``init`` and a frozen ``teacher``, and trains
:class:`keras_fer.models.expression_step.RecipeModel` on the fold's training faces in
``fold_dir/train``: ``history.csv`` (loss, learning_rate, val_accuracy, val_loss per
epoch), ``backup/`` (resume mid-run), ``timing.json``, ``best.weights.h5`` + ``best.json``
(the epoch with the best validation accuracy, ties broken by the lower validation loss, with
the EMA weights when EMA is on; the last epoch when the fold has no validation faces). Test
faces are never looked at before the final report: :meth:`ExpressionMethod.fold_metrics` adds
validation and test accuracy with and without test-time augmentation to the fold's
``result.json``.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import keras
import numpy as np

from keras_fer import io_atomic
from keras_fer.data import labels as labels_lib
from keras_fer.models.expression import BACKBONES, build_expression_model
from keras_fer.models.expression_step import RecipeModel
from keras_fer.training import recipe as recipe_lib
from keras_fer.training.config import TrainConfig
from keras_fer.data.experiments import FoldData
from keras_fer.training.stages import Backup, HistoryCSV, StageTimer

STAGE = "train"


def training_targets(data: FoldData, recipe: recipe_lib.Recipe) -> np.ndarray:
    """``(N, K)`` float32 targets: FER+'s vote distribution in the protocol's class order
    (``soft_targets`` and the data has it) or one-hot majority labels, then label smoothing."""
    k = data.num_classes
    targets = np.eye(k, dtype=np.float32)[data.y_train]
    if recipe.soft_targets and data.soft_train is not None:
        columns = [labels_lib.CANONICAL.index(c) for c in data.class_names]
        soft = np.asarray(data.soft_train, np.float32)[:, columns]
        total = soft.sum(-1, keepdims=True)
        targets = np.where(total > 0, soft / np.maximum(total, 1e-12), targets)
    if recipe.label_smoothing:
        targets = (1.0 - recipe.label_smoothing) * targets + recipe.label_smoothing / k
    return targets.astype(np.float32)


def refresh_batch_norm(net: keras.Model, faces: np.ndarray, batch_size: int) -> None:
    """Re-estimates every BatchNormalization's moving statistics as the plain average over
    clean (centre-crop) ``faces`` (precise BN).

    The moving statistics of training are taken on augmented batches (cutmix, erased
    rectangles of noise) and, with EMA, for other weights than the evaluated ones. Measured
    on CK+ with ``face_resnet``, whose 256-d feature varies little between faces: validation
    accuracy jumped between 7% and 83% from epoch to epoch while the loss fell steadily.
    """
    norms = [layer for layer in _all_layers(net)
             if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return
    momenta = [layer.momentum for layer in norms]
    x = recipe_lib.tta_views(faces, "none")[0]
    try:
        for k, start in enumerate(range(0, len(x), batch_size)):
            for layer in norms:
                layer.momentum = k / (k + 1.0)  # running mean of the batch statistics
            net(x[start:start + batch_size], training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum


def _all_layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


class SelectOnValidation(keras.callbacks.Callback):
    """Validation accuracy of the inference model each epoch (into the logs, so history.csv
    and the progress line get it) and the best epoch's weights kept in ``stage_dir``.

    Placed after ``SwapEMAWeights(swap_on_epoch=True)``, it sees the EMA weights. Without
    validation faces every epoch is "best", i.e. the last one is kept. ``best.json`` makes the
    choice survive a restart.
    """

    def __init__(self, net: keras.Model, faces: np.ndarray, labels: np.ndarray,
                 stage_dir: Path, batch_size: int, bn_faces: np.ndarray | None = None):
        super().__init__()
        self.net, self.faces, self.labels, self.bn_faces = net, faces, labels, bn_faces
        self.best_path, self.info_path = stage_dir / "best.weights.h5", stage_dir / "best.json"
        self.batch_size = batch_size
        self.best = json.loads(self.info_path.read_text()) if self.info_path.exists() else None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        optimizer = self.model.optimizer
        # A MultiOptimizer (trunk_lr_multiplier): the rate of its default (head) optimizer.
        if isinstance(optimizer, keras.optimizers.MultiOptimizer):
            optimizer = next(o for o in optimizer.optimizers if o.name == "head")
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        if self.bn_faces is not None:
            refresh_batch_norm(self.net, self.bn_faces, self.batch_size)
        score = loss = None
        if len(self.labels):
            probs = recipe_lib.predict_tta(self.net, self.faces, "none", self.batch_size)
            score = recipe_lib.accuracy_percent(probs, self.labels)
            loss = validation_loss(probs, self.labels)
            logs["val_accuracy"], logs["val_loss"] = score, loss
        if self._better(score, loss):
            with io_atomic.atomic_path(self.best_path) as tmp:
                self.net.save_weights(str(tmp))
            self.best = {"epoch": epoch + 1, "valid_accuracy": score, "valid_loss": loss}
            io_atomic.write_json(self.info_path, self.best)

    def _better(self, score, loss) -> bool:
        """Higher validation accuracy wins; at equal accuracy the lower validation loss does.
        A CK+ fold's inner split (~90 faces) reaches 100% within a few epochs on most folds,
        and on accuracy alone the first such epoch was kept. A ``best.json`` written before
        the loss was recorded keeps its epoch on ties."""
        if self.best is None or score is None:
            return True
        if score != self.best["valid_accuracy"]:
            return score > self.best["valid_accuracy"]
        return self.best.get("valid_loss") is not None and loss < self.best["valid_loss"]


def validation_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of the true class (probabilities clipped at 1e-7)."""
    picked = probs[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)]
    return float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))


class ExpressionMethod:
    """Backbones of :mod:`keras_fer.models.expression` with the recipe of
    :class:`keras_fer.training.recipe.Recipe` (``config.extra``), for the runner."""

    name = "expression"

    def build(self, config: TrainConfig, num_classes: int,
              recipe: recipe_lib.Recipe, pretrained: bool | None = None) -> keras.Model:
        if config.variant not in BACKBONES:
            raise ValueError(f"Expression backbones are {BACKBONES}. Received: variant="
                             f"{config.variant!r}")
        use_dlib = recipe.pretrained and not recipe.init if pretrained is None else pretrained
        return build_expression_model(
            config.variant, num_classes, input_size=recipe.input_size, dropout=recipe.dropout,
            weights="dlib" if use_dlib else None,
            weights_file=recipe.face_weights if use_dlib else "")

    def fit_fold(self, data: FoldData, config: TrainConfig, fold_dir: Path) -> keras.Model:
        recipe = recipe_lib.Recipe.from_extra(config.extra).for_backbone(config.variant)
        stage_dir = fold_dir / STAGE
        stage_dir.mkdir(parents=True, exist_ok=True)
        policy = keras.config.dtype_policy()
        if recipe.mixed_precision:
            keras.config.set_dtype_policy("mixed_bfloat16")
        try:
            net = self._train(data, config, recipe, stage_dir)
        finally:
            keras.config.set_dtype_policy(policy)
        # Every variable gets a fresh value (JAX donates the training buffers).
        net.load_weights(str(stage_dir / "best.weights.h5"))
        if recipe.mixed_precision:
            # Exports and CPU inference want float32 layers: same architecture, same weights.
            trained, net = net, self.build(config, data.num_classes, recipe, pretrained=False)
            net.set_weights(trained.get_weights())
        best = json.loads((stage_dir / "best.json").read_text())
        how = (f"chosen (valid accuracy {best['valid_accuracy']:.2f})"
               if best.get("valid_accuracy") is not None else "kept (the last: no valid faces)")
        print(f"[expression/{config.variant}] fold {data.fold}: epoch {best['epoch']} {how}",
              flush=True)
        return net

    def _train(self, data, config, recipe, stage_dir: Path) -> keras.Model:
        net = self.build(config, data.num_classes, recipe)
        if recipe.init:
            from keras_fer.models.transfer import init_from

            init_from(net, recipe.init, "expression model")
        done = stage_dir / "done.json"
        if done.exists():
            logging.info("%s already trained: keeping %s", stage_dir, stage_dir / "best.json")
            return net
        teacher = None
        if recipe.teacher:
            from keras_fer.models.loading import load_model

            teacher = load_model(recipe.teacher)
            if teacher.output_shape[-1] != data.num_classes:
                raise ValueError(f"The teacher {recipe.teacher} has {teacher.output_shape[-1]} "
                                 f"classes, the data {data.num_classes}.")
        batches = recipe_lib.RecipeBatches(data.x_train, training_targets(data, recipe),
                                           config.batch_size, seed=config.seed + data.fold)
        trainer = RecipeModel(net, recipe, teacher, seed=config.seed + data.fold)
        trainer(batches[0][0])  # built before fit, as BackupAndRestore wants
        trainer.compile(
            optimizer=recipe_lib.make_optimizer(recipe, config.lr, config.epochs, len(batches)),
            # TensorFlow's XLA has no kernel for the affine resampling; JAX jits it.
            jit_compile=keras.backend.backend() != "tensorflow")
        # Order matters: the backup holds the raw weights, selection sees the EMA ones, and
        # history.csv the validation accuracy the selection adds to the logs.
        # (A kill between the backup and the history row loses that epoch's row, never
        # duplicates it.)
        callbacks = [Backup(str(stage_dir / "backup"))]
        if recipe.ema:
            callbacks.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
        callbacks += [
            SelectOnValidation(net, data.x_val, data.y_val, stage_dir, recipe.eval_batch_size,
                               bn_faces=self._bn_faces(data, recipe, config.seed)),
            HistoryCSV(stage_dir / "history.csv"),
            StageTimer(stage_dir / "timing.json", len(batches) * batches.batch_size),
        ]
        trainer.fit(batches, epochs=config.epochs, callbacks=callbacks,
                    verbose=1 if sys.stdout.isatty() else 2)
        io_atomic.write_json(done, {"epochs": config.epochs})
        shutil.rmtree(stage_dir / "backup", ignore_errors=True)
        return net

    @staticmethod
    def _bn_faces(data: FoldData, recipe, seed: int) -> np.ndarray | None:
        if recipe.precise_bn_faces <= 0:
            return None
        rng = np.random.default_rng(seed)
        n = min(recipe.precise_bn_faces, len(data.x_train))
        return data.x_train[np.sort(rng.permutation(len(data.x_train))[:n])]

    def fold_metrics(self, model: keras.Model, data: FoldData, fold_dir: Path) -> dict:
        """Validation and test accuracy (percent) without and with test-time augmentation,
        and the chosen epoch; the runner adds them to the fold's ``result.json``."""
        recipe = recipe_lib.Recipe.from_extra({})
        best = json.loads((fold_dir / STAGE / "best.json").read_text())
        out = {"best_epoch": best["epoch"],
               "selected_on": "valid" if len(data.y_val) else "last_epoch"}
        for split, faces, labels in (("valid", data.x_val, data.y_val),
                                     ("test", data.x_test, data.y_test)):
            if not len(labels):
                continue
            for mode in recipe_lib.TTA_MODES:
                if split == "test" and mode == "none":
                    continue  # the runner's own "accuracy"
                probs = recipe_lib.predict_tta(model, faces, mode, recipe.eval_batch_size)
                suffix = "" if mode == "none" else f"_tta_{mode}"
                out[f"{split}_accuracy{suffix}"] = recipe_lib.accuracy_percent(probs, labels)
        return out
