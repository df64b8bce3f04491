"""keras-fer: identity-aware facial expression recognition with Keras 3.

Heavy modules (TensorFlow, MediaPipe) are imported lazily so that ``import keras_fer``
stays cheap; ``keras_fer.Predictor`` loads the inference stack on first use.
"""

import os as _os

# tensorflow-model-optimization (QAT, pruning) and tf-keras-vis work on tf_keras (Keras 2),
# reached as ``tf.keras``; the project's own code always uses Keras 3 as ``import keras``.
# ``tf.keras`` is resolved once per process, so the choice must be made before anything
# touches it: made here, every process that uses keras_fer gets the same answer.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"


def __getattr__(name):
    if name == "Predictor":
        from keras_fer.inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'keras_fer' has no attribute {name!r}")
