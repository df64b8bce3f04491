"""The class prior a model learned from its training set, and predictions without it.

A classifier trained with cross-entropy estimates ``p(class | face)`` under its training set's
class frequencies. FER+ Train is 36% neutral and 27% happiness but 0.7% disgust and 0.6%
contempt, so a FER+ model rarely answers "disgust", "fear" or "contempt" even on a posed
photo set where every class is equally common. Dividing the probabilities by the training
prior raised to a power ``tau`` and renormalising (logit adjustment for label shift) answers
as if the classes were equally likely: ``tau=0`` is the model's own output, ``tau=1`` the full
correction. ``tau`` is chosen once per model on its validation split, by balanced accuracy
(the mean of the per-class recalls, which is the accuracy on a set where every class is
equally common), never on a test set (``tools/fit_class_prior.py``).

The choice is stored beside the model as ``class_prior.json``: next to a ``.tflite`` file
(``<name>.class_prior.json``, then ``class_prior.json`` in its folder) or in a SavedModel's
``assets.extra/``. :class:`~keras_fer.inference.predictor.Predictor` applies it by default
(``prior="balanced"``); ``prior="training"`` returns the model's own probabilities.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np

PRIOR_FILE = "class_prior.json"
PRIORS = ("balanced", "training")  # Predictor(prior=...): what its probabilities assume


@dataclass(frozen=True)
class ClassPrior:
    """A model's training-set class frequencies and the power they are divided out with."""

    class_names: Tuple[str, ...]
    train_prior: Tuple[float, ...]
    tau: float
    path: Optional[Path] = None

    def __post_init__(self):
        if len(self.class_names) != len(self.train_prior):
            raise ValueError(f"{len(self.class_names)} class names but "
                             f"{len(self.train_prior)} prior values")
        if min(self.train_prior) <= 0:
            raise ValueError(f"Every class prior must be > 0. Received {self.train_prior}")
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1]. Received tau={self.tau}")

    def adjust(self, probabilities: np.ndarray) -> np.ndarray:
        """``(N, K)`` probabilities -> the same with the prior divided out (see module doc)."""
        return adjust(probabilities, self.train_prior, self.tau)


def adjust(probabilities: np.ndarray, prior: Sequence[float], tau: float) -> np.ndarray:
    """``p / prior**tau``, renormalised to sum to 1 per row; float32 ``(N, K)``."""
    p = np.asarray(probabilities, np.float64) / np.asarray(prior, np.float64) ** float(tau)
    return (p / p.sum(axis=-1, keepdims=True)).astype(np.float32)


def balanced_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Mean per-class recall (%) over the classes present in ``labels``."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    return 100.0 * float(np.mean([np.mean(predicted[labels == c] == c)
                                  for c in np.unique(labels)]))


def choose_tau(probabilities: np.ndarray, labels: np.ndarray, prior: Sequence[float],
               grid: Sequence[float] = tuple(np.round(np.arange(0, 1.0001, 0.05), 2))
               ) -> Tuple[float, dict]:
    """The ``tau`` of ``grid`` with the best balanced accuracy on validation data.

    Args:
        probabilities: ``(N, K)`` model outputs on the validation faces.
        labels: ``(N,)`` column indices of their true classes.
        prior: the ``K`` training-set class frequencies.

    Returns:
        ``(tau, {tau: balanced accuracy %})``; ties go to the smaller ``tau`` (the least
        change to the model's own output).
    """
    scores = {float(t): round(balanced_accuracy(adjust(probabilities, prior, t).argmax(1),
                                                labels), 2) for t in grid}
    best = max(scores.values())
    return min(t for t, s in scores.items() if s == best), scores


def prior_file(model_path: Union[str, Path]) -> Optional[Path]:
    """The ``class_prior.json`` of a ``.tflite`` file or SavedModel folder (or TF Serving model
    base: its newest version), or ``None``."""
    path = Path(model_path)
    if path.is_dir():
        # predictor imports this module: import its resolver when called, not at load time
        from keras_fer.inference.predictor import resolve_saved_model_dir

        with contextlib.suppress(FileNotFoundError):  # not a SavedModel: look in the folder
            path = resolve_saved_model_dir(path)
        candidates = [path / "assets.extra" / PRIOR_FILE]
    else:
        candidates = [path.with_name(f"{path.stem}.{PRIOR_FILE}"), path.with_name(PRIOR_FILE)]
    return next((c for c in candidates if c.is_file()), None)


def load_prior(model_path: Union[str, Path], class_names: Sequence[str]) -> Optional[ClassPrior]:
    """The model's stored :class:`ClassPrior`, or ``None`` when it has none.

    Raises:
        ValueError: the file is unreadable or its classes are not the model's (one line,
            naming the file).
    """
    path = prior_file(model_path)
    if path is None:
        return None
    try:
        doc = json.loads(path.read_text())
        prior = ClassPrior(tuple(doc["class_names"]), tuple(float(v) for v in doc["train_prior"]),
                           float(doc["tau"]), path)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a class prior file ({err}): remake it with "
                         "tools/fit_class_prior.py or delete it") from None
    if list(prior.class_names) != list(class_names):
        raise ValueError(f"{path} is for classes {list(prior.class_names)}, the model has "
                         f"{list(class_names)}: remake it with tools/fit_class_prior.py")
    return prior


__all__ = ["ClassPrior", "PRIORS", "PRIOR_FILE", "adjust", "balanced_accuracy", "choose_tau",
           "load_prior", "prior_file"]
