"""The ``identity`` switch (issue 17 part 2): dlib's face network inside the methods.

Tiny budgets: one fold, one epoch, few subjects; what is checked is the wiring (the face
network's input conversion, --extra validation, the stages and reports each method writes),
not accuracy. IDFERM's HNG has per-backend train steps, so it also runs on JAX (subprocess).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_fer.models import face_embedding, tfe
from keras_fer.models.face_identity import dlib_resnet, to_face_input
from keras_fer.training.config import TrainConfig
from keras_fer.training.idferm_identity import far_threshold
from keras_fer.training.ifgan_identity import same_expression_pairs
from keras_fer.training.tfe import TFEMethod

REPO = Path(__file__).resolve().parents[1]


def test_face_embedding_model_matches_numpy_conversion():
    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48)).astype(np.uint8)
    a = face_embedding.face_embedding_model().predict(faces[..., None] / 255.0, verbose=0)
    b = dlib_resnet().predict(to_face_input(faces), verbose=0)
    cos = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.9999


def test_face_net_input_config_round_trip():
    layer = face_embedding.FaceNetInput(size=150, name="x")
    again = face_embedding.FaceNetInput.from_config(layer.get_config())
    assert again.size == 150 and again.name == "x"
    with pytest.raises(ValueError, match="size"):
        face_embedding.FaceNetInput(size=0)


def test_tfe_face_model_and_optimizer_groups():
    cfg = tfe.TFEConfig(num_classes=7, num_identities=0)
    assert cfg.identity == "face_resnet"
    model = tfe.build_tfe(cfg, face_weights=None)
    assert model.get_layer("tandem_concat").output.shape[-1] == 128 + 64
    opt = tfe.joint_optimizer(cfg)
    import re

    pattern = re.compile(tfe.IDENTITY_VARIABLES)
    face_vars = [v for v in model.trainable_variables if pattern.fullmatch(v.path)]
    assert face_vars and all("dlib_resnet" in v.path for v in face_vars)
    assert opt is not None
    with pytest.raises(ValueError, match="identity"):
        tfe.TFEConfig(num_classes=7, num_identities=2, identity="densenet")


def test_extra_keys_and_identity_values_are_validated():
    with pytest.raises(ValueError, match="Unknown --extra"):
        TFEMethod.identity(TrainConfig(method="tfe", extra={"deepid_rate": 1}))
    with pytest.raises(ValueError, match="identity"):
        TFEMethod.identity(TrainConfig(method="tfe", extra={"identity": "densenet"}))
    assert TFEMethod.identity(TrainConfig(method="tfe")) == "face_resnet"


def test_far_threshold_and_same_expression_pairs():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 8))
    subjects = np.repeat(np.arange(10), 4)
    threshold, far = far_threshold(emb, subjects, 0.05, 500, 0)
    assert 0.0 <= far <= 0.1 and threshold > 0
    pairs = same_expression_pairs(np.array([0, 0, 1, 0]), np.array(["a", "b", "c", "a"]), 10, 0)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (1, 3)]


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
@pytest.mark.slow
def test_idferm_face_identity_trains_on_both_backends(tmp_path, backend):
    code = (
        "import sys, json, dataclasses; sys.path.insert(0, 'tests');"
        "from test_trainers_idferm import _few_subjects, _config;"
        "from keras_fer.data import experiments; from keras_fer.training import runner;"
        "from keras_fer.training.idferm import IDFERMMethod;"
        f"exp = _few_subjects(experiments.load_experiment('synthetic', r'{tmp_path}/d', 'ck8'), 8);"
        f"cfg = _config(r'{tmp_path}/m');"
        "runner.train_and_evaluate(IDFERMMethod(), cfg, experiment=exp)"
    )
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "m" / "fold_0" / "hng.json").read_text())
    assert report["network"] == "face_resnet"
    assert 0.0 <= report["identity_preserved_percent"] <= 100.0
    assert report["threshold_far_percent"] <= 5.0
