"""Training-time augmentation with Keras preprocessing layers, fed from in-memory arrays.

The papers' recipe (see METHODS.md): random horizontal flips, rotations up to +-15 degrees
and random 48 x 48 crops of the 60 x 60 aligned face; test time uses the centre crop.
:func:`make_augmenter` builds that as a ``keras.Sequential`` of stock preprocessing layers,
so it runs on the TensorFlow and JAX backends alike. :class:`FaceBatches` is the
``keras.utils.PyDataset`` the trainers give ``model.fit``: it takes uint8 ``(N, 60, 60)``
faces and yields float32 ``(B, 48, 48, 1)`` batches in [0, 1].

The random crop is a ``RandomTranslation`` of up to ``(60 - 48) / 2`` pixels (nearest-pixel,
so the shift is a whole number of pixels) followed by a ``CenterCrop``: unlike
``keras.layers.RandomCrop``, which draws one window per batch and *resizes* at inference,
this draws one window per image, and with ``training=False`` every random layer is the
identity, so the augmenter reduces exactly to :func:`keras_fer.data.preprocess.to_model_input`.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Union

import keras
import numpy as np

from keras_fer.data.preprocess import ALIGNED_SIZE, INPUT_SIZE, INV_255, centre_crop

Labels = Union[np.ndarray, Mapping[str, np.ndarray], None]

# Faces augmented per augmenter call by FaceBatches (bounds the float32 staging memory).
EPOCH_CHUNK = 4096


def make_augmenter(
    seed: Optional[int] = None,
    rotation_degrees: float = 15.0,
    crop: int = INPUT_SIZE,
    flip: bool = True,
    aligned_size: int = ALIGNED_SIZE,
) -> keras.Sequential:
    """Builds the training augmenter: flip, rotation, random crop.

    Args:
        seed: seeds the layers' random streams (one derived seed per layer); ``None`` draws a
            fresh random seed.
        rotation_degrees: maximum absolute rotation angle.
        crop: side of the output crop.
        flip: whether to flip horizontally with probability 0.5.
        aligned_size: side of the input faces.

    Returns:
        A ``keras.Sequential`` mapping float ``(B, aligned_size, aligned_size, 1)`` in [0, 1]
        to ``(B, crop, crop, 1)``. Call it with ``training=True`` to augment.
    """
    if not 0 < crop <= aligned_size:
        raise ValueError(
            f"crop must be in (0, aligned_size={aligned_size}]. Received: crop={crop}"
        )
    if not 0 <= rotation_degrees <= 180:
        raise ValueError(
            f"rotation_degrees must be in [0, 180]. Received: rotation_degrees={rotation_degrees}"
        )

    def layer_seed(k: int) -> Optional[int]:
        # Distinct seeds per layer: one shared seed would correlate flips with angles.
        return None if seed is None else seed * 4 + k

    layers = []
    if flip:
        layers.append(
            keras.layers.RandomFlip("horizontal", seed=layer_seed(0), name="augment_flip")
        )
    if rotation_degrees > 0:
        layers.append(
            keras.layers.RandomRotation(
                rotation_degrees / 360.0,
                fill_mode="reflect",
                seed=layer_seed(1),
                name="augment_rotation",
            )
        )
    # The largest shift that keeps the centred window inside the face.
    shift = ((aligned_size - crop) // 2) / aligned_size
    if shift > 0:
        layers.append(
            keras.layers.RandomTranslation(
                shift,
                shift,
                fill_mode="reflect",
                interpolation="nearest",
                seed=layer_seed(2),
                name="augment_translation",
            )
        )
    layers.append(keras.layers.CenterCrop(crop, crop, name="augment_crop"))
    return keras.Sequential(layers, name="augmenter")


def _as_unit_float(faces: np.ndarray, aligned_size: int) -> np.ndarray:
    """uint8 or [0, 1] float ``(B, S, S[, 1])`` -> float32 ``(B, S, S, 1)`` in [0, 1]."""
    faces = np.asarray(faces)
    if faces.ndim == 4 and faces.shape[-1] == 1:
        faces = faces[..., 0]
    if faces.ndim != 3 or faces.shape[1:] != (aligned_size, aligned_size):
        raise ValueError(
            f"Expected aligned faces of shape (B, {aligned_size}, {aligned_size}[, 1]). "
            f"Received shape={faces.shape}"
        )
    if faces.dtype == np.uint8:
        return (faces.astype(np.float32) * INV_255)[..., None]
    faces = faces.astype(np.float32)
    if faces.size and (faces.min() < 0.0 or faces.max() > 1.0):
        raise ValueError(
            "Float faces must be in [0, 1] (pass uint8 for 0..255 values). "
            f"Received range [{faces.min()}, {faces.max()}]"
        )
    return faces[..., None]


def augment_batch(
    faces: np.ndarray,
    augmenter: Optional[keras.Sequential] = None,
    aligned_size: int = ALIGNED_SIZE,
) -> np.ndarray:
    """Turns a batch of aligned faces into model input, augmented when given an augmenter.

    Args:
        faces: uint8 (0..255) or float ([0, 1]) ``(B, S, S)`` or ``(B, S, S, 1)`` faces,
            ``S = aligned_size``.
        augmenter: from :func:`make_augmenter`; ``None`` takes the test-time centre crop.
        aligned_size: side of the input faces.

    Returns:
        float32 ``(B, crop, crop, 1)`` NumPy array in [0, 1].
    """
    x = _as_unit_float(faces, aligned_size)
    if augmenter is None:
        # The same arithmetic as preprocess.to_model_input (scale, then centre crop).
        return np.ascontiguousarray(centre_crop(x, INPUT_SIZE))
    out = augmenter(x, training=True)
    return np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float32)


class FaceBatches(keras.utils.PyDataset):
    """Batches of model input from in-memory aligned faces, for ``model.fit`` on any backend.

    Example:
        ``model.fit(FaceBatches(x_train, y_train, 128, augment=True, seed=0), epochs=...)``

    Args:
        faces: uint8 ``(N, 60, 60)`` aligned faces.
        labels: ``(N, ...)`` array, a dict of such arrays (multi-output models), or ``None``
            (batches are then ``(x,)``, for ``predict``).
        batch_size: records per batch; the last batch may be smaller.
        augment: apply :func:`make_augmenter` (training) or the centre crop (evaluation).
            Augmented epochs are made whole on their first batch (``EPOCH_CHUNK`` faces per
            augmenter call) and dropped at ``on_epoch_end``.
        shuffle: reshuffle the order every epoch; defaults to ``augment``.
        seed: seeds the shuffling and the augmenter, for repeatable runs.
        augmenter: with ``augment=True``, a custom augmenter to use instead of
            ``make_augmenter(seed)``.
        drop_remainder: leave out the last, smaller batch of each epoch (the order is
            reshuffled every epoch, so no record is always left out): under jit compilation
            a second batch shape costs a second compile of the train step.
        **kwargs: ``workers``, ``use_multiprocessing``, ``max_queue_size`` of ``PyDataset``.
    """

    def __init__(
        self,
        faces: np.ndarray,
        labels: Labels = None,
        batch_size: int = 32,
        augment: bool = False,
        shuffle: Optional[bool] = None,
        seed: Optional[int] = None,
        augmenter: Optional[keras.Sequential] = None,
        drop_remainder: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.faces = np.asarray(faces)
        n = len(self.faces)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive. Received: batch_size={batch_size}")
        if n == 0:
            raise ValueError("FaceBatches needs at least one face. Received 0.")
        columns = labels.values() if isinstance(labels, Mapping) else [labels]
        for column in columns:
            if column is not None and len(column) != n:
                raise ValueError(f"labels have {len(column)} rows, faces have {n}.")
        self.labels = labels
        self.batch_size = batch_size
        self.drop_remainder = bool(drop_remainder) and n >= batch_size
        self.shuffle = augment if shuffle is None else shuffle
        if augment and augmenter is None:
            augmenter = make_augmenter(seed)
        self.augmenter = augmenter if augment else None
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        self._epoch_x: Optional[np.ndarray] = None

    def __len__(self) -> int:
        if self.drop_remainder:
            return len(self.faces) // self.batch_size
        return math.ceil(len(self.faces) / self.batch_size)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"Batch index {index} out of range for {len(self)} batches.")
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        if self.augmenter is None:
            x = augment_batch(self.faces[rows])
        else:
            x = self._augmented_epoch()[index * self.batch_size : (index + 1) * self.batch_size]
        if self.labels is None:
            return (x,)
        if isinstance(self.labels, Mapping):
            return x, {k: np.asarray(v)[rows] for k, v in self.labels.items()}
        return x, np.asarray(self.labels)[rows]

    def _augmented_epoch(self) -> np.ndarray:
        """The whole epoch's augmented input, in this epoch's order, made on first use.

        One augmenter call per :data:`EPOCH_CHUNK` faces instead of one per batch: on an
        accelerator the per-call dispatch of a dozen eager ops, not the arithmetic, is what
        costs, and per-batch calls held a GPU run to about 1k images/s.
        """
        if self._epoch_x is None:
            used = len(self) * self.batch_size
            rows = self._order[:used]
            self._epoch_x = np.concatenate([
                augment_batch(self.faces[rows[i : i + EPOCH_CHUNK]], self.augmenter)
                for i in range(0, len(rows), EPOCH_CHUNK)
            ])
        return self._epoch_x

    def on_epoch_end(self) -> None:
        self._epoch_x = None
        if self.shuffle:
            self._order = self._rng.permutation(len(self.faces))
