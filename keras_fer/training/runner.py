"""The one runner every trainer (and the pipeline's Trainer component) calls.

``train_and_evaluate(method, config)`` writes ``config.json``, loads the experiment,
trains each fold through the method's ``fit_fold`` (resuming finished folds and
interrupted stages), evaluates on the fold's test subjects (each fold's per-face
probabilities in ``fold_<k>/test_predictions.json``), and writes ``results.json``
(the project-wide schema, accuracy in percent), ``confusion_matrix.png`` and
``per_class_accuracy.png``, then exports the last fold's inference model if asked, and
calls the method's post-run summary (``after_run``).

The run directory is owned (:mod:`keras_fer.training.rundir`: a lock, and a rerun of another
configuration refused unless ``overwrite``) and everything in it is written atomically
(:mod:`keras_fer.io_atomic`), so a run killed at any point is finished by running it again.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Protocol

import numpy as np

from keras_fer import io_atomic
from keras_fer.data import preprocess
from keras_fer.evaluation import metrics
from keras_fer.training.config import TrainConfig
from keras_fer.data.experiments import (
    Experiment,
    FoldData,
    experiment_for,
    fold_indices,
    make_fold,
)
from keras_fer.training import rundir
from keras_fer.training.distribute import distribution_scope


# Optional per-fold figures (percent) a method's ``fold_metrics`` may add, e.g. the expression
# recipe's validation and test-time-augmented accuracies; averaged into ``results.json``.
OPTIONAL_FOLD_FIGURES = (
    "valid_accuracy", "valid_accuracy_tta_flip", "valid_accuracy_tta_flip_crops",
    "test_accuracy_tta_flip", "test_accuracy_tta_flip_crops",
)


class Method(Protocol):
    """What a method plugs into the runner.

    Optionally also ``fold_metrics(model, data, fold_dir) -> dict`` (extra figures for the
    fold's ``result.json``) and ``after_run(config) -> dict | None``: the post-run summary
    (method-specific figures added to ``results.json`` and printed), called after training
    and after ``--aggregate_only``; it returns the updated results document, or ``None``.
    """

    name: str

    def fit_fold(self, data: FoldData, config: TrainConfig, fold_dir: Path):
        """Trains on ``data`` (resuming from ``fold_dir``) and returns the inference model."""


class StopAfterStage(Exception):
    """Raised by a method's ``fit_fold`` to end a fold cleanly after a named stage (e.g.
    IDFERM's ``extra stop_after="hng"``): the fold writes no ``result.json``, and a later run
    without the request resumes it from what that stage left."""

    def __init__(self, stage: str):
        super().__init__(stage)
        self.stage = stage


def predict_proba(model, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities of aligned uint8 faces through the test-time (centre crop) path."""
    x = preprocess.to_model_input(faces)
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))


TEST_PREDICTIONS = "test_predictions.json"


def _per_face(labels, subjects, proba, prefix: str = "") -> Dict:
    subjects = subjects if subjects is not None else [None] * len(labels)
    return {f"{prefix}labels": [int(y) for y in labels],
            f"{prefix}subjects": [None if s is None else str(s) for s in subjects],
            f"{prefix}probabilities": np.round(np.asarray(proba, np.float64), 5).tolist()}


def write_test_predictions(fold_dir: Path, data: FoldData, proba: np.ndarray,
                           valid_proba: Optional[np.ndarray] = None) -> Path:
    """A fold's per-face output, ``fold_<k>/test_predictions.json``: labels, subjects and
    class probabilities (5 decimals) in the fold's test order and, where the fold has
    validation faces, the same for them (``valid_*`` keys), so that runs over the same folds
    can be combined afterwards, and the combination chosen on validation faces
    (``tools/ensemble_folds.py``), without a model."""
    doc = {"fold": data.fold, **_per_face(data.y_test, data.subj_test, proba)}
    if valid_proba is not None:
        doc.update(_per_face(data.y_val, data.subj_val, valid_proba, "valid_"))
    return io_atomic.write_json(fold_dir / TEST_PREDICTIONS, doc, indent=None)


def evaluate_fold(model, data: FoldData, fold_dir: Optional[Path] = None) -> Dict:
    """Accuracy (percent) and confusion matrix of a fold's test set; with ``fold_dir``, the
    per-face probabilities are written there too (:func:`write_test_predictions`)."""
    proba = predict_proba(model, data.x_test)
    if fold_dir is not None:
        valid = predict_proba(model, data.x_val) if len(data.y_val) else None
        write_test_predictions(fold_dir, data, proba, valid)
    cm = metrics.confusion_matrix(data.y_test, proba.argmax(-1), data.num_classes)
    return {
        "fold": data.fold,
        "accuracy": metrics.accuracy_percent(cm),
        "train_subjects": data.train_subjects,
        "test_subjects": data.test_subjects,
        "confusion_matrix": cm.tolist(),
        "num_test": int(len(data.y_test)),
    }


def summarise(config: TrainConfig, exp: Experiment, folds) -> Dict:
    """The shared ``results.json`` document."""
    acc = np.array([f["accuracy"] for f in folds], dtype=np.float64)
    return {
        "method": config.method,
        "variant": config.variant,
        "dataset": config.dataset,
        "protocol": exp.protocol,
        "classes": list(exp.class_names),
        "accuracy_unit": "percent",
        "folds": sorted(folds, key=lambda f: f["fold"]),
        "mean_accuracy": float(acc.mean()) if len(acc) else float("nan"),
        "std_accuracy": float(acc.std()) if len(acc) else float("nan"),
        **{key: float(np.mean([f[key] for f in folds])) for key in OPTIONAL_FOLD_FIGURES
           if folds and all(key in f for f in folds)},
        **({"best_epochs": [f["best_epoch"] for f in sorted(folds, key=lambda f: f["fold"])]}
           if folds and all("best_epoch" in f for f in folds) else {}),
    }


def write_results(config: TrainConfig, exp: Experiment, fold_results, folds_expected: int,
                  wall_seconds: float) -> Dict:
    """Writes ``results.json``, ``confusion_matrix.png`` and ``per_class_accuracy.png``."""
    model_dir = Path(config.model_dir)
    results = summarise(config, exp, fold_results)
    results["folds_expected"] = int(folds_expected)
    results["wall_seconds"] = round(wall_seconds, 1)
    # Summed over folds, across processes and restarts (``wall_seconds`` is this call's).
    results["train_seconds"] = round(sum(f.get("train_seconds", 0.0) for f in fold_results), 1)
    io_atomic.write_json(model_dir / "results.json", results)
    if not fold_results:
        return results
    cm = np.sum([np.array(f["confusion_matrix"]) for f in fold_results], axis=0)
    partial = (f", {len(fold_results)}/{folds_expected} folds"
               if len(fold_results) < folds_expected else "")
    title = (f"{config.method}/{config.variant} on {config.dataset} ({exp.protocol}): "
             f"{results['mean_accuracy']:.2f} ± {results['std_accuracy']:.2f}%{partial}")
    metrics.plot_confusion_matrix(cm, exp.class_names, model_dir / "confusion_matrix.png", title)
    metrics.plot_per_class_accuracy(cm, exp.class_names, model_dir / "per_class_accuracy.png",
                                    title)
    return results


def _after_run(method, config: TrainConfig, results: Dict) -> Dict:
    hook = getattr(method, "after_run", None)
    return (hook(config) or results) if hook is not None else results


def aggregate(config: TrainConfig, experiment: Optional[Experiment] = None,
              method: Optional[Method] = None) -> Dict:
    """``results.json`` and plots from the folds finished so far, training nothing.

    For runs whose folds trained in separate processes (one ``--fold`` each) or were cut
    short: ``folds_expected`` in the document says how many folds the protocol has, so a
    partial result is never mistaken for a full one.
    """
    model_dir = Path(config.model_dir)
    exp = experiment or experiment_for(config)
    folds_expected = len(fold_indices(exp, config.folds, config.split_seed, config.val_fraction))
    chosen = range(folds_expected) if config.fold < 0 else [config.fold]
    fold_results = [json.loads((model_dir / f"fold_{k}" / "result.json").read_text())
                    for k in chosen if (model_dir / f"fold_{k}" / "result.json").exists()]
    if not fold_results:
        raise rundir.RunDirError(f"No finished fold (fold_<k>/result.json) in {model_dir}; "
                                 "train first, then --aggregate_only.")
    start = time.time()
    with rundir.locked(model_dir):
        results = write_results(config, exp, fold_results, len(chosen), time.time() - start)
        print(f"{config.method}/{config.variant} {config.dataset} {exp.protocol}: "
              f"{results['mean_accuracy']:.2f} ± {results['std_accuracy']:.2f}% over "
              f"{len(fold_results)}/{len(chosen)} fold(s) -> {model_dir}", flush=True)
        return _after_run(method, config, results)


def train_and_evaluate(method: Method, config: TrainConfig,
                       experiment: Optional[Experiment] = None,
                       after_fold: Optional[Callable] = None, overwrite: bool = False) -> Dict:
    """Runs the protocol of ``config`` for ``method``; returns the results document.

    Finished folds (``fold_<k>/result.json``) are not re-run, so a crashed run restarted
    with the same ``--model_dir`` picks up where it stopped. The dataset is loaded, and the
    folder checked against its ``config.json`` (``overwrite`` empties it instead), before
    ``config.json`` is written.

    Raises:
        rundir.RunDirError: the folder is a file, in use, or holds another configuration.
    """
    model_dir = Path(config.model_dir)
    if config.distribution != "none" and not getattr(method, "supports_distribution", False):
        raise ValueError(f"--distribution={config.distribution} is supported by IDEnNet's "
                         f"trainer only; {method.name} trains on one device.")
    created = not model_dir.exists()
    with rundir.locked(model_dir, config.fold):
        try:
            rundir.prepare(config, overwrite)
            start = time.time()
            exp = experiment or experiment_for(config)
            all_idx = fold_indices(exp, config.folds, config.split_seed, config.val_fraction)
            if config.fold >= len(all_idx):
                raise ValueError(f"--fold={config.fold} but the protocol has {len(all_idx)} "
                                 "fold(s).")
        except BaseException:
            if created:
                rundir.remove_if_only_lock(model_dir)
            raise
        config.write(model_dir)
        results = _run_folds(method, config, exp, all_idx, after_fold, start)
        if "stopped_after" in results:
            return results
        return _after_run(method, config, results)


def _run_folds(method: Method, config: TrainConfig, exp: Experiment, all_idx,
               after_fold: Optional[Callable], start: float) -> Dict:
    import keras
    model_dir = Path(config.model_dir)
    chosen = range(len(all_idx)) if config.fold < 0 else [config.fold]

    fold_results, model, data, stopped = [], None, None, {}
    for k in chosen:
        fold_dir = model_dir / f"fold_{k}"
        done = fold_dir / "result.json"
        if done.exists():
            logging.info("fold %d already done (%s): skipping", k, done)
            fold_results.append(json.loads(done.read_text()))
            continue
        fold_dir.mkdir(parents=True, exist_ok=True)
        data = make_fold(exp, k, all_idx[k], config.identity_fraction, config.split_seed)
        print(f"[{config.method}/{config.variant}] fold {k + 1}/{len(all_idx)}: "
              f"train {len(data.y_train)} val {len(data.y_val)} test {len(data.y_test)} faces, "
              f"{len(data.test_subjects)} test subjects", flush=True)
        fold_start = time.time()
        with distribution_scope(config.distribution, config.batch_size) as plan:
            if config.distribution != "none":
                print(f"[{config.method}/{config.variant}] {config.distribution}: "
                      f"{plan.num_replicas} replicas, global batch {config.batch_size}",
                      flush=True)
            # Each fold starts from the same random state, resumed or not (the methods' models,
            # initialisers and augmenters draw from it).
            keras.utils.set_random_seed(config.seed + k)
            try:
                model = method.fit_fold(data, config, fold_dir)
            except StopAfterStage as stop:
                stopped[k] = stop.stage
                model = None
        if model is None:
            print(f"[{config.method}/{config.variant}] fold {k}: stopped after stage "
                  f"{stopped[k]!r} as asked (extra stop_after); run again without it to finish "
                  "the fold", flush=True)
            continue
        # Evaluation runs outside the scope: there the model takes any batch size.
        result = evaluate_fold(model, data, fold_dir)
        if hasattr(method, "fold_metrics"):
            result.update(method.fold_metrics(model, data, fold_dir))
        # Training time of this fold in this process (a resumed fold counts only the rest).
        result["train_seconds"] = round(time.time() - fold_start, 1)
        with io_atomic.atomic_path(fold_dir / "inference.keras") as tmp:
            model.save(tmp)
        io_atomic.write_json(done, result)
        fold_results.append(result)
        if after_fold is not None:
            after_fold(model, data, fold_dir)
        print(f"[{config.method}/{config.variant}] fold {k}: accuracy {result['accuracy']:.2f}%",
              flush=True)

    if stopped and not fold_results:
        return {"stopped_after": sorted(set(stopped.values())), "folds_stopped": sorted(stopped),
                "model_dir": str(model_dir)}
    results = write_results(config, exp, fold_results, len(all_idx), time.time() - start)
    if config.export and stopped:
        print(f"[{config.method}/{config.variant}] not exported: fold(s) {sorted(stopped)} "
              "stopped early", flush=True)
    elif config.export:
        if model is None:
            last = chosen[-1] if isinstance(chosen, list) else len(all_idx) - 1
            model = keras.saving.load_model(model_dir / f"fold_{last}" / "inference.keras")
            data = make_fold(exp, last, all_idx[last], config.identity_fraction, config.split_seed)
        export_fold_model(model, data, config)
    print(f"{config.method}/{config.variant} {config.dataset} {exp.protocol}: "
          f"{results['mean_accuracy']:.2f} ± {results['std_accuracy']:.2f}% over "
          f"{len(fold_results)} fold(s) in {results['wall_seconds']:.0f}s -> {model_dir}",
          flush=True)
    return results


def export_fold_model(model, data: FoldData, config: TrainConfig) -> Dict:
    """Exports an inference model in ``config.export`` formats under ``<model_dir>/export``.

    The export is written to a temporary folder that replaces ``export/`` once complete: a
    killed export leaves the previous one (or none), and a finished run re-exports.
    """
    import dataclasses

    out = Path(config.model_dir) / "export"
    with io_atomic.atomic_dir(out) as tmp:
        result = _export(model, data, config, tmp)
    return dataclasses.replace(result, artifacts={
        name: out / Path(path).relative_to(tmp) for name, path in result.artifacts.items()})


def _export(model, data: FoldData, config: TrainConfig, out_dir: Path):
    from keras_fer.export import export_fold

    return export_fold(model, data, config.export, out_dir)
