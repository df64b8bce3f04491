"""Tests for the self-constrained focal identity loss: hand-computed values, parity, config."""

import math

import keras
import numpy as np
import pytest

from keras_fer.losses.focal_identity import (
    SelfConstrainedFocalLoss,
    identity_label_mask,
    self_constrained_focal,
)

# Two samples, three classes.
PROBS = np.array([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]], dtype="float32")
SPARSE = np.array([0, 2])
ONE_HOT = np.eye(3, dtype="float32")[SPARSE]

# By hand, alpha = 0.5, gamma = 2, L = -alpha * (1 - p_y)^gamma * ln(p_y):
#   sample 1, p_y = 0.5: 0.5 * 0.5^2 * ln 2        = 0.5 * 0.25 * 0.69314718 = 0.08664340
#   sample 2, p_y = 0.7: 0.5 * 0.3^2 * -ln 0.7     = 0.5 * 0.09 * 0.35667494 = 0.01605037
#   mean                                            = (0.08664340 + 0.01605037) / 2 = 0.05134688
HAND = np.array([0.08664340, 0.01605037])
HAND_MEAN = 0.05134688

# Paper defaults alpha = 0.1, gamma = 15:
#   sample 1: 0.1 * 0.5^15 * ln 2   = 0.1 * 3.0517578e-5 * 0.69314718 = 2.1153052e-6
#   sample 2: 0.1 * 0.3^15 * -ln .7 = 0.1 * 1.4348907e-8 * 0.35667494 = 5.1178e-10
PAPER = np.array([2.1153052e-6, 5.1178e-10])


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("labels", [SPARSE, SPARSE[:, None], ONE_HOT], ids=["b", "b1", "onehot"])
def test_hand_computed_values(labels):
    per_sample = _np(self_constrained_focal(labels, PROBS, alpha=0.5, gamma=2.0))
    np.testing.assert_allclose(per_sample, HAND, rtol=1e-5)
    loss = SelfConstrainedFocalLoss(alpha=0.5, gamma=2.0)
    assert float(_np(loss(labels, PROBS))) == pytest.approx(HAND_MEAN, rel=1e-5)


def test_paper_defaults_hand_computed():
    np.testing.assert_allclose(_np(self_constrained_focal(SPARSE, PROBS)), PAPER, rtol=1e-4)
    assert float(_np(SelfConstrainedFocalLoss()(SPARSE, PROBS))) == pytest.approx(
        PAPER.mean(), rel=1e-4
    )


def test_gamma_zero_is_alpha_times_cross_entropy():
    ce = _np(keras.losses.sparse_categorical_crossentropy(SPARSE, PROBS))
    focal = _np(self_constrained_focal(SPARSE, PROBS, alpha=0.3, gamma=0.0))
    np.testing.assert_allclose(focal, 0.3 * ce, rtol=1e-6)
    assert focal[0] == pytest.approx(0.3 * math.log(2), rel=1e-6)


def test_matches_keras_categorical_focal_crossentropy_on_one_hot_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5)).astype("float32")
    probs = _np(keras.ops.softmax(logits))
    labels = np.eye(5, dtype="float32")[rng.integers(0, 5, size=6)]
    for alpha, gamma in [(0.1, 15.0), (0.25, 2.0), (1.0, 0.5)]:
        reference = keras.losses.CategoricalFocalCrossentropy(alpha=alpha, gamma=gamma)
        ours = SelfConstrainedFocalLoss(alpha=alpha, gamma=gamma)
        assert float(_np(ours(labels, probs))) == pytest.approx(
            float(_np(reference(labels, probs))), rel=1e-5
        )


def test_logits_and_probabilities_agree():
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]], dtype="float32")
    probs = _np(keras.ops.softmax(logits))
    np.testing.assert_allclose(
        _np(self_constrained_focal([1, 0], logits, 0.1, 3.0, from_logits=True)),
        _np(self_constrained_focal([1, 0], probs, 0.1, 3.0)),
        rtol=1e-5,
    )


def test_missing_labels_contribute_zero_and_are_masked():
    labels = np.array([-1, 2])
    per_sample = _np(self_constrained_focal(labels, PROBS, alpha=0.5, gamma=2.0))
    np.testing.assert_allclose(per_sample, [0.0, HAND[1]], rtol=1e-5)
    np.testing.assert_array_equal(_np(identity_label_mask(labels, PROBS)), [0.0, 1.0])
    one_hot = np.array([[0, 0, 0], [0, 0, 1]], dtype="float32")
    np.testing.assert_array_equal(_np(identity_label_mask(one_hot, PROBS)), [0.0, 1.0])


def test_saturated_probabilities_stay_finite():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]], dtype="float32")
    values = _np(self_constrained_focal([0, 0], probs, alpha=0.1, gamma=15.0))
    assert np.all(np.isfinite(values))
    assert values[0] == pytest.approx(0.0, abs=1e-12)
    # p_y clipped to 1e-7: 0.1 * (1 - 1e-7)^15 * -ln(1e-7) = 0.1 * 16.118 = 1.6118.
    assert values[1] == pytest.approx(1.6118, rel=1e-3)


def test_config_round_trip():
    loss = SelfConstrainedFocalLoss(alpha=0.2, gamma=7.0, from_logits=True, name="lid")
    config = loss.get_config()
    assert {"alpha": 0.2, "gamma": 7.0, "from_logits": True, "name": "lid"}.items() <= (
        config.items()
    )
    clone = SelfConstrainedFocalLoss.from_config(config)
    assert clone.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(revived, SelfConstrainedFocalLoss)
    logits = PROBS * 3.0
    assert float(_np(revived(SPARSE, logits))) == pytest.approx(float(_np(loss(SPARSE, logits))))


def test_negative_hyperparameters_are_rejected():
    with pytest.raises(ValueError, match="alpha=-0.1"):
        SelfConstrainedFocalLoss(alpha=-0.1)
    with pytest.raises(ValueError, match="gamma=-1"):
        self_constrained_focal(SPARSE, PROBS, gamma=-1)
