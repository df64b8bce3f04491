"""Confusion matrix and accuracy helpers, against hand-counted values."""

import numpy as np
import pytest

from keras_fer.evaluation import metrics


def test_confusion_matrix_hand_counts():
    y_true = np.array([0, 0, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 2, 0, 2])
    cm = metrics.confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert metrics.accuracy_percent(cm) == pytest.approx(100 * 4 / 6)
    np.testing.assert_allclose(metrics.per_class_accuracy(cm), [50.0, 100.0, 100 * 2 / 3])


def test_per_class_accuracy_empty_class_is_nan():
    cm = metrics.confusion_matrix(np.array([0, 0]), np.array([0, 1]), 3)
    acc = metrics.per_class_accuracy(cm)
    assert acc[0] == 50.0 and np.isnan(acc[2])


def test_confusion_matrix_rejects_bad_labels():
    with pytest.raises(ValueError, match="outside"):
        metrics.confusion_matrix(np.array([3]), np.array([0]), 3)


def test_plots_write_png(tmp_path):
    cm = np.array([[3, 1], [0, 4]])
    metrics.plot_confusion_matrix(cm, ["a", "b"], tmp_path / "cm.png")
    metrics.plot_per_class_accuracy(cm, ["a", "b"], tmp_path / "pc.png")
    for name in ("cm.png", "pc.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
