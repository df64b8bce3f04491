"""keras-fer: identity-aware facial expression recognition with Keras 3.

Heavy modules (TensorFlow, MediaPipe) are imported lazily so that ``import keras_fer``
stays cheap; ``keras_fer.Predictor`` loads the inference stack on first use.
"""

__version__ = "0.1.0"


def __getattr__(name):
    if name == "Predictor":
        from keras_fer.inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'keras_fer' has no attribute {name!r}")
