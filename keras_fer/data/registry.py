"""The one dataset registry: each named dataset, its reader, where it lies and its protocol.

A dataset's name is what the trainers' ``--dataset`` takes, what ``results.json`` records and
what :func:`keras_fer.data.experiments.load_experiment` reads. Each entry names the reader
that reads it (a key of :data:`keras_fer.data.readers.READERS`, which maps reader names to
functions, one per on-disk layout), the reader's arguments relative to the data root, the
default protocol, and whether the dataset has a fixed train / valid / test split. The
pipeline's ExampleGen reads any reader format; :func:`dataset_for_format` gives the trainers'
dataset of the formats that read a named dataset.

Pure data: importing this module imports no reader, NumPy or TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One named dataset.

    Attributes:
        name: the dataset's name (``--dataset``).
        protocol: the default protocol (a key of ``labels.PROTOCOLS``).
        reader: the reader that :func:`~keras_fer.data.experiments.load_experiment` uses (a
            key of ``readers.READERS``; ``"synthetic"`` for the embedded generator).
        paths: the reader's positional arguments, relative to the data root.
        formats: every reader format whose records are this dataset (the pipeline's
            ``dataset_format`` values that map to it).
        fixed_split: the dataset has an official train / valid / test split (``limit`` can
            shorten it); otherwise folds are subject-disjoint over its subjects.
    """

    name: str
    protocol: str
    reader: str
    paths: Tuple[str, ...] = ()
    formats: Tuple[str, ...] = ()
    fixed_split: bool = False


_ALL = (
    Dataset("synthetic", "ck7", "synthetic", formats=("synthetic",)),
    Dataset("ckplus48", "ck7", "ckplus48", ("ckplus48/CK+48",), formats=("ckplus48",)),
    Dataset("ckplus_neutral", "ck8", "ckplus_neutral", ("ckplus_neutral/CK+",),
            formats=("ckplus_neutral",)),
    Dataset("ferplus", "ferplus8", "ferplus", ("ferplus/data",), formats=("ferplus",),
            fixed_split=True),
    Dataset("fer2013", "fer2013", "fer2013_recovered",
            ("ferplus/fer2013_original_labels_recovered.csv", "ferplus/data"),
            formats=("fer2013_csv", "fer2013_recovered"), fixed_split=True),
)

REGISTRY: Dict[str, Dataset] = {d.name: d for d in _ALL}
"""Dataset name -> :class:`Dataset`."""

DATASETS: Tuple[str, ...] = tuple(REGISTRY)
"""The dataset names, in order (the trainers' ``--dataset`` choices)."""

FIXED_SPLIT_DATASETS: Tuple[str, ...] = tuple(d.name for d in _ALL if d.fixed_split)
"""Datasets with a fixed train / valid / test split (the only ones ``limit`` can shorten)."""

DEFAULT_PROTOCOL: Dict[str, str] = {d.name: d.protocol for d in _ALL}
"""Dataset name -> its default protocol."""


def get(name: str) -> Dataset:
    """The registered dataset ``name``; ``ValueError`` naming the known ones otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"Unknown dataset {name!r}. Known: {DATASETS}")
    return REGISTRY[name]


def dataset_for_format(fmt: str) -> Optional[str]:
    """The dataset that reader format ``fmt`` reads, or ``None`` (e.g. ``"folder"``)."""
    for d in _ALL:
        if fmt in d.formats:
            return d.name
    return None


def folder_under_root(fmt: str, path) -> Optional[str]:
    """The dataset folder (or file) under ``path`` that reader ``fmt`` reads, when ``path`` is
    the data root (what the trainers' ``--data_dir`` takes) instead of the dataset itself;
    ``None`` otherwise. For the tools that take the dataset itself (``describe --path``, the
    pipeline's ``--dataset_path``), to name the folder a user meant."""
    from pathlib import Path

    for spec in REGISTRY.values():
        if spec.reader == fmt and spec.paths and (Path(path) / spec.paths[0]).exists():
            return str(Path(path) / spec.paths[0])
    return None
