"""Golden values of the radial metric learning (RML) loss, computed by hand."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_fer.losses.rml import (
    RadialMetric,
    batch_class_centres,
    quadratic_form,
    radial_metric_loss,
)

# Three 2-D queries: two of class 0, one of class 1.
LABELS = np.array([0, 0, 1])
QUERIES = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]], dtype="float32")
# Class centres: C0 = ([1, 0] + [3, 0]) / 2 = [2, 0]; C1 = [0, 2].
CENTRES = np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0]], dtype="float32")
# Generated references of the three queries.
REFERENCES = np.array([[2.0, 1.0], [2.0, 3.0], [0.0, 0.0]], dtype="float32")


def test_batch_class_centres_are_per_class_means_gathered_per_sample():
    got = keras.ops.convert_to_numpy(batch_class_centres(QUERIES, LABELS, num_classes=3))
    np.testing.assert_allclose(got, CENTRES)


def test_quadratic_form_identity_metric():
    # W = I, b = 1: H = ||f - C||^2 - 1.
    # Queries:    [-1, 0] -> 1 - 1 = 0;  [1, 0] -> 0;  [0, 0] -> -1.
    # References: [0, 1] -> 0;  [0, 3] -> 9 - 1 = 8;  [0, -2] -> 4 - 1 = 3.
    eye = np.eye(2, dtype="float32")
    h_q = keras.ops.convert_to_numpy(quadratic_form(QUERIES, CENTRES, eye, 1.0))
    h_r = keras.ops.convert_to_numpy(quadratic_form(REFERENCES, CENTRES, eye, 1.0))
    np.testing.assert_allclose(h_q, [0.0, 0.0, -1.0])
    np.testing.assert_allclose(h_r, [0.0, 8.0, 3.0])


def test_quadratic_form_rectangular_metric():
    # W^T = [[1], [0]] keeps only the first coordinate: H = (f_x - C_x)^2 - b, b = 0.5.
    # References: (2 - 2)^2 - 0.5 = -0.5;  (2 - 2)^2 - 0.5 = -0.5;  (0 - 0)^2 - 0.5 = -0.5.
    kernel = np.array([[1.0], [0.0]], dtype="float32")
    h_r = keras.ops.convert_to_numpy(quadratic_form(REFERENCES, CENTRES, kernel, 0.5))
    np.testing.assert_allclose(h_r, [-0.5, -0.5, -0.5])


def test_radial_metric_loss_identity_metric():
    # With the H values above:
    # query hinges     max(0, 1 + H): 1 + 1 + 0 = 2
    # reference hinges max(0, 1 - H): 1 + 0 + 0 = 1
    # mean over K = 3 queries: (2 + 1) / 3 = 1.
    loss = radial_metric_loss(np.array([0.0, 0.0, -1.0]), np.array([0.0, 8.0, 3.0]))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss), 1.0, rtol=1e-6)


def test_radial_metric_loss_scaled_metric():
    # W = 2 I, b = 3: H = 4 ||f - C||^2 - 3.
    # Queries:    4*1 - 3 = 1;  1;  4*0 - 3 = -3   -> hinges 2 + 2 + 0 = 4
    # References: 4*1 - 3 = 1;  4*9 - 3 = 33;  4*4 - 3 = 13 -> hinges 0 + 0 + 0 = 0
    # loss = 4 / 3.
    kernel = 2.0 * np.eye(2, dtype="float32")
    h_q = quadratic_form(QUERIES, CENTRES, kernel, 3.0)
    h_r = quadratic_form(REFERENCES, CENTRES, kernel, 3.0)
    loss = keras.ops.convert_to_numpy(radial_metric_loss(h_q, h_r))
    np.testing.assert_allclose(loss, 4.0 / 3.0, rtol=1e-6)


def test_loss_is_zero_when_queries_inside_and_references_outside():
    # Queries at H <= -1 and references at H >= 1 satisfy both hinges.
    loss = radial_metric_loss(np.array([-1.0, -5.0]), np.array([1.0, 7.0]))
    assert float(keras.ops.convert_to_numpy(loss)) == 0.0


def test_radial_metric_layer_matches_hand_values():
    layer = RadialMetric(2, bias_initializer=1.0)
    layer.build((None, 2))
    layer.kernel.assign(np.eye(2, dtype="float32"))
    got = keras.ops.convert_to_numpy(layer(QUERIES, CENTRES))
    np.testing.assert_allclose(got, [0.0, 0.0, -1.0])
    assert layer.compute_output_shape((None, 2)) == (None,)


def test_radial_metric_get_config_round_trip():
    layer = RadialMetric(5, bias_initializer=2.5, name="rm")
    config = layer.get_config()
    assert config["units"] == 5 and config["bias_initializer"] == 2.5
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(clone, RadialMetric)
    assert clone.get_config() == config


@pytest.mark.parametrize("units", [0, -1, 1.5, True])
def test_radial_metric_rejects_bad_units(units):
    with pytest.raises(ValueError, match="units"):
        RadialMetric(units)


def test_batch_class_centres_rejects_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        batch_class_centres(QUERIES, LABELS, num_classes=0)
