"""``keras-fer serve``: TF Serving's REST API over a shipped SavedModel, end to end on loopback.

Real faces (the astronaut's aligned face, ORL faces) go over real HTTP to the FER+ IDEnNet
SavedModel in ``saved_models/``; the client is :func:`keras_fer.export.serving.predict_rest`.
"""

import io
import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from keras_fer.inference.rest_server import ServedModel, serve_in_thread
from keras_fer.export.serving import RestError, predict_rest, predict_url

REPO = Path(__file__).resolve().parents[1]
MODEL_BASE = REPO / "saved_models" / "idennet_ferplus"


def _png(array):
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def faces(orl_dir):
    """Aligned 60x60 crops: the astronaut (happy) and three ORL faces."""
    from keras_fer.data.face_search import GroupFaceDetector
    from keras_fer.data.faces import FaceAligner

    with GroupFaceDetector() as detector:
        aligner = FaceAligner(detector=detector)
        crops = [aligner.align_faces(skdata.astronaut())[0].crop]
        for k in (1, 2, 3):
            gray = np.asarray(Image.open(orl_dir / f"s{k}" / "1.pgm"))
            crops.append(aligner.align_faces(gray)[0].crop)
    return crops


@pytest.fixture(scope="module")
def server():
    model = ServedModel(MODEL_BASE)
    srv, url = serve_in_thread(model)
    yield model, url
    srv.shutdown()
    srv.server_close()


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _post(url, body: bytes):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_status_metadata_and_warm_up(server):
    model, url = server
    assert model.name == "idennet_ferplus" and model.version == 1 and model.warmed_up >= 1
    status, body = _get(f"{url}/v1/models/idennet_ferplus")
    assert status == 200
    assert body["model_version_status"][0]["state"] == "AVAILABLE"
    assert _get(f"{url}/v1/models/idennet_ferplus/versions/1")[0] == 200
    status, body = _get(f"{url}/v1/models/idennet_ferplus/metadata")
    sigs = body["metadata"]["signature_def"]["signature_def"]
    assert status == 200 and body["model_spec"]["version"] == "1"
    assert sigs["serving_default"]["inputs"]["images"]["dtype"] == "DT_STRING"
    assert set(sigs["serving_default"]["outputs"]) == {"probabilities", "class_id", "class_name"}
    status, body = _get(f"{url}/v1/models/other")
    assert status == 404 and "Servable not found" in body["error"]
    assert _get(f"{url}/v1/models/idennet_ferplus/versions/7")[0] == 404


def test_predict_real_faces(server, faces):
    _, url = server
    rows = predict_rest(predict_url(url, "idennet_ferplus"), [_png(f) for f in faces])
    assert len(rows) == 4 and rows[0]["class_name"] == "happiness"
    for row in rows:
        assert abs(sum(row["probabilities"]) - 1) < 1e-4 and len(row["probabilities"]) == 8


def test_one_bad_image_is_named_and_the_others_classified(server, faces):
    _, url = server
    endpoint = predict_url(url, "idennet_ferplus")
    good = [_png(f) for f in faces[:2]]
    batch = [good[0], b"not an image at all", good[1]]
    from keras_fer.export.serving import rest_request

    status, body = _post(endpoint, json.dumps(rest_request(batch)).encode())
    assert status == 400 and body["error"].startswith("instances[1]: ")
    with pytest.raises(RestError, match=r"instances\[1\]"):
        predict_rest(endpoint, batch)
    rows = predict_rest(endpoint, batch, split_on_error=True)
    assert [("error" in r) for r in rows] == [False, True, False]
    assert rows[0]["class_name"] == "happiness"
    assert rows == [*predict_rest(endpoint, good[:1]), rows[1], *predict_rest(endpoint, good[1:])]


def test_malformed_and_empty_requests(server):
    _, url = server
    endpoint = predict_url(url, "idennet_ferplus")
    status, body = _post(endpoint, b'{"instances": []}')
    assert status == 400 and "non-empty" in body["error"]
    status, body = _post(endpoint, b"{not json")
    assert status == 400 and "Malformed request" in body["error"]
    status, body = _post(f"{url}/v1/models/idennet_ferplus:classify", b"{}")
    assert status == 404


def test_exif_rotation_and_sixteen_bit_match_the_upright_face(server, faces):
    _, url = server
    endpoint = predict_url(url, "idennet_ferplus")
    face = faces[0]
    upright = io.BytesIO()
    Image.fromarray(face).save(upright, format="JPEG", quality=95)
    # Stored rotated 90 degrees clockwise with EXIF orientation 6 ("rotate 90 CW to view")
    # undone by viewers: the upright view is the face again.
    rotated = Image.fromarray(face).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways = io.BytesIO()
    rotated.save(sideways, format="JPEG", quality=95, exif=exif.tobytes())
    png16 = io.BytesIO()
    Image.fromarray(face.astype(np.uint16) * 257).save(png16, format="PNG")
    ref, via_exif, wide = predict_rest(
        endpoint, [upright.getvalue(), sideways.getvalue(), png16.getvalue()]
    )
    assert via_exif["class_name"] == ref["class_name"] == "happiness"
    np.testing.assert_allclose(via_exif["probabilities"], ref["probabilities"], atol=0.05)
    [png8] = predict_rest(endpoint, [_png(face)])
    np.testing.assert_allclose(wide["probabilities"], png8["probabilities"], atol=1e-5)
    # The raw graph (no client-side EXIF) sees the sideways face: the server applies it too.
    from keras_fer.export.serving import rest_request

    status, body = _post(endpoint, json.dumps(rest_request([sideways.getvalue()])).encode())
    assert status == 200
    np.testing.assert_allclose(
        body["predictions"][0]["probabilities"], via_exif["probabilities"], atol=1e-5
    )


@pytest.mark.slow
def test_keras_fer_serve_command(faces):
    script = Path(sys.executable).with_name("keras-fer")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "keras_fer.cli"]
    proc = subprocess.Popen(
        [*command, "serve", str(MODEL_BASE), "--port", "0", "--name", "fer"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/v1/models/fer:predict", line)
        assert match, line
        [row] = predict_rest(predict_url(match[1], "fer"), [_png(faces[0])])
        assert row["class_name"] == "happiness"
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0 and "Traceback" not in rest
