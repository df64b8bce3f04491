"""The one record table every reader returns.

A :class:`RecordTable` is a column store: one NumPy array per field, all of length N.
Readers fill it, splits index it, and the training code turns it into arrays. It also
carries the list of inputs that could not be read (path, line, reason), so that a load
never silently drops anything.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence

import numpy as np

FRAME_ROLES = ("neutral", "peak", "unknown")


@dataclasses.dataclass(frozen=True)
class Skipped:
    """An input that a reader could not use."""

    path: str
    reason: str
    line: Optional[int] = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.reason}"


@dataclasses.dataclass
class RecordTable:
    """Columns of a face dataset.

    Attributes:
        images: uint8 array ``(N, H, W)`` of grayscale faces when all share one size,
            else an object array of 2-D uint8 arrays.
        expression: int64 ``(N,)`` canonical class index (see ``labels.CANONICAL``),
            ``labels.NO_LABEL`` (-1) for identity-only data.
        subject: str ``(N,)`` subject id, ``""`` when the dataset has none.
        sequence: str ``(N,)`` sequence id (CK+ ``S010_004``), ``""`` when none.
        frame_role: str ``(N,)`` one of ``FRAME_ROLES``.
        path: str ``(N,)`` source file (with ``:line`` for CSV rows); for a FER+ face read
            from a mosaic, ``<split folder>/<image name in label.csv>``, which is no file.
        soft_labels: optional float32 ``(N, 8)`` vote distribution over ``CANONICAL``.
        split: str ``(N,)`` the dataset's own split (``train``/``valid``/``test``) or ``""``.
        skipped: inputs that could not be used, each with its reason.
        name: the reader's name, for messages.
    """

    images: np.ndarray
    expression: np.ndarray
    subject: np.ndarray
    sequence: np.ndarray
    frame_role: np.ndarray
    path: np.ndarray
    soft_labels: Optional[np.ndarray] = None
    split: Optional[np.ndarray] = None
    skipped: List[Skipped] = dataclasses.field(default_factory=list)
    name: str = ""

    def __post_init__(self):
        n = len(self.images)
        self.expression = np.asarray(self.expression, dtype=np.int64)
        self.subject = np.asarray(self.subject, dtype=str)
        self.sequence = np.asarray(self.sequence, dtype=str)
        self.frame_role = np.asarray(self.frame_role, dtype=str)
        self.path = np.asarray(self.path, dtype=str)
        if self.split is None:
            self.split = np.full(n, "", dtype=str)
        self.split = np.asarray(self.split, dtype=str)
        for field in ("expression", "subject", "sequence", "frame_role", "path", "split"):
            if len(getattr(self, field)) != n:
                raise ValueError(
                    f"RecordTable column {field!r} has {len(getattr(self, field))} rows, "
                    f"images has {n}."
                )
        if self.soft_labels is not None and len(self.soft_labels) != n:
            raise ValueError(f"soft_labels has {len(self.soft_labels)} rows, images has {n}.")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: Sequence[int] | np.ndarray) -> "RecordTable":
        """Returns the rows at ``index`` (integer positions or a boolean mask)."""
        index = np.asarray(index)
        return RecordTable(
            images=self.images[index],
            expression=self.expression[index],
            subject=self.subject[index],
            sequence=self.sequence[index],
            frame_role=self.frame_role[index],
            path=self.path[index],
            soft_labels=None if self.soft_labels is None else self.soft_labels[index],
            split=self.split[index],
            skipped=list(self.skipped),
            name=self.name,
        )

    @property
    def subjects(self) -> np.ndarray:
        """Sorted unique subject ids (without ``""``)."""
        return np.array(sorted(s for s in set(self.subject.tolist()) if s), dtype=str)

    def class_counts(self) -> dict:
        """Canonical class name -> number of records (classes with records only)."""
        from keras_fer.data.labels import CANONICAL

        values, counts = np.unique(self.expression[self.expression >= 0], return_counts=True)
        return {CANONICAL[v]: int(c) for v, c in zip(values, counts)}


def concat(tables: Sequence[RecordTable], name: str = "") -> RecordTable:
    """Concatenates record tables (images must share one size to stay a dense array)."""
    if not tables:
        raise ValueError("concat() needs at least one RecordTable.")
    shapes = {t.images.shape[1:] for t in tables if t.images.dtype != object}
    dense = len(shapes) == 1 and all(t.images.dtype != object for t in tables)
    if dense:
        images = np.concatenate([t.images for t in tables])
    else:
        images = np.empty(sum(len(t) for t in tables), dtype=object)
        i = 0
        for t in tables:
            for im in t.images:
                images[i] = im
                i += 1
    soft = None
    if all(t.soft_labels is not None for t in tables):
        soft = np.concatenate([t.soft_labels for t in tables])
    return RecordTable(
        images=images,
        expression=np.concatenate([t.expression for t in tables]),
        subject=np.concatenate([t.subject for t in tables]),
        sequence=np.concatenate([t.sequence for t in tables]),
        frame_role=np.concatenate([t.frame_role for t in tables]),
        path=np.concatenate([t.path for t in tables]),
        soft_labels=soft,
        split=np.concatenate([t.split for t in tables]),
        skipped=[s for t in tables for s in t.skipped],
        name=name or "+".join(t.name for t in tables),
    )
