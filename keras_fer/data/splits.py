"""Subject-disjoint splits: stratified k-fold, leave-one-subject-out, train/validation.

Facial expression results are only meaningful when no person appears on both sides of a
split (a model that has seen a subject's other frames recognises the person, not the
expression). Every function here therefore works on whole subjects: it takes the per-record
arrays of subject ids and labels (``RecordTable.subject`` / ``.expression``) and returns
integer record indices.

Stratification is greedy: subjects, largest first (ties broken by a seeded shuffle), each go
to the bin whose class histogram gains the most from them, i.e. the bin where adding the
subject most reduces the squared shortfall against that bin's target histogram (plus the
same term on bin sizes). With ~120 CK+ subjects this keeps every fold's class mix close to
the dataset's while never splitting a subject.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

Fold = Tuple[np.ndarray, np.ndarray]


def _subject_ids(subjects: np.ndarray, allow_missing_subjects: bool) -> np.ndarray:
    """Validates subject ids; gives records without one a unique pseudo-subject if allowed."""
    subjects = np.asarray(subjects).astype(str)
    if subjects.ndim != 1:
        raise ValueError(f"subjects must be 1-D. Received shape={subjects.shape}")
    missing = np.flatnonzero(np.char.strip(subjects) == "")
    if len(missing) == 0:
        return subjects
    if not allow_missing_subjects:
        raise ValueError(
            f"{len(missing)} of {len(subjects)} records have no subject id (first at index "
            f"{missing[0]}). A subject-independent split needs subject ids; pass "
            "allow_missing_subjects=True to treat each such record as its own subject."
        )
    subjects = subjects.astype(object)
    # Angle brackets and spaces do not occur in dataset ids, so these never collide with one.
    subjects[missing] = [f"<no subject: record {i}>" for i in missing]
    return subjects.astype(str)


def _check_labels(labels: np.ndarray, n: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(
            f"labels must be 1-D with one entry per record ({n}). Received shape={labels.shape}"
        )
    return labels


def _assign_subjects(
    histograms: np.ndarray, shares: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Greedily puts each subject (row of ``histograms``) into one bin; returns bin per subject.

    Bin ``b`` targets ``shares[b]`` of every class and of the total size. Every bin gets at
    least one subject (the caller guarantees there are enough subjects).
    """
    n_subjects, _ = histograms.shape
    n_bins = len(shares)
    totals = histograms.sum(axis=0).astype(np.float64)
    class_target = shares[:, None] * totals[None, :]
    size_target = shares * totals.sum()
    sizes = histograms.sum(axis=1)
    # Seeded shuffle first, then a stable sort by size: equal-sized subjects keep a seed-
    # dependent order, so different seeds give different (equally balanced) folds.
    order = rng.permutation(n_subjects)
    order = order[np.argsort(-sizes[order], kind="stable")]
    bin_tie_break = rng.permutation(n_bins)

    bin_hist = np.zeros_like(class_target)
    bin_size = np.zeros(n_bins)
    bin_count = np.zeros(n_bins, dtype=np.int64)
    assignment = np.empty(n_subjects, dtype=np.int64)
    for rank, s in enumerate(order):
        h = histograms[s]
        # Increase of sum((count - target)^2 / target) if the subject joins each bin.
        gap = bin_hist - class_target
        with np.errstate(divide="ignore", invalid="ignore"):
            class_cost = np.where(class_target > 0, h * (2 * gap + h) / class_target, 0.0)
        size_cost = sizes[s] * (2 * (bin_size - size_target) + sizes[s]) / size_target
        cost = class_cost.sum(axis=1) + size_cost
        remaining = n_subjects - rank
        empty = bin_count == 0
        if empty.sum() >= remaining:
            cost = np.where(empty, cost, np.inf)
        best = min(range(n_bins), key=lambda b: (cost[b], bin_tie_break[b]))
        assignment[s] = best
        bin_hist[best] += h
        bin_size[best] += sizes[s]
        bin_count[best] += 1
    return assignment


def _histograms(subject_codes: np.ndarray, n_subjects: int, labels: np.ndarray) -> np.ndarray:
    _, label_codes = np.unique(labels, return_inverse=True)
    hist = np.zeros((n_subjects, label_codes.max() + 1), dtype=np.int64)
    np.add.at(hist, (subject_codes, label_codes), 1)
    return hist


def subject_kfold(
    subjects: np.ndarray,
    labels: np.ndarray,
    n_folds: int,
    seed: int = 0,
    allow_missing_subjects: bool = False,
) -> List[Fold]:
    """Stratified k-fold split with folds disjoint by subject.

    Args:
        subjects: ``(N,)`` subject id per record.
        labels: ``(N,)`` class per record (any hashable values, e.g. canonical indices).
        n_folds: number of folds, at least 2.
        seed: the same seed gives the same folds.
        allow_missing_subjects: treat records with an empty subject id as one-record
            subjects instead of raising.

    Returns:
        ``n_folds`` pairs ``(train_idx, test_idx)`` of sorted int64 record indices. Every
        record is in exactly one test fold, and no subject is in both halves of a fold.

    Raises:
        ValueError: on missing subject ids (unless allowed), fewer subjects than folds, or
            arrays of mismatched lengths.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2. Received: n_folds={n_folds}")
    subjects = _subject_ids(subjects, allow_missing_subjects)
    labels = _check_labels(labels, len(subjects))
    unique, codes = np.unique(subjects, return_inverse=True)
    if len(unique) < n_folds:
        raise ValueError(
            f"Cannot make {n_folds} subject-disjoint folds from {len(unique)} subjects."
        )
    hist = _histograms(codes, len(unique), labels)
    shares = np.full(n_folds, 1.0 / n_folds)
    fold_of_subject = _assign_subjects(hist, shares, np.random.default_rng(seed))
    fold_of_record = fold_of_subject[codes]
    everything = np.arange(len(subjects))
    return [
        (everything[fold_of_record != f], everything[fold_of_record == f])
        for f in range(n_folds)
    ]


def leave_one_subject_out(
    subjects: np.ndarray, allow_missing_subjects: bool = False
) -> List[Fold]:
    """One fold per subject (sorted by id): that subject's records are the test set.

    Returns:
        A list of ``(train_idx, test_idx)`` pairs of sorted int64 record indices.
    """
    subjects = _subject_ids(subjects, allow_missing_subjects)
    unique, codes = np.unique(subjects, return_inverse=True)
    if len(unique) < 2:
        raise ValueError(
            f"Leave-one-subject-out needs at least 2 subjects. Received {len(unique)}."
        )
    everything = np.arange(len(subjects))
    return [(everything[codes != s], everything[codes == s]) for s in range(len(unique))]


def train_val_split(
    train_idx: np.ndarray,
    subjects: np.ndarray,
    labels: np.ndarray,
    val_fraction: float = 0.1,
    seed: int = 0,
    allow_missing_subjects: bool = False,
) -> Fold:
    """Splits a fold's training records into train and validation, disjoint by subject.

    Args:
        train_idx: record indices (into ``subjects``/``labels``) to split.
        subjects: ``(N,)`` subject id per record of the whole table.
        labels: ``(N,)`` class per record of the whole table.
        val_fraction: target share of records (and of each class) in validation, in (0, 1).
        seed: the same seed gives the same split.
        allow_missing_subjects: as in :func:`subject_kfold`.

    Returns:
        ``(train_idx, val_idx)``: sorted int64 indices into the whole table, together equal
        to the input ``train_idx``. Validation holds at least one subject, and so does train.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1). Received: val_fraction={val_fraction}")
    subjects = _subject_ids(subjects, allow_missing_subjects)
    labels = _check_labels(labels, len(subjects))
    train_idx = np.unique(np.asarray(train_idx, dtype=np.int64))
    if len(train_idx) and (train_idx[0] < 0 or train_idx[-1] >= len(subjects)):
        raise ValueError(
            f"train_idx must index {len(subjects)} records. "
            f"Received range [{train_idx[0]}, {train_idx[-1]}]."
        )
    unique, codes = np.unique(subjects[train_idx], return_inverse=True)
    if len(unique) < 2:
        raise ValueError(
            f"A subject-disjoint validation split needs at least 2 subjects in train_idx. "
            f"Received {len(unique)}."
        )
    hist = _histograms(codes, len(unique), labels[train_idx])
    shares = np.array([1.0 - val_fraction, val_fraction])
    bins = _assign_subjects(hist, shares, np.random.default_rng(seed))[codes]
    return train_idx[bins == 0], train_idx[bins == 1]


def describe_fold(
    subjects: np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray
) -> Dict[str, List[str]]:
    """The ``train_subjects`` / ``test_subjects`` entries of a results.json fold.

    Lists the sorted unique subject ids on each side; records without a subject id are left
    out (they have no name to report).
    """
    subjects = np.asarray(subjects).astype(str)

    def names(index: Sequence[int]) -> List[str]:
        return sorted({s for s in subjects[np.asarray(index, dtype=np.int64)].tolist() if s})

    return {"train_subjects": names(train_idx), "test_subjects": names(test_idx)}
