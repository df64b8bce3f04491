"""SavedModel export: signatures, in-graph preprocessing parity on real faces, bad input."""

import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_fer.data.preprocess import resize_uint8, tf_to_model_input, to_model_input
from keras_fer.export import encode_png
from keras_fer.export.savedmodel import (
    build_export_archive,
    check_inference_model,
    decode_gray,
    export_savedmodel,
    load_class_names,
)

CLASSES = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")


def _tiny_model(num_classes=len(CLASSES), seed=0):
    keras.utils.set_random_seed(seed)
    image = keras.Input((48, 48, 1), name="image")
    x = keras.layers.Conv2D(6, 3, strides=2, name="conv")(image)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    probs = keras.layers.Dense(num_classes, activation="softmax", name="fc")(x)
    return keras.Model(image, probs, name="tiny")


def _ck_faces(ckplus48_dir, per_class=2):
    faces, paths = [], []
    for name in CLASSES:
        for path in sorted((ckplus48_dir / name).glob("*.png"))[:per_class]:
            paths.append(path)
            faces.append(np.asarray(Image.open(path).convert("L")))
    return np.stack(faces), paths


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _tiny_model()
    path = export_savedmodel(model, CLASSES, tmp_path_factory.mktemp("sm") / "savedmodel")
    return model, path, tf.saved_model.load(str(path))


def test_signatures_inputs_outputs_and_class_names(exported):
    _, path, loaded = exported
    assert set(loaded.signatures) == {"serving_default", "serving_faces", "class_names"}
    default = loaded.signatures["serving_default"]
    (spec,) = default.structured_input_signature[1].values()
    assert spec.name == "images" and spec.dtype == tf.string and spec.shape.as_list() == [None]
    outputs = default.structured_outputs
    assert outputs["probabilities"].dtype == tf.float32
    assert outputs["probabilities"].shape.as_list() == [None, len(CLASSES)]
    assert outputs["class_id"].dtype == tf.int64 and outputs["class_name"].dtype == tf.string
    faces_spec = loaded.signatures["serving_faces"].structured_input_signature[1]["faces"]
    assert faces_spec.dtype == tf.uint8 and faces_spec.shape.as_list() == [None, None, None, 1]
    names = loaded.signatures["class_names"]()["class_names"].numpy()
    assert [n.decode() for n in names] == list(CLASSES)
    assert load_class_names(path) == list(CLASSES)


def test_serving_default_matches_keras_on_real_faces(exported, ckplus48_dir):
    model, _, loaded = exported
    faces, paths = _ck_faces(ckplus48_dir)
    out = loaded.signatures["serving_default"](images=tf.constant([p.read_bytes() for p in paths]))
    ref = model(tf_to_model_input(faces[..., None])).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), ref, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(out["class_id"].numpy(), ref.argmax(1))
    assert [n.decode() for n in out["class_name"].numpy()] == [CLASSES[i] for i in ref.argmax(1)]
    # Aligned 60x60 crops: the NumPy test path of training is the identity resize too.
    aligned = resize_uint8(faces, 60)
    out = loaded.signatures["serving_default"](images=tf.constant(encode_png(aligned)))
    np.testing.assert_allclose(
        out["probabilities"].numpy(), model(to_model_input(aligned)).numpy(), atol=1e-5, rtol=0
    )


def test_serving_faces_any_size_matches_training_path(exported, ckplus48_dir):
    model, _, loaded = exported
    faces, _ = _ck_faces(ckplus48_dir, per_class=1)
    aligned = resize_uint8(faces, 60)
    out = loaded.signatures["serving_faces"](faces=tf.constant(aligned[..., None]))
    ref = model(to_model_input(aligned)).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), ref, atol=1e-5, rtol=0)
    out48 = loaded.signatures["serving_faces"](faces=tf.constant(faces[..., None]))
    ref48 = model(tf_to_model_input(faces[..., None])).numpy()
    np.testing.assert_allclose(out48["probabilities"].numpy(), ref48, atol=1e-5, rtol=0)


def test_colour_alpha_and_jpeg_inputs_are_converted_to_gray():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    gray = decode_gray(tf.constant(buf.getvalue())).numpy()[..., 0]
    pil_gray = np.asarray(Image.fromarray(rgb).convert("L")).astype(int)
    assert gray.shape == (37, 23)
    assert np.abs(gray.astype(int) - pil_gray).max() <= 1
    rgba = np.dstack([np.repeat(pil_gray[..., None], 3, -1), np.full((37, 23), 7)]).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    decoded = decode_gray(tf.constant(buf.getvalue())).numpy()[..., 0]
    np.testing.assert_array_equal(decoded, pil_gray)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    assert decode_gray(tf.constant(buf.getvalue())).numpy().shape == (37, 23, 1)


def test_garbage_bytes_raise_invalid_argument_and_model_keeps_working(exported, ckplus48_dir):
    model, _, loaded = exported
    serve = loaded.signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="image"):
        serve(images=tf.constant([b"definitely not an image"]))
    _, paths = _ck_faces(ckplus48_dir, per_class=1)
    with pytest.raises(tf.errors.InvalidArgumentError):
        serve(images=tf.constant([paths[0].read_bytes(), b"\x89PNG\r\n\x1a\n broken"]))
    out = serve(images=tf.constant([paths[0].read_bytes()]))
    np.testing.assert_allclose(out["probabilities"].numpy().sum(), 1.0, atol=1e-5)


def test_rejects_models_outside_the_inference_contract():
    image = keras.Input((48, 48, 1), name="image")
    x = keras.layers.Flatten()(image)
    two = keras.Model(image, [keras.layers.Dense(3)(x), keras.layers.Dense(2)(x)])
    with pytest.raises(ValueError, match="2 outputs"):
        check_inference_model(two, ["a", "b", "c"])
    with pytest.raises(ValueError, match="class_names"):
        build_export_archive(_tiny_model(num_classes=3), ["a", "b"])
    wrong = keras.Input((60, 60, 1), name="image")
    model = keras.Model(wrong, keras.layers.Dense(2)(keras.layers.Flatten()(wrong)))
    with pytest.raises(ValueError, match="48, 48, 1"):
        check_inference_model(model, ["a", "b"])


def test_refuses_to_overwrite_a_non_empty_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        export_savedmodel(_tiny_model(), CLASSES, tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "x"
