"""TF Serving layout: atomic pusher with checks, models.config, warm-up records, REST format."""

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from keras_fer.data.preprocess import resize_uint8
from keras_fer.export import encode_png
from keras_fer.export.savedmodel import export_savedmodel
from keras_fer.export.serving import (
    ModelCheckError,
    RestError,
    check_savedmodel,
    handle_rest,
    parse_rest_response,
    predict_rest,
    predict_url,
    push,
    rest_request,
    versions,
    write_models_config,
    write_warmup_requests,
)

CLASSES = ("neutral", "happiness", "surprise")


def _tiny_model(seed):
    keras.utils.set_random_seed(seed)
    image = keras.Input((48, 48, 1), name="image")
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv")(image)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    probs = keras.layers.Dense(len(CLASSES), activation="softmax", name="fc")(x)
    return keras.Model(image, probs, name=f"tiny{seed}")


@pytest.fixture(scope="module")
def model_and_dir(tmp_path_factory):
    model = _tiny_model(0)
    return model, export_savedmodel(model, CLASSES, tmp_path_factory.mktemp("sm") / "export")


@pytest.fixture(scope="module")
def faces(ckplus48_dir):
    paths = sorted((ckplus48_dir / "happy").glob("*.png"))[:3]
    paths += sorted((ckplus48_dir / "surprise").glob("*.png"))[:3]
    gray = np.stack([np.asarray(tf.io.decode_png(p.read_bytes(), 1))[..., 0] for p in paths])
    return resize_uint8(gray, 60)


def _staging_left(model_base: Path):
    return [p.name for p in model_base.iterdir() if p.name.startswith(".")]


def test_push_writes_increasing_versions_and_never_overwrites(model_and_dir, tmp_path, faces):
    model, sm_dir = model_and_dir
    check = [lambda d: check_savedmodel(d, model, faces)]
    v1 = push(sm_dir, tmp_path, "fer", checks=check)
    assert v1 == tmp_path / "fer" / "1" and (v1 / "saved_model.pb").exists()
    # An existing version (even a foreign one) is skipped, never replaced.
    (tmp_path / "fer" / "5").mkdir()
    (tmp_path / "fer" / "5" / "marker").write_text("keep")
    v6 = push(lambda d: export_savedmodel(model, CLASSES, d), tmp_path, "fer", checks=check)
    assert v6.name == "6" and (tmp_path / "fer" / "5" / "marker").read_text() == "keep"
    assert versions(tmp_path / "fer") == [1, 5, 6]
    assert _staging_left(tmp_path / "fer") == []
    assert tf.saved_model.load(str(v6)).signatures["serving_default"] is not None


def test_push_refuses_model_failing_checks_and_leaves_nothing(model_and_dir, tmp_path, faces):
    _, sm_dir = model_and_dir
    other = _tiny_model(1)
    with pytest.raises(ModelCheckError, match="Refused to push 'fer'.*differs from the Keras"):
        push(sm_dir, tmp_path, "fer", checks=[lambda d: check_savedmodel(d, other, faces)])
    assert versions(tmp_path / "fer") == [] and _staging_left(tmp_path / "fer") == []
    with pytest.raises(ModelCheckError, match="not a SavedModel"):
        push(tmp_path, tmp_path, "fer")
    # A Keras-format SavedModel without our signatures fails the default check.
    plain = tmp_path / "plain"
    tf.saved_model.save(tf.Module(), str(plain))
    with pytest.raises(ModelCheckError, match="serving_default"):
        push(plain, tmp_path, "fer")
    assert versions(tmp_path / "fer") == [] and _staging_left(tmp_path / "fer") == []


def test_models_config_parses_with_serving_proto(tmp_path):
    path = write_models_config(tmp_path, ["idennet", "tfe"])
    config = text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())
    entries = config.model_config_list.config
    assert [(e.name, e.base_path, e.model_platform) for e in entries] == [
        ("idennet", "/models/idennet", "tensorflow"),
        ("tfe", "/models/tfe", "tensorflow"),
    ]
    local = write_models_config(tmp_path, ["idennet"], serving_root=None)
    config = text_format.Parse(local.read_text(), model_server_config_pb2.ModelServerConfig())
    assert config.model_config_list.config[0].base_path == str(tmp_path.resolve() / "idennet")


def test_warmup_records_parse_and_replay(model_and_dir, tmp_path, faces):
    model, sm_dir = model_and_dir
    images = encode_png(faces[:2])
    version = push(sm_dir, tmp_path, "fer", warmup_images=images)
    path = version / "assets.extra" / "tf_serving_warmup_requests"
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    assert len(records) == 2
    loaded = tf.saved_model.load(str(version))
    for record, image in zip(records, images):
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        assert request.model_spec.name == "fer"
        assert request.model_spec.signature_name == "serving_default"
        tensor = tf.make_ndarray(request.inputs["images"])
        assert tensor.shape == (1,) and tensor[0] == image
        signature = loaded.signatures[request.model_spec.signature_name]
        out = signature(images=tf.constant(tensor))
        assert out["probabilities"].shape == (1, len(CLASSES))
    with pytest.raises(ValueError):
        write_warmup_requests(tmp_path, [])


def test_rest_handler_predictions_and_errors(model_and_dir, faces):
    model, sm_dir = model_and_dir
    signature = tf.saved_model.load(str(sm_dir)).signatures["serving_default"]
    images = encode_png(faces[:3])
    body = rest_request(images)
    assert set(body) == {"instances"} and set(body["instances"][0]) == {"b64"}
    status, response = handle_rest(signature, json.dumps(body))
    assert status == 200
    predictions = parse_rest_response(json.dumps(response))
    ref = model(faces[:3, 6:54, 6:54, None].astype("float32") / 255.0).numpy()
    np.testing.assert_allclose([p["probabilities"] for p in predictions], ref, atol=1e-5)
    assert [p["class_name"] for p in predictions] == [CLASSES[i] for i in ref.argmax(1)]
    assert [p["class_id"] for p in predictions] == ref.argmax(1).tolist()

    named = {"instances": [{"images": inst} for inst in body["instances"]]}
    assert handle_rest(signature, named) == (status, response)

    status, response = handle_rest(signature, rest_request([b"not an image"]))
    assert status == 400 and "image" in response["error"]
    with pytest.raises(RestError):
        parse_rest_response(response)
    status, response = handle_rest(signature, {"inputs": []})
    assert status == 400 and "Malformed" in response["error"]
    status, response = handle_rest(signature, {"instances": [{"b64": "%%%"}]})
    assert status == 400
    assert handle_rest(signature, {"instances": ["not-an-object"]})[0] == 400
    assert handle_rest(signature, rest_request(images[:1]))[0] == 200


def test_rest_client_against_loopback_server(model_and_dir, faces):
    _, sm_dir = model_and_dir
    signature = tf.saved_model.load(str(sm_dir)).signatures["serving_default"]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            assert self.path == "/v1/models/fer:predict"
            length = int(self.headers["Content-Length"])
            status, body = handle_rest(signature, self.rfile.read(length))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = predict_url(f"http://127.0.0.1:{server.server_port}", "fer")
        results = predict_rest(url, encode_png(faces[:2]))
        assert len(results) == 2 and results[0]["class_name"] in CLASSES
        with pytest.raises(RestError, match="image"):
            predict_rest(url, [b"garbage"])
        assert len(predict_rest(url, encode_png(faces[2:3]))) == 1
    finally:
        server.shutdown()
        server.server_close()
    url = predict_url("http://h:8501/", "fer", 3)
    assert url == "http://h:8501/v1/models/fer/versions/3:predict"


@pytest.mark.slow
def test_saved_model_cli_lists_the_signatures(model_and_dir):
    _, sm_dir = model_and_dir
    cli = Path(sys.executable).with_name("saved_model_cli")
    result = subprocess.run(
        [str(cli), "show", "--dir", str(sm_dir), "--all"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    out = result.stdout
    for text in (
        "signature_def['serving_default']",
        "signature_def['serving_faces']",
        "signature_def['class_names']",
        "inputs['images'] tensor_info:",
        "dtype: DT_STRING",
        "outputs['probabilities'] tensor_info:",
        "shape: (-1, 3)",
        "outputs['class_name'] tensor_info:",
        "inputs['faces'] tensor_info:",
        "dtype: DT_UINT8",
    ):
        assert text in out, text
