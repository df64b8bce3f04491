"""keras_fer.Predictor on real photos with a tiny exported model (SavedModel and TFLite)."""

import shutil

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

import keras_fer
from keras_fer.data.faces import FaceDetector
from keras_fer.data.imageio import ImageReadError
from keras_fer.data.labels import PROTOCOLS
from keras_fer.data.preprocess import to_model_input
from keras_fer.inference import annotate
from keras_fer.inference.predictor import (
    Predictor,
    resolve_saved_model_dir,
    tflite_class_names_path,
)

CLASSES = list(PROTOCOLS["ck7"])


def tiny_model():
    """(B, 48, 48, 1) -> softmax 7 with weights large enough to give uneven probabilities."""
    import keras

    keras.utils.set_random_seed(0)
    image = keras.Input((48, 48, 1), name="image")
    x = keras.layers.Conv2D(4, 5, strides=4, activation="relu", name="tiny_conv")(image)
    x = keras.layers.Flatten(name="tiny_flatten")(x)
    x = keras.layers.Dense(
        7, kernel_initializer=keras.initializers.RandomNormal(stddev=0.5), name="tiny_logits"
    )(x)
    out = keras.layers.Softmax(name="probabilities")(x)
    return keras.Model(image, out, name="tiny_fer")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny model exported as SavedModel and float32 TFLite (with a class-names sidecar)."""
    from keras_fer.export.savedmodel import export_savedmodel
    from keras_fer.export.tflite import convert

    root = tmp_path_factory.mktemp("tiny_export")
    model = tiny_model()
    saved = export_savedmodel(model, CLASSES, root / "savedmodel")
    tflite = convert(model, "float32", root / "tiny_float32.tflite")
    (root / "tiny_float32.class_names.txt").write_text("\n".join(CLASSES) + "\n")
    return {"model": model, "savedmodel": saved, "tflite": tflite, "root": root}


@pytest.fixture(scope="module")
def predictors(exported):
    with FaceDetector() as detector:
        # One pass (tta="none", also the default): these compare with the Keras model's own
        # output; flip is checked against two such passes in test_inference_prior.py.
        sm = Predictor(exported["savedmodel"], detector=detector, tta="none")
        tfl = Predictor(exported["tflite"], detector=detector, num_threads=1, tta="none")
        yield sm, tfl


@pytest.fixture(scope="module")
def astronaut():
    return skdata.astronaut()


def _orl_images(orl_dir, n=6):
    return [np.asarray(Image.open(orl_dir / f"s{k}" / "1.pgm")) for k in range(1, n + 1)]


def test_lazy_attribute_is_the_class():
    assert keras_fer.Predictor is Predictor


def test_astronaut_one_face_with_valid_fields(predictors, astronaut, exported):
    sm, _ = predictors
    faces = sm.predict_image(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert set(face) == {"box", "score", "class", "class_id", "probabilities"}
    x, y, w, h = face["box"]
    # The face of the 512x512 photo lies around x 180-270, y 80-180.
    assert 150 <= x <= 200 and 60 <= y <= 110 and 70 <= w <= 130 and 70 <= h <= 130
    assert 0.5 <= face["score"] <= 1.0
    assert list(face["probabilities"]) == CLASSES
    probs = np.array(list(face["probabilities"].values()))
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert face["class_id"] == int(np.argmax(probs)) and face["class"] == CLASSES[face["class_id"]]
    # Same numbers as the Keras model on the same aligned crop.
    crop = sm.detect(astronaut)[0].crop
    expected = np.asarray(exported["model"](to_model_input(crop[None])))[0]
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    # The tiny model's weights are not uniform: the probabilities must differ.
    assert probs.max() - probs.min() > 0.05


def test_path_array_and_pil_inputs_agree(predictors, astronaut, tmp_path):
    sm, _ = predictors
    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    from_array = sm.predict_image(astronaut)
    for source in (path, str(path), Image.open(path)):
        assert sm.predict_image(source) == from_array


def test_savedmodel_and_tflite_agree_on_real_faces(predictors, astronaut, orl_dir):
    sm, tfl = predictors
    assert tfl.class_names == sm.class_names == CLASSES
    crops = [f.crop for image in [astronaut, *_orl_images(orl_dir)] for f in sm.detect(image)]
    assert len(crops) >= 6
    crops = np.stack(crops)
    np.testing.assert_allclose(tfl.classify(crops), sm.classify(crops), atol=1e-5)
    assert [f["class"] for f in tfl.predict_faces(crops)] == [
        f["class"] for f in sm.predict_faces(crops)
    ]


def test_batch_matches_single_images(predictors, astronaut, orl_dir):
    _, tfl = predictors
    blank = np.full((120, 100), 128, np.uint8)
    images = [astronaut, blank, *_orl_images(orl_dir, 3)]
    batched = tfl.predict_images(images)
    assert len(batched) == 5 and batched[1] == []
    for image, result in zip(images, batched):
        single = tfl.predict_image(image)
        assert [f["box"] for f in single] == [f["box"] for f in result]
        for a, b in zip(single, result):
            for name in CLASSES:
                assert a["probabilities"][name] == pytest.approx(b["probabilities"][name], abs=1e-5)


def test_no_face_is_an_empty_list(predictors):
    sm, _ = predictors
    assert sm.predict_image(np.full((200, 300, 3), 90, np.uint8)) == []
    assert sm.predict_images([]) == []
    assert sm.classify(np.zeros((0, 60, 60), np.uint8)).shape == (0, 7)


def test_unreadable_file_raises_image_read_error(predictors, tmp_path):
    sm, _ = predictors
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        sm.predict_image(bad)
    with pytest.raises(ImageReadError, match="not found"):
        sm.predict_image(tmp_path / "missing.png")


def test_bad_face_arrays_are_rejected(predictors):
    sm, _ = predictors
    with pytest.raises(ValueError, match="uint8"):
        sm.classify(np.zeros((1, 60, 60), np.float32))
    with pytest.raises(ValueError, match="shape"):
        sm.classify(np.zeros((60, 60), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        sm.predict_image(np.zeros((60, 60), np.float32))


def test_tflite_class_names_sidecar_and_override(exported, tmp_path):
    bare = tmp_path / "bare.tflite"
    shutil.copy(exported["tflite"], bare)
    assert tflite_class_names_path(bare) is None
    assert tflite_class_names_path(exported["tflite"]).name == "tiny_float32.class_names.txt"
    with pytest.raises(ValueError, match="bare.class_names.txt"):
        Predictor(bare)
    with pytest.raises(ValueError, match="outputs 7 classes but 2"):
        Predictor(bare, class_names=["a", "b"])
    names = [f"c{i}" for i in range(7)]
    with Predictor(bare, class_names=names) as predictor:
        assert predictor.class_names == names
    # export_model's layout: <out>/tflite/model_*.tflite next to <out>/savedmodel/.
    layout = tmp_path / "export"
    (layout / "tflite").mkdir(parents=True)
    shutil.copytree(exported["savedmodel"], layout / "savedmodel")
    shutil.copy(exported["tflite"], layout / "tflite" / "model_float32.tflite")
    with Predictor(layout / "tflite" / "model_float32.tflite") as predictor:
        assert predictor.class_names == CLASSES
    # A folder-wide class_names.txt serves every .tflite in it.
    (tmp_path / "class_names.txt").write_text("\n".join(names) + "\n")
    assert tflite_class_names_path(bare) == tmp_path / "class_names.txt"


def test_bad_model_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="Model not found"):
        Predictor(tmp_path / "nothing")
    (tmp_path / "model.h5").write_bytes(b"x")
    with pytest.raises(ValueError, match="SavedModel directory or a .tflite"):
        Predictor(tmp_path / "model.h5")
    with pytest.raises(FileNotFoundError, match="neither a SavedModel"):
        resolve_saved_model_dir(tmp_path)


def test_serving_base_resolves_to_newest_version(exported, tmp_path):
    base = tmp_path / "tiny"
    for version in (1, 2):
        (base / str(version)).mkdir(parents=True)
        (base / str(version) / "saved_model.pb").write_bytes(b"")
    (base / "10").mkdir()  # an unfinished version without saved_model.pb is ignored
    assert resolve_saved_model_dir(base) == base / "2"
    assert resolve_saved_model_dir(exported["savedmodel"]) == exported["savedmodel"]


def test_shared_detector_survives_close(exported, astronaut):
    with FaceDetector() as detector:
        with Predictor(exported["tflite"], detector=detector) as predictor:
            assert len(predictor.predict_image(astronaut)) == 1
        assert len(detector.detect(astronaut)) == 1


def test_annotation_draws_box_in_class_colour(predictors, astronaut):
    _, tfl = predictors
    faces = tfl.predict_image(astronaut)
    drawn = np.asarray(annotate.draw_faces(astronaut, faces))
    assert drawn.shape == astronaut.shape
    x, y, w, h = faces[0]["box"]
    colour = annotate.PALETTE[faces[0]["class_id"]]
    # Bottom edge of the box (the label sits at the top) has the class colour.
    np.testing.assert_array_equal(drawn[y + h - 1, x + w // 2], colour)
    # Far from the face nothing changed.
    np.testing.assert_array_equal(drawn[500, 500], astronaut[500, 500])
    assert annotate.face_label(faces[0]).startswith(faces[0]["class"] + " 0.")


def test_classify_runs_any_number_of_faces_in_batches(predictors, exported, monkeypatch):
    """More faces than CLASSIFY_BATCH: the model sees at most that many at once, and every
    face gets the probabilities the Keras model gives it alone."""
    from keras_fer.inference import predictor as predictor_lib

    faces = np.random.default_rng(0).integers(0, 256, (21, 60, 60), dtype=np.uint8)
    expected = np.asarray(exported["model"](to_model_input(faces)))
    monkeypatch.setattr(predictor_lib, "CLASSIFY_BATCH", 8)
    for predictor in predictors:
        seen = []
        inner = predictor._classifier
        monkeypatch.setattr(predictor, "_classifier",
                            lambda x, inner=inner: seen.append(len(x)) or inner(x))
        np.testing.assert_allclose(predictor.classify(faces), expected, atol=1e-5)
        assert seen == [8, 8, 5]
