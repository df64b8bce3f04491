"""A stand-in for the shipped FER+ ResNet-18 (.devdata/ferplus_resnet18_std.keras) in tests.

The real file is 20 MB and git-ignored; the tests build the same architecture
(``keras_fer.models.expression``, backbone ``resnet18_std``, layers ``resnet18_std_*`` and a
``logits`` head) and move its BN statistics and scales off their initial values, so that a
copied layer is told apart from a freshly built one.
"""

import keras
import numpy as np

TRUNK = "resnet18_std"
TRUNK_LAYERS = 40  # stem conv + BN, 8 basic blocks x 2 conv + BN, 3 projections x conv + BN


def make_source(path, num_classes: int = 8, seed: int = 0) -> keras.Model:
    """Builds, perturbs and saves a ``resnet18_std`` expression model at ``path``."""
    from keras_fer.models.expression import build_expression_model

    keras.utils.set_random_seed(seed)
    source = build_expression_model("resnet18_std", num_classes, weights=None)
    rng = np.random.default_rng(seed)
    for layer in source.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([1 + 0.1 * rng.standard_normal(gamma.shape).astype("float32"),
                               0.1 * rng.standard_normal(beta.shape).astype("float32"),
                               0.1 * rng.standard_normal(mean.shape).astype("float32"),
                               1 + rng.random(var.shape).astype("float32")])
    source.save(path)
    return source


def trunk_weights(model: keras.Model) -> dict:
    """``{layer name: [weights]}`` of the ``resnet18_std_*`` layers with weights."""
    return {layer.name: [np.array(w) for w in layer.get_weights()]
            for layer in model.layers if layer.name.startswith(TRUNK) and layer.weights}


def trunk_features(model: keras.Model) -> keras.Model:
    """``model``'s inputs -> its ``resnet18_std_pool`` (512-d) output."""
    inputs = model.inputs if len(model.inputs) > 1 else model.inputs[0]
    return keras.Model(inputs, model.get_layer(f"{TRUNK}_pool").output)
