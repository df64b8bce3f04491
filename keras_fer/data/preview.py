"""A grid of sample faces per class (or per subject for identity-only data), saved as an image.

Uses Matplotlib's Agg canvas directly rather than ``pyplot``, so it never changes the
process-wide backend or needs a display.
"""

from __future__ import annotations

import os
from typing import List, Tuple, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_fer.data.labels import CANONICAL
from keras_fer.data.records import RecordTable


def _groups(table: RecordTable, max_rows: int) -> List[Tuple[str, np.ndarray]]:
    labelled = table.expression >= 0
    if labelled.any():
        return [
            (CANONICAL[c], np.flatnonzero(table.expression == c))
            for c in np.unique(table.expression[labelled])
        ][:max_rows]
    subjects = table.subjects[:max_rows]
    if len(subjects):
        return [(str(s), np.flatnonzero(table.subject == s)) for s in subjects]
    return [("all", np.arange(len(table)))]


def save_preview(
    table: RecordTable,
    path: Union[str, "os.PathLike[str]"],
    per_row: int = 8,
    max_rows: int = 12,
    seed: int = 0,
) -> None:
    """Saves a grid with one row per class of ``per_row`` random faces.

    Identity-only tables (no expression labels) get one row per subject instead.

    Args:
        table: the records to sample from (must not be empty).
        path: output file; the format follows the suffix (``.png``).
        per_row: faces per row (fewer when a class has fewer).
        max_rows: at most this many classes/subjects.
        seed: sampling seed, so the same table gives the same preview.

    Raises:
        ValueError: the table is empty or ``per_row``/``max_rows`` is not positive.
    """
    if len(table) == 0:
        raise ValueError("Cannot preview an empty RecordTable.")
    if per_row < 1 or max_rows < 1:
        raise ValueError(f"per_row and max_rows must be >= 1. Received {per_row}, {max_rows}")
    rng = np.random.default_rng(seed)
    groups = _groups(table, max_rows)
    figure = Figure(figsize=(per_row * 0.9 + 1.2, len(groups) * 0.95 + 0.3), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(groups), per_row, squeeze=False)
    for row, (name, rows) in enumerate(groups):
        picks = np.sort(rng.choice(rows, size=min(per_row, len(rows)), replace=False))
        for col in range(per_row):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(picks):
                ax.imshow(table.images[picks[col]], cmap="gray", vmin=0, vmax=255)
            else:
                ax.set_axis_off()
        axes[row, 0].set_ylabel(f"{name}\n({len(rows)})", rotation=0, ha="right", va="center")
    figure.tight_layout()
    figure.savefig(os.fspath(path))
