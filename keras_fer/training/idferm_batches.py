"""IDFERM's batches: (expressive, real neutral) pairs of one subject for the HNG, and the
RML fine-tuning's class-balanced queries with their generated neutral references."""

from __future__ import annotations

import math

import keras
import numpy as np

from keras_fer.data import preprocess
from keras_fer.data.augment import EPOCH_CHUNK, make_augmenter
from keras_fer.models import idferm


def neutral_targets(subjects: np.ndarray, neutral_subjects: np.ndarray) -> list:
    """For each face, the rows of ``neutral_subjects`` holding the same subject (may be empty)."""
    rows_of: dict = {}
    for row, subject in enumerate(np.asarray(neutral_subjects).tolist()):
        rows_of.setdefault(subject, []).append(row)
    return [np.array(rows_of.get(s, []), dtype=np.int64) for s in np.asarray(subjects).tolist()]


def to_unit(faces: np.ndarray) -> np.ndarray:
    """uint8 faces -> float32 ``(..., 1)`` in [0, 1], scaled as every other path scales them
    (a multiply by ``preprocess.INV_255``, bit-identical to serving)."""
    return (np.asarray(faces, dtype=np.float32) * preprocess.INV_255)[..., None]


class NeutralPairs(keras.utils.PyDataset):
    """Batches ``(expressive faces, real neutral faces of the same subjects)`` for HNG.

    Faces without a neutral frame of their subject are left out. Every epoch draws, per
    face, one of its subject's neutral frames, and flips half of the pairs (both faces).

    Args:
        faces: uint8 ``(N, S, S)`` expressive faces at the generator's size.
        subjects: ``(N,)`` their subject ids.
        neutral_faces: uint8 ``(M, S, S)`` real neutral faces.
        neutral_subjects: ``(M,)`` their subject ids.
        batch_size: pairs per batch.
        seed: seed of the order, the neutral draws and the flips.
        **kwargs: ``PyDataset`` arguments.
    """

    def __init__(self, faces, subjects, neutral_faces, neutral_subjects, batch_size: int,
                 seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        targets = neutral_targets(subjects, neutral_subjects)
        keep = np.array([len(t) > 0 for t in targets], dtype=bool)
        if not keep.any():
            raise ValueError(
                "No training face has a neutral frame of its subject: HNG needs (expressive, "
                f"neutral) pairs. Received {len(faces)} faces of "
                f"{len(set(np.asarray(subjects).tolist()))} subjects and neutral frames of "
                f"{len(set(np.asarray(neutral_subjects).tolist()))} subjects."
            )
        self.faces = np.asarray(faces)[keep]
        self.targets = [t for t, k in zip(targets, keep) if k]
        self.neutral_faces = np.asarray(neutral_faces)
        self.batch_size = batch_size
        self._rng = np.random.default_rng(seed)
        self._new_epoch()

    def _new_epoch(self) -> None:
        n = len(self.faces)
        self._order = self._rng.permutation(n)
        self._neutral = np.array([t[self._rng.integers(len(t))] for t in self.targets])
        self._flip = self._rng.random(n) < 0.5

    def __len__(self) -> int:
        return math.ceil(len(self.faces) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        x = self.faces[rows].copy()
        y = self.neutral_faces[self._neutral[rows]].copy()
        flip = self._flip[rows]
        x[flip], y[flip] = x[flip, :, ::-1], y[flip, :, ::-1]
        return to_unit(x), to_unit(y)

    def on_epoch_end(self) -> None:
        self._new_epoch()


class QueryBatches(keras.utils.PyDataset):
    """RML fine-tuning batches: ``per_class`` faces of every class (``idferm.per_class_batches``).

    With ``references`` the batches are ``({"image": queries, "reference": references},
    labels)`` and each query shares its random flip / rotation / crop with its reference;
    without, ``(queries, labels)`` (the softmax baseline). Inputs are uint8 ``(N, 60, 60)``.

    Args:
        faces: uint8 aligned query faces.
        labels: ``(N,)`` class indices.
        references: uint8 aligned generated neutral faces, one per query, or ``None``.
        per_class: faces of each class per batch.
        seed: seed of the sampling and the augmentation.
        **kwargs: ``PyDataset`` arguments.
    """

    def __init__(self, faces, labels, references=None, per_class: int = 2, seed: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        if references is not None and len(references) != len(faces):
            raise ValueError(f"Need one reference per face. Received {len(references)} "
                             f"references for {len(faces)} faces.")
        self.faces = np.asarray(faces)
        self.labels = np.asarray(labels)
        self.references = None if references is None else np.asarray(references)
        self.per_class = per_class
        self.seed = seed
        self.augmenter = make_augmenter(seed)
        self._epoch = 0
        self._new_epoch()

    def _new_epoch(self) -> None:
        self._batches = list(
            idferm.per_class_batches(self.labels, self.per_class, self.seed + self._epoch))
        self._starts = np.cumsum([0] + [len(b) for b in self._batches])
        self._epoch_x = None

    def __len__(self) -> int:
        return len(self._batches)

    @property
    def samples_per_epoch(self) -> int:
        """Queries per epoch (each with its reference, when there are references)."""
        return int(self._starts[-1])

    def _augmented_epoch(self) -> np.ndarray:
        """The epoch's augmented (query[, reference]) channels, batches end to end, made on
        first use with one augmenter call per ``EPOCH_CHUNK`` faces (per-batch calls of 14
        faces made fine-tuning dispatch-bound on the GPU, as in ``FaceBatches``)."""
        if self._epoch_x is None:
            rows = np.concatenate(self._batches)
            x = to_unit(self.faces[rows])
            if self.references is not None:
                x = np.concatenate([x, to_unit(self.references[rows])], axis=-1)
            self._epoch_x = np.concatenate([
                keras.ops.convert_to_numpy(
                    self.augmenter(x[i : i + EPOCH_CHUNK], training=True)).astype(np.float32)
                for i in range(0, len(x), EPOCH_CHUNK)
            ])
        return self._epoch_x

    def __getitem__(self, index: int):
        rows = self._batches[index]
        out = self._augmented_epoch()[self._starts[index] : self._starts[index + 1]]
        if self.references is None:
            return out, self.labels[rows]
        return {"image": out[..., :1], "reference": out[..., 1:]}, self.labels[rows]

    def on_epoch_end(self) -> None:
        self._epoch += 1
        self._new_epoch()
