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


def weights_from_savedmodel(model, savedmodel_dir: str | Path) -> int:
    """Fills ``model``'s weights from a SavedModel the project exported from the same model.

    The exporter stores each Keras variable under its path (``layer/variable``), so a model
    rebuilt from the same builder gets every weight back, e.g. to fine-tune a shipped model
    whose ``.keras`` was not kept (``tools/keras_from_savedmodel.py``). Random-generator
    state (dropout seeds) is not a weight and is skipped.

    Returns:
        The number of weights set.

    Raises:
        ValueError: When a weight of ``model`` has no variable of that path and shape in the
            SavedModel (a different architecture or layer names).
    """
    import tensorflow as tf

    loaded = tf.saved_model.load(str(savedmodel_dir))
    stored = {v.name.rsplit(":", 1)[0]: v for v in loaded.variables}
    missing, mismatched = [], []
    for weight in model.weights:
        variable = stored.get(weight.path)
        if variable is None:
            missing.append(weight.path)
        elif tuple(variable.shape) != tuple(weight.shape):
            mismatched.append(f"{weight.path} {tuple(variable.shape)} vs {tuple(weight.shape)}")
    if missing or mismatched:
        raise ValueError(
            f"{savedmodel_dir} was not exported from a model like '{model.name}': "
            f"{len(missing)} weight(s) missing (e.g. {missing[:3]}), {len(mismatched)} of "
            f"another shape (e.g. {mismatched[:3]}).")
    for weight in model.weights:
        weight.assign(stored[weight.path].numpy())
    return len(model.weights)
