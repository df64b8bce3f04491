"""Saved models with keras-fer's custom layers load in a fresh process."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_fer.layers.attention import SelfAttention2D


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "KERAS_BACKEND": "tensorflow",
                               "TF_CPP_MIN_LOG_LEVEL": "3"})


@pytest.mark.slow
def test_load_model_registers_the_custom_layers_first(tmp_path):
    inputs = keras.Input((8, 8, 16))
    model = keras.Model(inputs, SelfAttention2D(name="attention")(inputs))
    path = tmp_path / "attention.keras"
    model.save(path)
    # Plain Keras in a process that never imported the layer's module cannot load it ...
    plain = _fresh_python(f"import keras; keras.saving.load_model({str(path)!r})")
    assert plain.returncode != 0 and "SelfAttention2D" in plain.stderr
    # ... keras_fer.models.loading.load_model can.
    ours = _fresh_python(f"""
        from keras_fer.models.loading import load_model
        print(load_model({str(path)!r}).get_layer("attention").__class__.__name__)
    """)
    assert ours.returncode == 0, ours.stderr[-2000:]
    assert ours.stdout.strip().endswith("SelfAttention2D")


SHIPPED_RESNET18 = (Path(__file__).resolve().parents[1] / "saved_models"
                    / "expression_ferplus_resnet18" / "1")


@pytest.mark.slow
def test_weights_from_savedmodel_rebuild_the_shipped_model(ckplus48_dir):
    """The shipped FER+ ResNet-18 has no .keras: rebuilt from its SavedModel's variables it
    gives the SavedModel's probabilities on real CK+ faces; another architecture is refused."""
    from keras_fer.data import readers
    from keras_fer.data.preprocess import to_model_input
    from keras_fer.inference.predictor import Predictor
    from keras_fer.models.expression import build_expression_model
    from keras_fer.models.loading import weights_from_savedmodel

    table = readers.read_ckplus48(ckplus48_dir, size=60)
    faces = np.asarray(table.images)[::97][:10]
    model = build_expression_model("resnet18_std", 8, weights=None)
    assert weights_from_savedmodel(model, SHIPPED_RESNET18) == len(model.weights) == 102
    with Predictor(SHIPPED_RESNET18, prior="training", tta="none") as served:
        expected = served.classify(faces)
    np.testing.assert_allclose(model.predict(to_model_input(faces), verbose=0), expected,
                               atol=1e-4)
    with pytest.raises(ValueError, match="not exported from a model like 'expression_edge'"):
        weights_from_savedmodel(build_expression_model("edge", 8), SHIPPED_RESNET18)
