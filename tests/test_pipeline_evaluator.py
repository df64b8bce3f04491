"""Evaluator: the blessing rule, and per-class / per-subject accuracy through serving_default."""

import keras
import numpy as np
import pytest

from keras_fer.data import tfrecords
from keras_fer.data.labels import CANONICAL
from keras_fer.export.savedmodel import export_savedmodel
from keras_fer.pipeline.evaluator import EvalConfig, blessing, evaluate_savedmodel


@pytest.mark.parametrize(
    "accuracy, baseline, expected",
    [
        (80.0, None, True),  # threshold alone
        (69.9, None, False),  # below min_accuracy
        (79.5, 80.0, True),  # within the 1-point margin
        (78.9, 80.0, False),  # worse than the served model by more than the margin
        (90.0, 80.0, True),
        (69.0, 60.0, False),  # better than the baseline but under the threshold
    ],
)
def test_blessing_rule(accuracy, baseline, expected):
    config = EvalConfig(min_accuracy=70.0, max_regression=1.0)
    base = None if baseline is None else {"accuracy": baseline}
    blessed, reason = blessing({"accuracy": accuracy}, base, config)
    assert blessed is expected and reason


def test_nan_accuracy_is_never_blessed():
    assert blessing({"accuracy": float("nan")}, None, EvalConfig())[0] is False


def test_accuracy_per_class_and_subject_through_serving(tmp_path):
    # A "model" that predicts class 0 when the top-left pixel is dark, else class 1.
    image = keras.Input((48, 48, 1), name="image")
    corner = keras.layers.Cropping2D(((0, 47), (0, 47)))(image)
    logits = keras.layers.Dense(2, kernel_initializer=keras.initializers.Constant([[-50, 50]]),
                                bias_initializer=keras.initializers.Constant([25, -25]))(
        keras.layers.Flatten()(corner))
    model = keras.Model(image, keras.layers.Softmax()(logits))
    names = ["happiness", "surprise"]
    export_savedmodel(model, names, tmp_path / "m")

    def face(bright):
        im = np.zeros((60, 60), np.uint8)
        im[6, 6] = 255 if bright else 0  # the crop's top-left pixel
        return tfrecords.encode_png(im)

    happy, surprise, fear = (CANONICAL.index(n) for n in ("happiness", "surprise", "fear"))
    # Subject A: 2 happy (both right), 2 surprise (1 right); subject B: 2 surprise (0 right);
    # one fear face the model cannot predict is excluded.
    images = [face(0), face(0), face(1), face(0), face(0), face(0), face(1)]
    expression = np.array([happy, happy, surprise, surprise, surprise, surprise, fear])
    subjects = np.array(["A", "A", "A", "A", "B", "B", "B"])
    result = evaluate_savedmodel(tmp_path / "m", images, expression, subjects)
    assert result["classes"] == names
    assert result["count"] == 6 and result["excluded"] == 1
    assert result["accuracy"] == pytest.approx(100 * 3 / 6)
    assert result["per_class"] == {"happiness": {"accuracy": 100.0, "count": 2},
                                   "surprise": {"accuracy": 25.0, "count": 4}}
    assert result["per_subject"] == {"A": {"accuracy": 75.0, "count": 4},
                                     "B": {"accuracy": 0.0, "count": 2}}
    assert result["worst_subject"] == "B"
