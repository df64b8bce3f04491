"""Chooses how much of a FER+ model's training class prior its predictions divide out, on FER+
Valid, and writes ``class_prior.json`` beside the model and its twins.

FER+ Train is mostly neutral (36%) and happy (27%) faces; disgust, contempt and fear are
0.6-2.3%. A model trained on it answers those classes rarely, also where they are common (a
posed photo set has every expression about equally often). ``keras_fer.Predictor`` divides the
probabilities by the training prior to the power ``tau`` (:mod:`keras_fer.inference.prior`);
this tool picks ``tau`` in 0, 0.05, ..., 1 by balanced accuracy (mean per-class recall) on FER+
Valid, from the model's own probabilities as the predictor computes them with ``--tta`` (its
default: one pass; recorded as ``"tta"``). FER+ Test is scored with and without, for the
record only; nothing is chosen on it.

    python tools/fit_class_prior.py --model=saved_models/expression_ferplus_resnet18 \
        --twins=saved_models/expression_ferplus_resnet18_tflite/tflite

writes ``<model>/<version>/assets.extra/class_prior.json`` (a SavedModel) or
``<folder>/class_prior.json`` (a ``.tflite`` file), the same file into each twin (a folder of
``.tflite`` files, or a SavedModel), and prints a one-line summary.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Dict, List, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_fer.inference.defaults import DEFAULT_TTA, TTAS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def prior_destination(path: Path) -> Path:
    """Where a model's ``class_prior.json`` goes (as
    :func:`keras_fer.inference.prior.prior_file` looks for it)."""
    from keras_fer.inference.predictor import resolve_saved_model_dir
    from keras_fer.inference.prior import PRIOR_FILE

    path = Path(path)
    if path.is_dir() and not any(path.glob("*.tflite")):
        return resolve_saved_model_dir(path) / "assets.extra" / PRIOR_FILE
    return (path if path.is_dir() else path.parent) / PRIOR_FILE


def training_prior(train_labels: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Each model column's share of the training faces whose class the model has."""
    counts = np.array([np.sum(train_labels == c) for c in columns], np.float64)
    if counts.min() == 0:
        raise ValueError(f"a class of the model has no training face: counts {counts.tolist()}")
    return counts / counts.sum()


def split_faces(table, part: str) -> np.ndarray:
    """A FER+ split's faces (``table`` from ``readers.read_ferplus``) at the aligned size the
    predictor classifies."""
    from keras_fer.data.preprocess import ALIGNED_SIZE, resize_uint8

    rows = np.flatnonzero(np.asarray(table.split) == part)
    return resize_uint8(np.stack([table.images[i] for i in rows]), ALIGNED_SIZE)


def column_truth(labels: np.ndarray, columns: np.ndarray):
    """``(counted, truth)``: which faces have a class of the model, and its column for each."""
    counted = np.isin(labels, columns)
    index = {c: i for i, c in enumerate(columns)}
    return counted, np.array([index[c] for c in labels[counted]])


def scores(probabilities: np.ndarray, labels: np.ndarray, columns: np.ndarray,
           prior: np.ndarray, tau: float) -> Dict[str, float]:
    """Accuracy and balanced accuracy (%) with ``tau`` of the prior divided out."""
    from keras_fer.inference.prior import adjust, balanced_accuracy

    counted, truth = column_truth(labels, columns)
    predicted = adjust(probabilities[counted], prior, tau).argmax(1)
    return {"accuracy": round(100.0 * float(np.mean(predicted == truth)), 2),
            "balanced_accuracy": round(balanced_accuracy(predicted, truth), 2)}


def fit(model: Path, data_root: Path, tta: str = DEFAULT_TTA) -> Dict:
    """The ``class_prior.json`` document of ``model`` (FER+ Train prior, tau from Valid)."""
    from keras_fer.data import labels as labels_lib
    from keras_fer.data import readers
    from keras_fer.inference.predictor import Predictor
    from keras_fer.inference.prior import choose_tau

    table = readers.read_ferplus(data_root, splits=("train", "valid", "test"))
    split, expression = np.asarray(table.split), np.asarray(table.expression)
    with Predictor(model, prior="training", tta=tta) as predictor:
        names = list(predictor.class_names)
        columns = labels_lib.canonical_columns(names)
        probs = {part: predictor.classify(split_faces(table, part))
                 for part in ("valid", "test")}
    prior = training_prior(expression[split == "train"], columns)
    valid_labels = expression[split == "valid"]
    counted, truth = column_truth(valid_labels, columns)
    tau, grid = choose_tau(probs["valid"][counted], truth, prior)
    test_labels = expression[split == "test"]
    return {
        "class_names": names,
        "train_prior": [round(float(p), 6) for p in prior],
        "tau": tau,
        "chosen_on": "FER+ Valid, balanced accuracy (mean per-class recall), tau in 0..1 by 0.05",
        "tta": tta,
        "valid_balanced_accuracy_by_tau": {f"{t:.2f}": s for t, s in grid.items()},
        "valid": {"model": scores(probs["valid"], valid_labels, columns, prior, 0.0),
                  "balanced": scores(probs["valid"], valid_labels, columns, prior, tau)},
        "test_for_the_record": {
            "model": scores(probs["test"], test_labels, columns, prior, 0.0),
            "balanced": scores(probs["test"], test_labels, columns, prior, tau)},
        "model": str(model),
        "tool": "tools/fit_class_prior.py",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="SavedModel (or TF Serving base) or .tflite")
    parser.add_argument("--twins", nargs="*", default=[],
                        help="folders of .tflite files (or SavedModels) that get the same file")
    parser.add_argument("--tta", default=DEFAULT_TTA, choices=TTAS,
                        help="the test-time augmentation tau is chosen under (default: the "
                        "predictor's default)")
    parser.add_argument("--data_dir", default=None,
                        help="FER+ data folder (default: $FER_DATA_DIR/ferplus/data)")
    args = parser.parse_args(argv)
    from keras_fer import io_atomic
    from keras_fer.data.paths import dataset_path

    try:
        data_root = Path(args.data_dir) if args.data_dir else dataset_path("ferplus", "data")
        doc = fit(Path(args.model), data_root, args.tta)
        targets: List[Path] = [prior_destination(Path(p)) for p in [args.model, *args.twins]]
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        io_atomic.write_json(target, doc)
    valid, test = doc["valid"], doc["test_for_the_record"]
    print(f"{args.model}: tau {doc['tau']}; FER+ Valid balanced accuracy "
          f"{valid['model']['balanced_accuracy']} -> {valid['balanced']['balanced_accuracy']} "
          f"(accuracy {valid['model']['accuracy']} -> {valid['balanced']['accuracy']}); Test "
          f"{test['model']['balanced_accuracy']} -> {test['balanced']['balanced_accuracy']} "
          f"(accuracy {test['model']['accuracy']} -> {test['balanced']['accuracy']}); wrote "
          + ", ".join(str(t) for t in targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
