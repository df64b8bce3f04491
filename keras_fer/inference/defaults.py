"""The model ``keras-fer predict`` and ``keras_fer.Predictor()`` use when none is given.

One constant so the default can be switched in one line. The default is the best general
model shipped: issue 20's FER+ ResNet-18 (8 classes, chosen among the trained large models by
FER+ Valid accuracy), as its int8 TFLite twin when that is within 0.5 points of the float
SavedModel on FER+ Test, else as its float16 twin. Test only checks the quantisation's
fidelity here (the model itself was chosen on Valid): int8 82.96% vs SavedModel 82.76%
(``saved_models/expression_ferplus_resnet18_tflite/export_report.md``), so int8: 11 MB,
~6.5 ms a face on one thread. It is a ``.tflite`` file, so the default path never imports
TensorFlow.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# Relative to the shipped-models folder (``saved_models/`` beside the package).
DEFAULT_MODEL = "expression_ferplus_resnet18_tflite/tflite/model_int8.tflite"

# Predictor(tta=...) / --tta: test-time augmentation. "flip" averages each face with its mirror
# image. On FER+ Valid (3,555 faces) it raises the balanced accuracy of the shipped FER+ models
# with their class prior divided out (default int8 ResNet-18 76.64 -> 79.32, edge int8 71.87 ->
# 73.05), but not their accuracy on CK+48, which no model trained on (int8 ResNet-18 81.35 ->
# 81.24, benchmarks/results/cross_dataset.md), and it costs one more classifier pass: 6.5 ms
# a face on one thread, which takes a one-face photo from 9.7 ms end to end past the 10 ms
# goal (benchmarks/results/product.md). So one pass stays the default (session 16 measured it
# as the default and went back).
TTAS = ("none", "flip")
DEFAULT_TTA = "none"


def shipped_models_dir() -> Path:
    """``saved_models/`` of the repository (or source tree) this package was installed from."""
    return Path(__file__).resolve().parents[2] / "saved_models"


def default_model_path() -> Path:
    """Absolute path of :data:`DEFAULT_MODEL`."""
    return shipped_models_dir() / DEFAULT_MODEL


def example_photo() -> Path:
    """The bundled example photo: scikit-image's astronaut (Eileen Collins, NASA, public
    domain), ``keras-fer predict --example``."""
    return Path(str(resources.files("keras_fer") / "assets" / "astronaut.jpg"))
