"""Island loss: golden values computed by hand, centre moving rule, the layer form."""

import keras
import numpy as np
import pytest

from keras_fer.losses.island import IslandLoss, island_centre_update, island_loss

# 2-D features, 3 classes. Centres c0 = (1, 0), c1 = (0, 1), c2 = (-1, 0).
FEATURES = np.array([[2, 0], [0, 3], [-1, 1], [1, 1]], dtype="float32")
LABELS = np.array([0, 1, 2, 0])
CENTRES = np.array([[1, 0], [0, 1], [-1, 0]], dtype="float32")

# Centre term: x - c_y = (1,0), (0,2), (0,1), (0,1) -> squared norms 1 + 4 + 1 + 1 = 7;
#   1/2 * 7 / B(=4) = 0.875.
# Pair term: cos(c0,c1) = 0, cos(c0,c2) = -1, cos(c1,c2) = 0; over ordered pairs j != k:
#   2 * ((0 + 1) + (-1 + 1) + (0 + 1)) = 4; alpha * 4 = 0.03 * 4 = 0.12.
GOLDEN_LOSS = 0.875 + 0.12

# Moving rule, rate 0.5, alpha 0.03, with the pair-term gradient
#   dP/dc_j = 2 * sum_{k!=j} (c_k / (|c_j| |c_k|) - cos_jk * c_j / |c_j|^2)   (all norms are 1).
# c0: samples (2,0), (1,1): sum (c0 - x) = (-1,0) + (0,-1) = (-1,-1), / (1 + 2) = (-1/3, -1/3).
#     dP/dc0 = 2 * [(c1 - 0*c0) + (c2 - (-1)*c0)] = 2 * [(0,1) + (0,0)] = (0, 2) -> alpha: (0, 0.06)
#     c0' = (1,0) - 0.5 * ((-1/3, -1/3) + (0, 0.06)) = (1 + 1/6, 1/6 - 0.03)
# c1: sample (0,3): (0,-2) / 2 = (0,-1); dP/dc1 = 2 * [(1,0) + (-1,0)] = (0,0)
#     c1' = (0,1) - 0.5 * (0,-1) = (0, 1.5)
# c2: sample (-1,1): (0,-1) / 2 = (0,-0.5); dP/dc2 = 2 * [(c0 + c2) + c1] = (0,2) -> (0, 0.06)
#     c2' = (-1,0) - 0.5 * ((0,-0.5) + (0,0.06)) = (-1, 0.22)
GOLDEN_CENTRES = np.array([[1 + 1 / 6, 1 / 6 - 0.03], [0.0, 1.5], [-1.0, 0.22]], dtype="float32")


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_island_loss_golden_value():
    assert float(_np(island_loss(FEATURES, LABELS, CENTRES, alpha=0.03))) == pytest.approx(
        GOLDEN_LOSS, rel=1e-5
    )


def test_island_loss_accepts_column_labels_and_alpha_zero_is_centre_loss():
    value = island_loss(FEATURES, LABELS[:, None], CENTRES, alpha=0.0)
    assert float(_np(value)) == pytest.approx(0.875, rel=1e-6)


def test_centre_update_golden_values():
    updated = _np(island_centre_update(FEATURES, LABELS, CENTRES, alpha=0.03, rate=0.5))
    np.testing.assert_allclose(updated, GOLDEN_CENTRES, rtol=1e-5, atol=1e-6)


def test_centres_without_samples_only_feel_the_push():
    # Class 1 absent: its centre term is 0, so c1' = c1 - rate * alpha * dP/dc1 = c1 here
    # (dP/dc1 = 0 by symmetry), while c0 and c2 still move.
    keep = LABELS != 1
    updated = _np(island_centre_update(FEATURES[keep], LABELS[keep], CENTRES, 0.03, 0.5))
    np.testing.assert_allclose(updated[1], CENTRES[1], atol=1e-6)
    assert not np.allclose(updated[0], CENTRES[0])


def test_layer_holds_non_trainable_centres_and_moves_them_only_in_training():
    layer = IslandLoss(3, alpha=0.03, centre_rate=0.5, name="island")
    layer.build((None, 2))
    assert layer.trainable_weights == []
    assert [w.name for w in layer.non_trainable_weights] == ["centres"]
    layer.centres.assign(CENTRES)

    loss = layer(FEATURES, LABELS, training=False)
    assert float(_np(loss)) == pytest.approx(GOLDEN_LOSS, rel=1e-5)
    np.testing.assert_array_equal(_np(layer.centres), CENTRES)

    loss = layer(FEATURES, LABELS, training=True)
    assert float(_np(loss)) == pytest.approx(GOLDEN_LOSS, rel=1e-5)  # loss uses old centres
    np.testing.assert_allclose(_np(layer.centres), GOLDEN_CENTRES, rtol=1e-5, atol=1e-6)


def test_layer_config_round_trip():
    layer = IslandLoss(4, alpha=0.05, centre_rate=0.3, centre_initializer="zeros", name="island")
    config = layer.get_config()
    assert {k: config[k] for k in ("num_classes", "alpha", "centre_rate")} == {
        "num_classes": 4,
        "alpha": 0.05,
        "centre_rate": 0.3,
    }
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(clone, IslandLoss)
    assert clone.get_config() == config


def test_layer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        IslandLoss(1)
    with pytest.raises(ValueError, match="centre_rate"):
        IslandLoss(3, centre_rate=0.0)
    with pytest.raises(ValueError, match="features_shape"):
        IslandLoss(3).build((None, 4, 4))
