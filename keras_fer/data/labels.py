"""The canonical expression taxonomy and the per-dataset label mappings.

Every reader converts its own label names into indices of :data:`CANONICAL`, so that one
model head, one confusion matrix and one results table mean the same thing everywhere.
A *protocol* (a class subset such as CK+ 7 classes) then maps canonical indices to the
contiguous ``0..K-1`` ids a model is trained on.
"""

from __future__ import annotations

from typing import Dict, Mapping, Sequence, Tuple

import numpy as np

CANONICAL: Tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)
"""Canonical class names; a record's ``expression`` is an index into this tuple."""

NO_LABEL = -1
"""``expression`` of a record that carries no expression label (identity-only data)."""

# Names used by each dataset's own files -> canonical name.
DATASET_LABELS: Dict[str, Dict[str, str]] = {
    "ckplus48": {
        "anger": "anger",
        "contempt": "contempt",
        "disgust": "disgust",
        "fear": "fear",
        "happy": "happiness",
        "sadness": "sadness",
        "surprise": "surprise",
    },
    "ckplus_neutral": {name: name for name in CANONICAL},
    # FER+ label.csv vote columns, in file order (unknown and NF are not classes).
    "ferplus": {name: name for name in CANONICAL},
    # FER2013 emotion ids 0..6: angry, disgust, fear, happy, sad, surprise, neutral.
    "fer2013": {
        "angry": "anger",
        "disgust": "disgust",
        "fear": "fear",
        "happy": "happiness",
        "sad": "sadness",
        "surprise": "surprise",
        "neutral": "neutral",
    },
}

FER2013_IDS: Tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""FER2013's integer label order (``emotion`` column of fer2013.csv)."""

# Class subsets (protocols), in the order a model's output columns follow.
PROTOCOLS: Dict[str, Tuple[str, ...]] = {
    "ck7": ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise"),
    "ck8": ("neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise"),
    "ck6": ("anger", "disgust", "fear", "happiness", "sadness", "surprise"),
    "ferplus8": CANONICAL,
    "fer2013": ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"),
    "canonical": CANONICAL,
}


def canonical_index(name: str, dataset: str | None = None) -> int:
    """Returns the canonical index of a class name, optionally through a dataset's mapping.

    Raises:
        ValueError: if the name is not known (for that dataset).
    """
    key = name.strip().lower()
    if dataset is not None:
        mapping = DATASET_LABELS.get(dataset)
        if mapping is None:
            raise ValueError(f"Unknown dataset {dataset!r}. Known: {sorted(DATASET_LABELS)}")
        if key not in mapping:
            raise ValueError(
                f"Label {name!r} is not a {dataset} class. Known: {sorted(mapping)}"
            )
        key = mapping[key]
    if key not in CANONICAL:
        raise ValueError(f"Label {name!r} is not a canonical class. Known: {CANONICAL}")
    return CANONICAL.index(key)


def canonical_columns(class_names: Sequence[str]) -> np.ndarray:
    """Canonical index of each output column of a model whose class names are canonical or
    FER2013's (``"angry"``, ``"happy"``...: the ``fer`` package's model)."""
    out = []
    for name in class_names:
        try:
            out.append(canonical_index(name))
        except ValueError:
            out.append(canonical_index(name, "fer2013"))
    return np.asarray(out)


def protocol_classes(protocol: str | Sequence[str]) -> Tuple[str, ...]:
    """Returns the class names of a protocol name (``"ck7"``) or an explicit list."""
    if isinstance(protocol, str):
        if protocol not in PROTOCOLS:
            raise ValueError(f"Unknown protocol {protocol!r}. Known: {sorted(PROTOCOLS)}")
        return PROTOCOLS[protocol]
    classes = tuple(protocol)
    for name in classes:
        canonical_index(name)
    return classes


def to_protocol(expression: np.ndarray, protocol: str | Sequence[str]) -> np.ndarray:
    """Maps canonical indices to contiguous protocol ids; classes outside map to -1."""
    classes = protocol_classes(protocol)
    lut = np.full(len(CANONICAL) + 1, -1, dtype=np.int64)
    for pid, name in enumerate(classes):
        lut[CANONICAL.index(name)] = pid
    expression = np.asarray(expression, dtype=np.int64)
    return np.where(expression >= 0, lut[np.clip(expression, 0, len(CANONICAL))], -1)


def class_mapping(protocol: str | Sequence[str]) -> Mapping[int, int]:
    """Canonical index -> protocol id, for the classes of a protocol."""
    return {CANONICAL.index(n): i for i, n in enumerate(protocol_classes(protocol))}
