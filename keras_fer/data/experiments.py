"""From a dataset name to in-memory experiment arrays and subject-disjoint folds.

Everything a trainer needs for one protocol: aligned ``60x60`` uint8 faces, protocol
labels, subject ids, and the list of folds. Images are held in memory (the datasets are
small: CK+48 is 981 faces, FER+ 35k), which is also how the GPU runs feed ``model.fit``.
Which datasets exist, where they lie and their default protocols is
:mod:`keras_fer.data.registry`; packed experiments are :mod:`keras_fer.data.packs`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from keras_fer.data import labels as labels_lib
from keras_fer.data import preprocess, registry, splits
from keras_fer.data.paths import data_dir as default_data_dir
from keras_fer.data.records import RecordTable
from keras_fer.data.registry import FIXED_SPLIT_DATASETS


@dataclasses.dataclass
class Experiment:
    """Aligned faces + protocol labels of one dataset, and how to split them.

    ``fixed_split`` holds (train, val, test) index arrays for datasets with an official
    split (FER+); otherwise folds are subject-disjoint k-fold over ``subjects``.
    ``neutral_faces`` / ``neutral_subjects`` are real neutral frames of the dataset's
    subjects (the targets of IDFERM's neutral-face generator), ``None`` without subjects.
    """

    name: str
    protocol: str
    class_names: Tuple[str, ...]
    faces: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    soft_labels: Optional[np.ndarray] = None
    fixed_split: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None
    identity_faces: Optional[np.ndarray] = None
    identity_subjects: Optional[np.ndarray] = None
    neutral_faces: Optional[np.ndarray] = None
    neutral_subjects: Optional[np.ndarray] = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclasses.dataclass
class FoldData:
    """The arrays of one fold, ready for a method's ``fit_fold``.

    ``id_train`` / ``id_val`` are identity labels ``0..num_identities-1`` (training-fold
    subjects first, then the extra identity-only subjects such as ORL), ``-1`` where a
    sample's identity label is withheld (``--identity_fraction``) or unknown.
    ``subj_*`` are the subject ids of each face; ``neutral_faces`` / ``neutral_subjects``
    hold the real neutral frames of the training and validation subjects only, so a test
    subject's neutral face never reaches a method.
    """

    fold: int
    class_names: Tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    id_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    id_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_subjects: List[str]
    test_subjects: List[str]
    num_identities: int
    identity_x: Optional[np.ndarray] = None
    identity_y: Optional[np.ndarray] = None
    soft_train: Optional[np.ndarray] = None
    subj_train: Optional[np.ndarray] = None
    subj_val: Optional[np.ndarray] = None
    subj_test: Optional[np.ndarray] = None
    neutral_faces: Optional[np.ndarray] = None
    neutral_subjects: Optional[np.ndarray] = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _aligned(table: RecordTable, size: int = preprocess.ALIGNED_SIZE) -> np.ndarray:
    if table.images.dtype == object:
        return np.stack([preprocess.resize_uint8(im[None], size)[0] for im in table.images])
    return preprocess.resize_uint8(table.images, size)


def _report_skipped(table: RecordTable) -> None:
    if table.skipped:
        logging.warning("%s: %d input(s) skipped, e.g. %s", table.name, len(table.skipped),
                        "; ".join(str(s) for s in table.skipped[:3]))


def _neutral_frames(dataset: str, table: RecordTable, root: Path, class_names, seed: int):
    """Real neutral faces of ``table``'s subjects and their subject ids (or ``None``s).

    CK+48 has no neutral frames: they come from the ``ckplus_neutral`` copy (first frame of
    every sequence, matched by subject). Its crop differs from CK+48's (measured: the face is
    about 0.82-1.09x the CK+48 scale, varying by sequence); both are 48x48 and are resized
    to the same aligned 60x60 frame, nothing more. Synthetic protocols without a neutral
    class draw each subject's neutral frames from the same generator (same seed: same people).
    """
    from keras_fer.data import readers

    if dataset == "ckplus48":
        folder = root.joinpath(*registry.get("ckplus_neutral").paths)
        if not folder.exists():
            return None, None
        source = readers.read_ckplus_neutral(folder)
    elif dataset == "synthetic" and "neutral" not in class_names:
        from keras_fer.data.synthetic import make_synthetic

        source = make_synthetic(classes=("neutral",), seed=seed)
    elif dataset in ("synthetic", "ckplus_neutral"):
        source = table
    else:
        return None, None
    keep = (source.frame_role == "neutral") & np.isin(source.subject, table.subject)
    if not keep.any():
        return None, None
    source = source.subset(np.flatnonzero(keep))
    return _aligned(source), source.subject


def load_experiment(dataset: str, data_dir: str | Path = "", protocol: str = "",
                    use_orl: bool = True, limit: int = 0, seed: int = 0,
                    face_size: int = preprocess.ALIGNED_SIZE) -> Experiment:
    """Reads a dataset, keeps the protocol's classes and aligns faces to 60x60.

    Args:
        dataset: a name of :data:`keras_fer.data.registry.DATASETS`.
        data_dir: root holding ``ckplus48/``, ``ferplus/``... (default ``$FER_DATA_DIR``).
        protocol: class subset; default per dataset (the registry's ``protocol``).
        use_orl: add ORL identities (``orl_faces/``) as identity-only pretraining data.
        limit: keep at most this many images per split (FER+, FER2013) for quick runs;
            0 = all. Other datasets refuse it.
        seed: seed of the synthetic generator.
        face_size: side of the returned faces; only packs built with ``jpeg_train`` use
            another size than the aligned 60 (they store the native pixels).
    """
    spec = registry.get(dataset)
    if limit and not spec.fixed_split:
        # CK+ is read whole (folds are split by subject): a silent full run would surprise.
        raise ValueError(f"limit={limit} works on the split datasets "
                         f"({', '.join(FIXED_SPLIT_DATASETS)}) only; {dataset!r} is read whole. "
                         "Use --folds/--fold for a shorter CK+ run.")
    protocol = protocol or spec.protocol
    class_names = labels_lib.protocol_classes(protocol)
    root = Path(data_dir) if data_dir else default_data_dir()
    from keras_fer.data import packs  # packs imports this module (Experiment)

    packed = root / packs.pack_name(dataset, protocol, limit, use_orl)
    if packed.exists():
        return packs.load_pack(packed)
    from keras_fer.data import readers

    fixed = None
    if spec.reader == "synthetic":
        from keras_fer.data.synthetic import make_synthetic

        table = make_synthetic(classes=class_names, seed=seed)
    else:
        kwargs = {"limit": limit or None} if spec.fixed_split else {}
        table = readers.READERS[spec.reader](*(root / p for p in spec.paths), **kwargs)
    if dataset == "ckplus_neutral":
        # The CK+ 8-class protocol adds each labelled sequence's first (neutral) frame; the
        # copy also holds first frames of unlabelled sequences, which would flood "neutral".
        labelled = set(table.sequence[table.frame_role == "peak"].tolist())
        table = table.subset(np.flatnonzero(
            (table.frame_role == "peak") | np.isin(table.sequence, list(labelled))))
    _report_skipped(table)
    neutral_faces, neutral_subjects = _neutral_frames(dataset, table, root, class_names, seed)

    y = labels_lib.to_protocol(table.expression, class_names)
    keep = y >= 0
    table = table.subset(np.flatnonzero(keep))
    y = y[keep]
    if spec.fixed_split:
        empty = [s for s in ("train", "valid", "test")
                 if table.split is None or not (table.split == s).any()]
        if empty:
            first = next((f" (first rejected: {s})" for s in table.skipped), "")
            raise readers.DatasetError(
                f"{dataset}: the {' and '.join(empty)} split(s) of {root} are empty: every row "
                f"was rejected or none is there{first}; fix or restore the split's files.")
        fixed = tuple(np.flatnonzero(table.split == s) for s in ("train", "valid", "test"))

    identity_faces = identity_subjects = None
    orl = root / "orl_faces"
    if use_orl and dataset != "synthetic" and orl.exists():
        ident = readers.read_identity_folder(orl)
        _report_skipped(ident)
        identity_faces, identity_subjects = _aligned(ident), np.char.add("orl_", ident.subject)

    return Experiment(
        name=dataset,
        protocol=protocol,
        class_names=class_names,
        faces=_aligned(table, face_size),
        labels=y.astype(np.int64),
        subjects=table.subject,
        soft_labels=None if table.soft_labels is None else table.soft_labels,
        fixed_split=fixed,
        identity_faces=identity_faces,
        identity_subjects=identity_subjects,
        neutral_faces=neutral_faces,
        neutral_subjects=neutral_subjects,
    )


def experiment_for(config) -> Experiment:
    """The experiment a :class:`~keras_fer.training.config.TrainConfig` names."""
    return load_experiment(config.dataset, config.data_dir, config.protocol,
                           use_orl=config.use_orl, limit=config.limit, seed=config.seed)


def fold_indices(exp: Experiment, folds: int, seed: int, val_fraction: float):
    """Returns ``[(train_idx, val_idx, test_idx), ...]`` subject-disjoint by construction.

    ``val_fraction=0`` leaves validation empty (nothing is held out of training).
    """
    if exp.fixed_split is not None:
        return [exp.fixed_split]
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1). Received: val_fraction={val_fraction}")
    out = []
    for train_idx, test_idx in splits.subject_kfold(exp.subjects, exp.labels, folds, seed):
        if val_fraction == 0.0:
            # The papers' protocol: train on every subject outside the test fold.
            tr, va = np.sort(np.asarray(train_idx, np.int64)), np.zeros(0, np.int64)
        else:
            tr, va = splits.train_val_split(train_idx, exp.subjects, exp.labels,
                                            val_fraction=val_fraction, seed=seed)
        out.append((tr, va, test_idx))
    return out


def make_fold(exp: Experiment, fold: int, idx, identity_fraction: float = 1.0,
              seed: int = 0) -> FoldData:
    """Builds the arrays of one fold, including identity labels for identity heads."""
    train_idx, val_idx, test_idx = idx
    fit_subjects = sorted(set(exp.subjects[train_idx].tolist()) - {""})
    rng = np.random.default_rng(seed + 1000 * fold)
    labelled = set(fit_subjects)
    if identity_fraction < 1.0:
        n = int(round(identity_fraction * len(fit_subjects)))
        labelled = set(rng.permutation(fit_subjects)[:n].tolist()) if n else set()
    id_of = {s: i for i, s in enumerate(fit_subjects)}

    def ids(index):
        return np.array([id_of[s] if s in labelled else -1 for s in exp.subjects[index]],
                        dtype=np.int64)

    identity_x = identity_y = None
    num_identities = len(fit_subjects)
    if exp.identity_faces is not None:
        extra = sorted(set(exp.identity_subjects.tolist()))
        extra_of = {s: num_identities + i for i, s in enumerate(extra)}
        identity_x = exp.identity_faces
        identity_y = np.array([extra_of[s] for s in exp.identity_subjects], dtype=np.int64)
        num_identities += len(extra)

    train_subjects = sorted(set(exp.subjects[np.concatenate([train_idx, val_idx])].tolist()) - {""})
    neutral_faces = neutral_subjects = None
    if exp.neutral_faces is not None:
        seen = np.isin(exp.neutral_subjects, train_subjects)
        neutral_faces, neutral_subjects = exp.neutral_faces[seen], exp.neutral_subjects[seen]
    return FoldData(
        fold=fold,
        class_names=exp.class_names,
        x_train=exp.faces[train_idx],
        y_train=exp.labels[train_idx],
        id_train=ids(train_idx),
        x_val=exp.faces[val_idx],
        y_val=exp.labels[val_idx],
        # Validation subjects are not training identities: their identity is unknown.
        id_val=np.full(len(val_idx), -1, dtype=np.int64),
        x_test=exp.faces[test_idx],
        y_test=exp.labels[test_idx],
        train_subjects=train_subjects,
        test_subjects=sorted(set(exp.subjects[test_idx].tolist()) - {""}),
        num_identities=max(num_identities, 1),
        identity_x=identity_x,
        identity_y=identity_y,
        soft_train=None if exp.soft_labels is None else exp.soft_labels[train_idx],
        subj_train=exp.subjects[train_idx],
        subj_val=exp.subjects[val_idx],
        subj_test=exp.subjects[test_idx],
        neutral_faces=neutral_faces,
        neutral_subjects=neutral_subjects,
    )
