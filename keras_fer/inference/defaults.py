"""The model ``keras-fer predict`` and ``keras_fer.Predictor()`` use when none is given.

One constant so the default can be switched in one line: the FER+ IDEnNet's QAT int8 twin
(8 classes, 78.93% on FER+ Test, 261 KB, ~1.5 ms a face on one thread), until a better shipped
model replaces it. It is a ``.tflite`` file, so the default path never imports TensorFlow.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# Relative to the shipped-models folder (``saved_models/`` beside the package).
DEFAULT_MODEL = "idennet_ferplus_tflite/tflite/model_qat.tflite"


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
