"""Predictions with the training class prior divided out (``keras_fer.inference.prior``): the
arithmetic, the choice of ``tau`` on validation data, the file beside a model, the Predictor's
and ``keras-fer predict``'s ``prior`` setting, and the shipped default model's file."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from keras_fer.data import labels as labels_lib
from keras_fer.inference import prior as prior_lib
from keras_fer.inference.defaults import DEFAULT_TTA, default_model_path
from keras_fer.inference.predictor import Predictor
from script_loader import load_script
from test_inference_predictor import CLASSES, tiny_model

REPO = Path(__file__).resolve().parents[1]


def _tool():
    return load_script("tools/fit_class_prior.py")


def test_adjust_golden_values():
    probs = np.array([[0.6, 0.3, 0.1]])
    prior = [0.5, 0.3, 0.2]
    np.testing.assert_allclose(prior_lib.adjust(probs, prior, 0.0), probs, atol=1e-7)
    np.testing.assert_allclose(prior_lib.adjust(probs, prior, 1.0),
                               [[0.444444, 0.370370, 0.185185]], atol=1e-6)
    np.testing.assert_allclose(prior_lib.adjust(probs, prior, 0.5),
                               [[0.523829, 0.338130, 0.138041]], atol=1e-6)
    assert prior_lib.adjust(probs, prior, 0.5).dtype == np.float32


def test_tau_is_the_smallest_with_the_best_balanced_accuracy():
    # Two classes, 90% / 10% in training; the rare class's faces get 0.4 from the model.
    probs = np.array([[0.95, 0.05]] * 9 + [[0.6, 0.4]] * 3)
    labels = np.array([0] * 9 + [1] * 3)
    tau, grid = prior_lib.choose_tau(probs, labels, [0.9, 0.1])
    # 0.4 / 0.1**t > 0.6 / 0.9**t from t > ln(1.5) / ln(9) = 0.185; the common class keeps
    # its faces until t = ln(19) / ln(9) = 1.34.
    assert tau == 0.2
    assert grid[0.0] == grid[0.15] == 50.0 and grid[0.2] == grid[1.0] == 100.0
    assert prior_lib.balanced_accuracy(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1])) == 75.0


def test_prior_file_beside_a_model_and_its_errors(tmp_path):
    tflite = tmp_path / "tflite" / "model_int8.tflite"
    tflite.parent.mkdir()
    tflite.write_bytes(b"")
    assert prior_lib.load_prior(tflite, ["a", "b"]) is None  # none: the model's own output
    doc = {"class_names": ["a", "b"], "train_prior": [0.75, 0.25], "tau": 0.5}
    (tflite.parent / "class_prior.json").write_text(json.dumps(doc))
    prior = prior_lib.load_prior(tflite, ["a", "b"])
    assert (prior.tau, prior.train_prior, prior.path) == (0.5, (0.75, 0.25),
                                                          tflite.parent / "class_prior.json")
    # a file for this one model wins over the folder's
    (tflite.parent / "model_int8.class_prior.json").write_text(json.dumps(dict(doc, tau=1.0)))
    assert prior_lib.load_prior(tflite, ["a", "b"]).tau == 1.0
    with pytest.raises(ValueError, match=r"is for classes \['a', 'b'\], the model has"):
        prior_lib.load_prior(tflite, ["b", "a"])
    (tflite.parent / "model_int8.class_prior.json").write_text('{"tau": 2}')
    with pytest.raises(ValueError, match="not a class prior file .*tools/fit_class_prior.py"):
        prior_lib.load_prior(tflite, ["a", "b"])
    (tflite.parent / "model_int8.class_prior.json").write_text(json.dumps(dict(doc, tau=2.0)))
    with pytest.raises(ValueError, match=r"tau must be in \[0, 1\]"):
        prior_lib.load_prior(tflite, ["a", "b"])
    saved = tmp_path / "savedmodel"
    (saved / "assets.extra").mkdir(parents=True)
    (saved / "assets.extra" / "class_prior.json").write_text(json.dumps(doc))
    assert prior_lib.prior_file(saved) == saved / "assets.extra" / "class_prior.json"
    base = tmp_path / "served"  # a TF Serving model base: its newest version's file
    for version in ("1", "12"):
        (base / version / "assets.extra").mkdir(parents=True)
        (base / version / "saved_model.pb").write_bytes(b"")
        (base / version / "assets.extra" / "class_prior.json").write_text(json.dumps(doc))
    assert prior_lib.prior_file(base) == base / "12" / "assets.extra" / "class_prior.json"


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory):
    """The tiny 7-class model as float32 TFLite with its class names and a class prior."""
    from keras_fer.export.tflite import convert

    root = tmp_path_factory.mktemp("prior_model")
    path = convert(tiny_model(), "float32", root / "model_float32.tflite")
    (root / "class_names.txt").write_text("\n".join(CLASSES) + "\n")
    prior = [0.05, 0.02, 0.03, 0.1, 0.4, 0.2, 0.2]
    (root / "class_prior.json").write_text(json.dumps(
        {"class_names": CLASSES, "train_prior": prior, "tau": 0.5}))
    return path, prior


def test_predictor_divides_the_prior_out_unless_asked_not_to(tiny_tflite):
    path, prior = tiny_tflite
    faces = np.random.default_rng(0).integers(0, 256, (5, 60, 60), dtype=np.uint8)
    with Predictor(path, num_threads=1) as balanced, \
            Predictor(path, num_threads=1, prior="training") as own:
        assert own.prior is None and balanced.prior.tau == 0.5
        raw = own.classify(faces)
        np.testing.assert_allclose(balanced.classify(faces),
                                   prior_lib.adjust(raw, prior, 0.5), atol=1e-6)
        assert not np.allclose(balanced.classify(faces), raw, atol=1e-3)
        [label] = balanced.predict_faces(faces[:1])
        assert label["probabilities"][CLASSES[0]] == pytest.approx(
            float(prior_lib.adjust(raw[:1], prior, 0.5)[0, 0]), abs=1e-6)
    with pytest.raises(ValueError, match="prior must be one of balanced, training. Received"):
        Predictor(path, prior="uniform")
    # renamed classes keep their columns, and so the model's prior
    renamed = [f"class {k}" for k in range(7)]
    with Predictor(path, num_threads=1, class_names=renamed) as named:
        assert named.class_names == renamed and named.prior.tau == 0.5
        np.testing.assert_allclose(named.classify(faces), prior_lib.adjust(raw, prior, 0.5),
                                   atol=1e-6)


def test_flip_tta_averages_each_face_with_its_mirror(tiny_tflite):
    path, prior = tiny_tflite
    faces = np.random.default_rng(1).integers(0, 256, (4, 60, 60), dtype=np.uint8)
    with Predictor(path, num_threads=1, prior="training") as own, \
            Predictor(path, num_threads=1, tta="flip") as flip:
        assert (own.tta, flip.tta) == ("none", "flip")  # one pass is the default
        mean = (own.classify(faces) + own.classify(faces[:, :, ::-1].copy())) / 2
        np.testing.assert_allclose(flip.classify(faces), prior_lib.adjust(mean, prior, 0.5),
                                   atol=1e-6)
        # a face and its mirror image get the same answer
        np.testing.assert_allclose(flip.classify(faces[:, :, ::-1].copy()),
                                   flip.classify(faces), atol=1e-6)
    with pytest.raises(ValueError, match="tta must be one of none, flip. Received: tta='crops'"):
        Predictor(path, tta="crops")


@pytest.mark.slow
def test_cli_reports_the_prior_it_applied(tiny_tflite, tmp_path):
    path, _ = tiny_tflite
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skdata.astronaut()).save(photo)
    script = Path(sys.executable).with_name("keras-fer")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "keras_fer.cli"]
    reports = {}
    for flag in ("--prior=balanced", "--prior=training"):
        proc = subprocess.run([*command, "predict", str(photo), "--model", str(path), flag,
                               "--quiet"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        reports[flag] = json.loads(proc.stdout)
    assert reports["--prior=training"]["prior"] is None
    assert reports["--prior=training"]["tta"] == reports["--prior=balanced"]["tta"] == "none"
    note = reports["--prior=balanced"]["prior"]
    assert note["tau"] == 0.5 and note["file"].endswith("class_prior.json")
    assert list(note["train_prior"]) == CLASSES
    [face_b] = reports["--prior=balanced"]["results"][0]["faces"]
    [face_t] = reports["--prior=training"]["results"][0]["faces"]
    own = np.array([face_t["probabilities"][c] for c in CLASSES])
    expected = prior_lib.adjust(own[None], list(note["train_prior"].values()), 0.5)[0]
    np.testing.assert_allclose([face_b["probabilities"][c] for c in CLASSES], expected,
                               atol=1e-5)
    proc = subprocess.run([*command, "predict", str(photo), "--prior=uniform"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "invalid choice: 'uniform'" in proc.stderr


SHIPPED_PRIORS = sorted((REPO / "saved_models").glob("**/class_prior.json"))


def test_the_default_model_ships_a_prior():
    path = default_model_path()
    with Predictor(num_threads=1) as predictor:
        assert predictor.prior is not None
        assert predictor.prior.path == path.parent / "class_prior.json"
    assert predictor.prior.path in SHIPPED_PRIORS


@pytest.mark.parametrize("path", SHIPPED_PRIORS,
                         ids=[str(p.relative_to(REPO / "saved_models")) for p in SHIPPED_PRIORS])
def test_every_shipped_prior_was_chosen_on_ferplus_valid(path):
    doc = json.loads(path.read_text())
    prior = prior_lib.ClassPrior(tuple(doc["class_names"]), tuple(doc["train_prior"]),
                                 doc["tau"], path)
    grid = {float(t): s for t, s in doc["valid_balanced_accuracy_by_tau"].items()}
    assert prior.tau == min(t for t, s in grid.items() if s == max(grid.values()))
    assert 0.0 < prior.tau <= 1.0 and "Valid" in doc["chosen_on"]
    assert doc["tta"] == DEFAULT_TTA  # tau chosen on what the predictor computes by default
    assert doc["valid"]["balanced"]["balanced_accuracy"] > doc["valid"]["model"][
        "balanced_accuracy"]
    # the prior is FER+ Train's: mostly neutral and happy faces
    shares = dict(zip(prior.class_names, prior.train_prior))
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-5)
    assert shares["neutral"] > 0.3 and shares["happiness"] > 0.2 and shares["contempt"] < 0.02
    # beside a model whose class names it names (a tflite folder's, or a SavedModel's)
    names = path.parent / "class_names.txt"
    assert doc["class_names"] == names.read_text().split("\n")[:len(doc["class_names"])]
    assert doc["tool"] == "tools/fit_class_prior.py"


def test_a_savedmodel_and_its_tflite_twins_share_one_prior():
    saved = REPO / "saved_models" / "expression_ferplus_resnet18" / "1"
    twin = REPO / "saved_models" / "expression_ferplus_resnet18_tflite" / "tflite"
    assert (saved / "assets.extra" / "class_prior.json").read_text() == (
        twin / "class_prior.json").read_text()


def test_tool_prior_and_destinations(tmp_path):
    tool = _tool()
    columns = labels_lib.canonical_columns(["neutral", "happiness", "contempt"])
    labels = np.array(columns.tolist() * 2 + [columns[0]] * 4 + [99])
    np.testing.assert_allclose(tool.training_prior(labels, columns), [0.6, 0.2, 0.2])
    with pytest.raises(ValueError, match="has no training face"):
        tool.training_prior(np.array([columns[0]]), columns)
    tflite_dir = tmp_path / "m_tflite" / "tflite"
    tflite_dir.mkdir(parents=True)
    (tflite_dir / "model_int8.tflite").write_bytes(b"")
    assert tool.prior_destination(tflite_dir) == tflite_dir / "class_prior.json"
    assert tool.prior_destination(tflite_dir / "model_int8.tflite") == (
        tflite_dir / "class_prior.json")
    version = tmp_path / "m" / "3"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")
    assert tool.prior_destination(tmp_path / "m") == version / "assets.extra" / "class_prior.json"
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.5, 0.1, 0.4]])
    got = tool.scores(probs, columns[[0, 1, 2]], columns, np.array([0.6, 0.2, 0.2]), 1.0)
    assert got == {"accuracy": 100.0, "balanced_accuracy": 100.0}
    assert tool.scores(probs, columns[[0, 1, 2]], columns, np.ones(3) / 3, 0.0)[
        "accuracy"] == pytest.approx(33.33)
    shutil.rmtree(tmp_path / "m")
