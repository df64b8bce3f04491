"""Face verification rate of identity embeddings (cosine similarity, learned threshold).

Measures how good an identity feature is on subjects the network never saw, the way the
TFE-JL paper checks its DeepID feature on LFW: sample same-subject and different-subject
pairs, score each pair by the cosine similarity of the two embeddings, choose the threshold
that maximises accuracy on validation pairs, and report the accuracy of that threshold on
test pairs (never choose the threshold on the pairs it is evaluated on).

A pair is predicted "same subject" when its score is ``>= threshold``. Accuracies are in
percent, like every accuracy the project reports.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def verification_pairs(
    subjects: Sequence | np.ndarray, n_pairs: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Samples ``n_pairs`` index pairs, half of them same-subject (the first ``n_pairs // 2``).

    Same-subject pairs pick a subject uniformly among those with at least two samples, then
    two distinct samples of it; different-subject pairs pick two distinct subjects uniformly,
    then one sample of each. Pairs are drawn with replacement (a pair may repeat).

    Args:
        subjects: Subject id of each sample (any hashable values).
        n_pairs: Number of pairs, >= 2.
        seed: Seed of the NumPy generator; the same inputs give the same pairs.

    Returns:
        ``(pairs, same)``: int64 ``(n_pairs, 2)`` sample indices and bool ``(n_pairs,)``.
    """
    subjects = np.asarray(subjects)
    if subjects.ndim != 1:
        raise ValueError(f"`subjects` must be 1-D. Received shape={subjects.shape}")
    if n_pairs < 2:
        raise ValueError(f"`n_pairs` must be >= 2. Received: n_pairs={n_pairs}")
    ids, inverse = np.unique(subjects, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(ids))]
    repeated = [m for m in members if len(m) >= 2]
    if not repeated or len(ids) < 2:
        raise ValueError(
            "Need at least two subjects and one subject with two samples. Received "
            f"{len(ids)} subjects, {len(repeated)} with two or more samples."
        )
    rng = np.random.default_rng(seed)
    n_same = n_pairs // 2
    pairs = np.empty((n_pairs, 2), dtype=np.int64)
    for row in range(n_same):
        group = repeated[rng.integers(len(repeated))]
        pairs[row] = rng.choice(group, size=2, replace=False)
    for row in range(n_same, n_pairs):
        first, second = rng.choice(len(ids), size=2, replace=False)
        pairs[row] = (rng.choice(members[first]), rng.choice(members[second]))
    same = np.arange(n_pairs) < n_same
    return pairs, same


def cosine_scores(embeddings: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Cosine similarity of the two embeddings of each pair.

    Args:
        embeddings: ``(N, D)`` features.
        pairs: ``(P, 2)`` indices into ``embeddings``.

    Returns:
        float64 ``(P,)`` in [-1, 1]; a pair with an all-zero embedding (possible after a
        ReLU) scores 0.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    pairs = np.asarray(pairs)
    if embeddings.ndim != 2:
        raise ValueError(f"`embeddings` must be (N, D). Received shape={embeddings.shape}")
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"`pairs` must be (P, 2). Received shape={pairs.shape}")
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = embeddings / np.where(norms > 0.0, norms, 1.0)
    return np.sum(unit[pairs[:, 0]] * unit[pairs[:, 1]], axis=1)


def _check_scores(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if scores.ndim != 1 or scores.shape != same.shape or scores.size == 0:
        raise ValueError(
            "`scores` and `same` must be non-empty 1-D arrays of one length. "
            f"Received shapes {scores.shape} and {same.shape}"
        )
    return scores, same


def verification_accuracy(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Percentage of pairs classified correctly by ``score >= threshold``."""
    scores, same = _check_scores(scores, same)
    return float(100.0 * np.mean((scores >= threshold) == same))


def choose_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold that maximises :func:`verification_accuracy` on these (validation) pairs.

    Candidates are the midpoints between consecutive distinct scores plus one value below
    the lowest and one above the highest score; ties go to the smallest candidate.
    """
    scores, same = _check_scores(scores, same)
    distinct = np.unique(scores)
    candidates = np.concatenate(
        [[distinct[0] - 1.0], (distinct[:-1] + distinct[1:]) / 2.0, [distinct[-1] + 1.0]]
    )
    order = np.argsort(scores, kind="stable")
    sorted_scores, sorted_same = scores[order], same[order]
    # below[c] = pairs predicted "different" by candidate c (scores < c); prefix counts then
    # give every candidate's accuracy in O(P log P).
    below = np.searchsorted(sorted_scores, candidates, side="left")
    diff_prefix = np.concatenate([[0], np.cumsum(~sorted_same)])
    same_prefix = np.concatenate([[0], np.cumsum(sorted_same)])
    correct = diff_prefix[below] + (same_prefix[-1] - same_prefix[below])
    return float(candidates[int(np.argmax(correct))])


def roc_auc(scores: np.ndarray, same: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for same vs different pairs (Mann-Whitney U,
    average ranks for ties)."""
    scores, same = _check_scores(scores, same)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2.0)[inverse]
    n_pos, n_neg = int(same.sum()), int((~same).sum())
    return float((ranks[same].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def eer_accuracy(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """``(accuracy percent, threshold)`` at the equal-error threshold: among the distinct
    scores, the one where the false-accept and false-reject rates of ``score >= threshold``
    are closest. (With many more different pairs than same ones, the threshold that
    maximises accuracy rejects nearly everything; this one weighs both kinds of error.)"""
    scores, same = _check_scores(scores, same)
    candidates = np.unique(scores)
    pos, neg = np.sort(scores[same]), np.sort(scores[~same])
    frr = np.searchsorted(pos, candidates, side="left") / len(pos)
    far = 1.0 - np.searchsorted(neg, candidates, side="left") / len(neg)
    t = candidates[int(np.argmin(np.abs(far - frr)))]
    return verification_accuracy(scores, same, t), float(t)


def all_pairs_verification(embeddings: np.ndarray, subjects: np.ndarray) -> dict:
    """Every pair of ``embeddings`` scored by cosine, same subject or not: ``{"auc",
    "accuracy"`` (percent, at the equal-error threshold), ``"threshold", "pairs",
    "same_pairs"}``."""
    subjects = np.asarray(subjects)
    i, j = np.triu_indices(len(subjects), k=1)
    same = subjects[i] == subjects[j]
    scores = cosine_scores(embeddings, np.stack([i, j], 1))
    accuracy, threshold = eer_accuracy(scores, same)
    return {"auc": roc_auc(scores, same), "accuracy": accuracy, "threshold": threshold,
            "pairs": int(len(scores)), "same_pairs": int(same.sum())}


# The CK+ verification set of benchmarks/identity.py: the test subjects of fold 0 of the
# trainers' 10 subject-disjoint CK+48 ck7 folds (fold_seed 0, validation share 0.1, which moves
# only training rows). tools/train_fold_identity.py trains on that fold's training subjects;
# tools/distill_identity.py validates on every subject outside it.
CKPLUS_FOLDS, CKPLUS_FOLD, CKPLUS_FOLD_SEED = 10, 0, 0


def ckplus_verification_split(exp) -> tuple[np.ndarray, np.ndarray]:
    """``(test rows, all other rows)`` of a CK+ ``Experiment`` (see above)."""
    from keras_fer.data.experiments import fold_indices

    test = fold_indices(exp, CKPLUS_FOLDS, CKPLUS_FOLD_SEED, 0.1)[CKPLUS_FOLD][2]
    return test, np.setdiff1d(np.arange(len(exp.faces)), test)
