"""TFLite variants run with LiteRT, the parity/size report, and the export_model entry point."""

import json

import keras
import numpy as np
import pytest
from PIL import Image
from tensorflow_serving.config import model_server_config_pb2
from google.protobuf import text_format

from keras_fer.data.preprocess import resize_uint8, to_model_input
from keras_fer.export import FORMATS, export_model, parse_formats
from keras_fer.export.report import parity_report, to_markdown, write_report
from keras_fer.export.tflite import VARIANTS, LiteRTClassifier, as_model_input, convert

CLASSES = ("anger", "happy", "surprise")


def _model(seed=0):
    """7,155 parameters: conv2 and fc1 exceed the 1,024 weights below which TFLite skips
    weight quantisation."""
    keras.utils.set_random_seed(seed)
    image = keras.Input((48, 48, 1), name="image")
    x = keras.layers.Conv2D(16, 3, strides=2, use_bias=False, name="conv1")(image)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(32, 3, strides=2, name="conv2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    x = keras.layers.AveragePooling2D(2, name="pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(64, activation="relu", name="fc1")(x)
    probs = keras.layers.Dense(len(CLASSES), activation="softmax", name="fc")(x)
    return keras.Model(image, probs, name="small")


@pytest.fixture(scope="module")
def data(ckplus48_dir):
    faces, labels = [], []
    for idx, name in enumerate(CLASSES):
        for path in sorted((ckplus48_dir / name).glob("*.png"))[:12]:
            faces.append(np.asarray(Image.open(path).convert("L")))
            labels.append(idx)
    return resize_uint8(np.stack(faces), 60), np.array(labels)


@pytest.fixture(scope="module")
def variants(tmp_path_factory, data):
    model = _model()
    faces, _ = data
    out = tmp_path_factory.mktemp("tflite")
    paths = {v: convert(model, v, out / f"model_{v}.tflite", faces) for v in VARIANTS}
    return model, paths


@pytest.mark.slow
def test_every_variant_runs_and_matches_keras(variants, data):
    model, paths = variants
    faces, _ = data
    x = to_model_input(faces)
    ref = model(x).numpy()
    tolerance = {"float32": 1e-5, "float16": 1e-4, "dynamic": 3e-3, "int8": 2e-2, "int8_io": 2e-2}
    for variant, path in paths.items():
        runner = LiteRTClassifier(path)
        probs = runner.predict(x)
        assert probs.shape == ref.shape and probs.dtype == np.float32, variant
        assert np.abs(probs - ref).max() < tolerance[variant], variant
        np.testing.assert_allclose(runner.predict(x[:1]), probs[:1], atol=1e-6)
        np.testing.assert_allclose(runner.predict_faces(faces[:2]), probs[:2], atol=1e-6)
        assert runner.num_classes == len(CLASSES)
    assert LiteRTClassifier(paths["int8_io"]).input_dtype == np.int8
    assert LiteRTClassifier(paths["int8"]).input_dtype == np.float32


@pytest.mark.slow
def test_large_inputs_run_in_slices_with_the_same_output(variants, data, monkeypatch):
    from keras_fer.export import tflite

    _, paths = variants
    x = to_model_input(data[0][:7])
    runner = LiteRTClassifier(paths["int8_io"])
    whole = runner.predict(x)
    monkeypatch.setattr(tflite, "MAX_BATCH", 3)
    sliced = LiteRTClassifier(paths["int8_io"])
    np.testing.assert_array_equal(sliced.predict(x), whole)
    assert sliced._batch <= 3  # the interpreter never held more than one slice


@pytest.mark.slow
def test_quantised_variants_are_smaller(variants):
    _, paths = variants
    size = {v: p.stat().st_size for v, p in paths.items()}
    assert size["float16"] < 0.7 * size["float32"]
    assert size["dynamic"] < 0.5 * size["float32"]
    assert size["int8"] < 0.5 * size["float32"]


def test_int8_needs_representative_faces_and_unknown_variant_fails(tmp_path):
    with pytest.raises(ValueError, match="representative_faces"):
        convert(_model(), "int8", tmp_path / "m.tflite")
    with pytest.raises(ValueError, match="Unknown TFLite variant"):
        convert(_model(), "int4", tmp_path / "m.tflite")
    with pytest.raises(ValueError, match="Float faces"):
        as_model_input(np.zeros((2, 60, 60), np.float32))


@pytest.mark.slow
def test_parity_report_json_and_markdown(variants, data, tmp_path):
    model, paths = variants
    faces, labels = data
    report = parity_report(model, paths, faces, labels, CLASSES, latency_runs=5)
    ref_acc = 100.0 * np.mean(model(to_model_input(faces)).numpy().argmax(1) == labels)
    assert report["keras"]["accuracy"] == pytest.approx(ref_acc)
    assert report["num_faces"] == len(faces) == 36
    row = report["variants"]["float32"]
    assert row["max_abs_diff"] < 1e-5 and row["accuracy_delta"] == 0.0
    assert row["size_bytes"] == paths["float32"].stat().st_size
    assert all(r["latency_ms"] > 0 for r in report["variants"].values())
    json_path, md_path = write_report(report, tmp_path)
    assert json.loads(json_path.read_text()) == report
    table = md_path.read_text()
    assert table == to_markdown(report)
    assert all(f"| {v} |" in table for v in VARIANTS) and "| keras |" in table


def test_parse_formats():
    assert parse_formats("all") == list(FORMATS)
    assert parse_formats("tflite_int8, savedmodel") == ["savedmodel", "tflite_int8"]
    assert parse_formats("") == []
    with pytest.raises(ValueError, match="tflite_int3"):
        parse_formats("savedmodel,tflite_int3")


@pytest.mark.slow
def test_export_model_writes_variants_report_and_pushes(data, tmp_path):
    faces, labels = data
    model = _model(1)
    result = export_model(
        model,
        CLASSES,
        "savedmodel,tflite_float32,tflite_int8",
        tmp_path / "export",
        representative_faces=faces,
        eval_faces=faces[::3],
        eval_labels=labels[::3],
        serving_base_dir=tmp_path / "saved_models",
        model_name="small",
        latency_runs=3,
    )
    expected = {"savedmodel", "tflite_float32", "tflite_int8", "tflite_int8_io"}
    assert set(result.artifacts) == expected
    assert result.pushed == tmp_path / "saved_models" / "small" / "1"
    assert (result.pushed / "assets.extra" / "tf_serving_warmup_requests").exists()
    assert result.report["variants"]["savedmodel"]["max_abs_diff"] < 1e-5
    assert (tmp_path / "export" / "export_report.md").exists()
    names = (tmp_path / "export" / "tflite" / "class_names.txt").read_text().splitlines()
    assert names == list(CLASSES)
    config = text_format.Parse(
        (tmp_path / "saved_models" / "models.config").read_text(),
        model_server_config_pb2.ModelServerConfig(),
    )
    assert [c.name for c in config.model_config_list.config] == ["small"]
    with pytest.raises(ValueError, match="tflite_qat needs train_faces"):
        export_model(model, CLASSES, "tflite_qat", tmp_path / "qat")
