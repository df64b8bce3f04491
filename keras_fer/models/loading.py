"""Loading saved ``.keras`` models of any keras-fer method in a fresh process.

The custom layers and losses register themselves with Keras when their module is imported;
a script that loads, say, an IF-GAN inference model without having imported
``keras_fer.layers.attention`` fails with "Could not locate class 'SelfAttention2D'".
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path


def register_custom_objects() -> None:
    """Imports every module of ``keras_fer.layers``, ``keras_fer.losses`` and
    ``keras_fer.models``, so that every registered class is known to Keras."""
    import keras_fer.layers
    import keras_fer.losses
    import keras_fer.models

    for package in (keras_fer.layers, keras_fer.losses, keras_fer.models):
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")


def load_model(path: str | Path, compile: bool = False):
    """``keras.saving.load_model`` after :func:`register_custom_objects`."""
    import keras

    register_custom_objects()
    return keras.saving.load_model(path, compile=compile)
