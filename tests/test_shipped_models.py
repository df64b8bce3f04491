"""The trained models shipped under saved_models/: each SavedModel (TF Serving layout) and its
TFLite twins load through the Predictor, classify real CK+ faces, and agree; the FER+ models
of issue 20 keep their recorded FER+ Test accuracy on real Test faces (a fixed subset for the
ResNet-18)."""

import json
from pathlib import Path

import numpy as np
import pytest

from keras_fer.data import readers
from keras_fer.data.preprocess import ALIGNED_SIZE, resize_uint8
from keras_fer.inference.predictor import Predictor

pytestmark = pytest.mark.slow

SERVING = Path(__file__).resolve().parents[1] / "saved_models"
SHIPPED = sorted(p.name for p in SERVING.iterdir()
                 if p.is_dir() and any(v.name.isdigit() for v in p.iterdir()))

# Decisions that must match the reference's on the CK+ faces: float16 and dynamic-range
# quantisation keep float activations and are near-lossless; full int8 (post-training)
# quantisation of the FER+ IDEnNet loses 2.7 points on FER+ Test (saved_models/
# idennet_ferplus_tflite/export_report.md) and agrees with its SavedModel on 20 of 24 CK+ faces.
MIN_AGREEMENT = {"float16": 0.9, "dynamic": 0.9, "int8": 0.75}
# (reference, twin) pairs: every shipped SavedModel with each TFLite variant beside it, and the
# edge model, shipped as TFLite only, with its float32 file as the reference.
PAIRS = [(SERVING / name, SERVING / f"{name}_tflite" / "tflite" / f"model_{variant}.tflite")
         for name in SHIPPED for variant in sorted(MIN_AGREEMENT)
         if (SERVING / f"{name}_tflite" / "tflite" / f"model_{variant}.tflite").is_file()]
EDGE = SERVING / "expression_ferplus_edge_tflite" / "tflite"
PAIRS.append((EDGE / "model_float32.tflite", EDGE / "model_int8.tflite"))

# Models of issue 20, the variants whose FER+ Test accuracy (all 3,545 faces, recorded in their
# export_report.json) must be reproduced, and on how many Test faces (None: all of them, the
# edge model is ~1 ms a face). The ResNet-18 (~1.3 GMAC a face) is checked on a fixed random
# subset (seed 0): its 400 faces score 82.25 for int8 and float16 against 82.96 and 82.79 on all
# faces; the standard error of a 400-face estimate is ~1.9 points, hence the wider tolerance.
RECORDED = {
    "expression_ferplus_resnet18": ["savedmodel", "tflite_float16", "tflite_int8"],
    "expression_ferplus_edge": ["tflite_float32", "tflite_int8"],
}
SUBSET = {"expression_ferplus_resnet18": 400, "expression_ferplus_edge": None}
TOLERANCE = {400: 3.0, None: 0.5}


def test_every_shipped_model_is_in_the_serving_config():
    config = (SERVING / "models.config").read_text()
    assert SHIPPED, "no model under saved_models/"
    for name in SHIPPED:
        assert f'name: "{name}"' in config and f'base_path: "/models/{name}"' in config


@pytest.fixture(scope="module")
def ck_faces(ckplus48_dir):
    table = readers.read_ckplus48(ckplus48_dir, size=60)
    rows = np.random.default_rng(0).choice(len(table.images), 24, replace=False)
    return np.asarray(table.images)[rows]


@pytest.fixture(scope="module")
def ferplus_test(ferplus_dir):
    table = readers.read_ferplus(ferplus_dir, splits=("test",))
    # Resized to the aligned 60 px as the exporter's evaluation faces were.
    return resize_uint8(np.stack(table.images), ALIGNED_SIZE), np.asarray(table.expression)


@pytest.mark.parametrize("reference, twin", PAIRS,
                         ids=[f"{r.parts[-1]}-{t.stem}" for r, t in PAIRS])
def test_shipped_tflite_twins_agree(reference, twin, ck_faces):
    saved, lite = Predictor(reference, prior="training"), Predictor(twin, prior="training")
    assert saved.class_names == lite.class_names
    p_saved, p_lite = saved.classify(ck_faces), lite.classify(ck_faces)
    assert p_saved.shape == p_lite.shape == (len(ck_faces), len(saved.class_names))
    np.testing.assert_allclose(p_saved.sum(axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(p_lite.sum(axis=1), 1.0, atol=2e-2)
    agree = np.mean(p_saved.argmax(1) == p_lite.argmax(1))
    minimum = MIN_AGREEMENT[twin.stem.removeprefix("model_")]
    assert agree >= minimum, f"{reference} and {twin.name} agree on {agree:.0%} of faces"


@pytest.mark.parametrize("name, variant", [(n, v) for n, vs in RECORDED.items() for v in vs])
def test_new_models_keep_their_ferplus_test_accuracy(name, variant, ferplus_test):
    report = json.loads((SERVING / f"{name}_tflite" / "export_report.json").read_text())
    entry = report["variants"][variant]
    faces, labels = ferplus_test
    size = SUBSET[name]
    if size is not None:
        rows = np.random.default_rng(0).choice(len(faces), size, replace=False)
        faces, labels = faces[rows], labels[rows]
    with Predictor(SERVING.parent / entry["path"], prior="training") as predictor:
        assert predictor.class_names == report["class_names"]
        probs = np.concatenate([predictor.classify(faces[i:i + 100])
                                for i in range(0, len(faces), 100)])
    accuracy = 100.0 * np.mean(probs.argmax(1) == labels)
    assert abs(accuracy - entry["accuracy"]) <= TOLERANCE[size], (
        f"{name} {variant}: {accuracy:.2f}% on {len(faces)} FER+ Test faces, "
        f"recorded {entry['accuracy']:.2f}% on all {report['num_faces']}")
