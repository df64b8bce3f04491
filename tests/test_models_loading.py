"""Saved models with keras-fer's custom layers load in a fresh process."""

import os
import subprocess
import sys
import textwrap

import keras
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
