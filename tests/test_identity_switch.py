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
    # unknown subjects (FER+: ""; or no ids at all): every such face is its own subject
    pairs = same_expression_pairs(np.array([0, 0, 1, 0]), None, 10, 0)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (0, 3), (1, 3)]
    pairs = same_expression_pairs(np.array([0, 0, 0, 0]), np.array(["", "", "a", "a"]), 10, 0)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)]


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


def _border_model():
    """Embedding = the 8x8 average-pooled face's outer ring, centred on mid-gray, plus a
    constant: the 48x48 crop of a 60x60 frame keeps none of the frame's outer 6 pixels, so
    faces that differ only there embed alike on the crop and apart on the frame."""
    import keras
    from keras import layers

    class Ring(layers.Layer):
        def call(self, x):
            g = keras.ops.image.resize(x, (8, 8), interpolation="area")[..., 0] - 0.5
            ring = keras.ops.concatenate([g[:, 0, :], g[:, 7, :], g[:, 1:7, 0], g[:, 1:7, 7]],
                                         axis=1)
            return keras.ops.concatenate([ring, 0.0 * ring[:, :1] + 0.5], axis=1)

    inputs = keras.Input((None, None, 1))
    return keras.Model(inputs, Ring()(inputs))


def test_hng_rate_is_measured_on_the_crop_and_on_the_whole_frame():
    """``identity_preservation`` reports the rate twice, with its own threshold each: on the
    models' 48 crop (top level) and on the whole 60 frame (``frame60``). Subjects here differ
    only in the frame's outer 6 pixels, which the crop cuts away."""
    from types import SimpleNamespace
    from keras_fer.training.idferm_identity import identity_preservation

    rng = np.random.default_rng(0)
    n_subjects, per = 10, 4
    faces, subjects = [], []
    for s in range(n_subjects):
        frame = rng.integers(0, 256, (60, 60))
        for _ in range(per):
            face = frame.copy()
            face[6:54, 6:54] = 128
            faces.append(face)
            subjects.append(f"S{s}")
    faces, subjects = np.asarray(faces, np.uint8), np.array(subjects)
    train = np.isin(subjects, [f"S{s}" for s in range(6)])
    data = SimpleNamespace(fold=0, x_train=faces[train], subj_train=subjects[train],
                           identity_x=None, identity_y=None, x_test=faces[~train],
                           subj_test=subjects[~train],
                           test_subjects=sorted(set(subjects[~train].tolist())))
    # A generator that returns another test subject's face: wrong identity, same centre.
    others = np.roll(faces[~train], per, axis=0)
    report = identity_preservation(data, others, n_pairs=200, seed=0, far=0.05,
                                   model=_border_model())
    assert report["identity_preserved_percent"] == 100.0  # the crop cannot tell them apart
    assert report["frame60"]["identity_preserved_percent"] == 0.0
    assert report["frame60"]["mean_cosine_distance"] > 0.1 > report["mean_cosine_distance"]
    same = identity_preservation(data, faces[~train], n_pairs=200, seed=0, far=0.05,
                                 model=_border_model())
    assert same["identity_preserved_percent"] == same["frame60"][
        "identity_preserved_percent"] == 100.0
    assert set(same["frame60"]) == {"threshold_cosine_distance", "threshold_far_percent",
                                    "test_far_percent", "identity_preserved_percent",
                                    "mean_cosine_distance"}
