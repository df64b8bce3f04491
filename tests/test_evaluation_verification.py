"""Tests for keras_fer.evaluation.verification with hand-made embeddings and scores."""

import numpy as np
import pytest

from keras_fer.evaluation import verification
from keras_fer.evaluation.verification import (
    choose_threshold,
    cosine_scores,
    verification_accuracy,
    verification_pairs,
)

SUBJECTS = np.array(["a", "a", "b", "c", "c", "c"])


def test_cosine_scores_golden():
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [-2.0, 0.0]])
    pairs = np.array([[0, 1], [0, 2], [0, 4], [3, 0], [2, 2]])
    np.testing.assert_allclose(
        cosine_scores(emb, pairs), [0.0, 1.0 / np.sqrt(2.0), -1.0, 0.0, 1.0], atol=1e-12
    )


def test_cosine_scores_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(P, 2\)"):
        cosine_scores(np.ones((3, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        cosine_scores(np.ones(3), np.array([[0, 1]]))


def test_choose_threshold_separable():
    scores = np.array([0.9, 0.8, 0.3, 0.6, 0.1])
    same = np.array([True, True, False, False, False])
    threshold = choose_threshold(scores, same)
    assert threshold == pytest.approx(0.7)
    assert verification_accuracy(scores, same, threshold) == 100.0


def test_choose_threshold_tie_goes_to_smallest():
    # Candidates -0.9, 0.15, 0.25, 0.35, 1.4 score 2, 3, 2, 3, 2 correct of 4.
    scores = np.array([0.1, 0.2, 0.3, 0.4])
    same = np.array([False, True, False, True])
    threshold = choose_threshold(scores, same)
    assert threshold == pytest.approx(0.15)
    assert verification_accuracy(scores, same, threshold) == 75.0


def test_choose_threshold_equal_scores():
    assert choose_threshold(np.array([0.5, 0.5]), np.array([True, False])) == pytest.approx(-0.5)


def test_verification_accuracy_is_inclusive_and_percent():
    scores = np.array([0.5, 0.2, 0.7])
    same = np.array([True, False, False])
    assert verification_accuracy(scores, same, 0.5) == pytest.approx(200.0 / 3.0)
    with pytest.raises(ValueError, match="one length"):
        verification_accuracy(scores, same[:2], 0.5)


def test_verification_pairs_structure():
    pairs, same = verification_pairs(SUBJECTS, n_pairs=41, seed=3)
    assert pairs.shape == (41, 2) and same.shape == (41,)
    assert same[:20].all() and not same[20:].any()
    first, second = SUBJECTS[pairs[:, 0]], SUBJECTS[pairs[:, 1]]
    np.testing.assert_array_equal(first == second, same)
    assert (pairs[same, 0] != pairs[same, 1]).all()
    # "b" has one sample, so it can only appear in different-subject pairs.
    assert "b" not in set(first[same])


def test_verification_pairs_deterministic_per_seed():
    a = verification_pairs(SUBJECTS, 50, seed=0)[0]
    np.testing.assert_array_equal(a, verification_pairs(SUBJECTS, 50, seed=0)[0])
    assert not np.array_equal(a, verification_pairs(SUBJECTS, 50, seed=1)[0])


def test_verification_pairs_rejects_impossible_inputs():
    with pytest.raises(ValueError, match="two samples"):
        verification_pairs(["a", "b", "c"], 4, seed=0)
    with pytest.raises(ValueError, match="two subjects"):
        verification_pairs(["a", "a"], 4, seed=0)
    with pytest.raises(ValueError, match="n_pairs"):
        verification_pairs(SUBJECTS, 1, seed=0)


def test_end_to_end_perfect_embeddings():
    subjects = np.array([0, 0, 1, 1, 2, 2])
    emb = np.eye(3)[subjects] + 0.01 * np.arange(6)[:, None]
    pairs, same = verification_pairs(subjects, 20, seed=0)
    scores = cosine_scores(emb, pairs)
    threshold = choose_threshold(scores, same)
    assert verification_accuracy(scores, same, threshold) == 100.0


def test_roc_auc_counts_ties_as_half_and_matches_scipy_ranks():
    from scipy.stats import rankdata

    scores = np.array([0.9, 0.5, 0.5, 0.2, 0.5, 0.8, 0.1])
    same = np.array([True, True, False, False, False, True, False])
    pos, neg = scores[same], scores[~same]
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert verification.roc_auc(scores, same) == pytest.approx(brute)
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=500), 1)  # many ties
    same = rng.random(500) < 0.2
    ranks = rankdata(scores)
    n_pos, n_neg = same.sum(), (~same).sum()
    expected = (ranks[same].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    assert verification.roc_auc(scores, same) == pytest.approx(expected, abs=1e-12)


def test_eer_accuracy_picks_the_score_where_false_accepts_meet_false_rejects():
    # Same pairs 0.9, 0.8, 0.3; different pairs 0.7, 0.2, 0.1, 0.05, 0.0.
    scores = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.05, 0.0])
    same = np.array([True, True, True, False, False, False, False, False])
    accuracy, threshold = verification.eer_accuracy(scores, same)
    # |FAR - FRR| of score >= t: 1/5 at 0.3 (FRR 0, FAR 1/5), 2/15 at 0.7 (FRR 1/3, FAR 1/5),
    # 1/3 at 0.8 (FRR 1/3, FAR 0); at 0.7 six of the eight pairs are right.
    assert threshold == 0.7
    assert accuracy == pytest.approx(100 * 6 / 8)
