"""Accuracy, confusion matrices and their plots (NumPy + matplotlib only)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from keras_fer.evaluation.figures import pyplot, save_figure


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``(num_classes, num_classes)``: row = true class, column = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"Shapes differ: y_true={y_true.shape}, y_pred={y_pred.shape}")
    if len(y_true) and (y_true.min() < 0 or y_true.max() >= num_classes):
        raise ValueError(f"y_true outside [0, {num_classes}): {np.unique(y_true)}")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def accuracy_percent(cm: np.ndarray) -> float:
    """Overall accuracy in percent from a confusion matrix (0 for an empty matrix)."""
    total = cm.sum()
    return float(100.0 * np.trace(cm) / total) if total else 0.0


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class in percent (NaN for a class with no samples)."""
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, 100.0 * np.diag(cm) / np.maximum(support, 1), np.nan)


def plot_confusion_matrix(cm: np.ndarray, class_names: Sequence[str], path: str | Path, title=""):
    """Writes a row-normalised confusion matrix with counts as a PNG."""
    plt = pyplot()

    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(class_names), 0.8 + 0.8 * len(class_names)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{100 * norm[i, j]:.0f}\n({cm[i, j]})", ha="center", va="center",
                    fontsize=7, color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {accuracy_percent(cm):.2f}%")
    save_figure(fig, path, dpi=110)


def plot_per_class_accuracy(cm: np.ndarray, class_names: Sequence[str], path: str | Path, title=""):
    """Writes a bar chart of per-class accuracy (percent) as a PNG."""
    plt = pyplot()

    acc = per_class_accuracy(cm)
    fig, ax = plt.subplots(figsize=(1.5 + 0.7 * len(class_names), 3.2))
    ax.bar(range(len(class_names)), np.nan_to_num(acc), color="tab:blue")
    for i, a in enumerate(acc):
        ax.text(i, (0 if np.isnan(a) else a) + 1, "n/a" if np.isnan(a) else f"{a:.1f}",
                ha="center", fontsize=8)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_ylim(0, 110)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "per-class accuracy")
    save_figure(fig, path, dpi=110)
