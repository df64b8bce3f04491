"""TF Serving: version layout, atomic pusher with checks, models.config, warm-up, REST format.

Layout (what ``tensorflow_model_server --model_base_path`` watches)::

    <base_dir>/<model_name>/<version>/saved_model.pb   # integer versions, highest is served
    <base_dir>/models.config                          # ModelServerConfig text proto

:func:`push` stages the model in a hidden temporary directory inside
``<base_dir>/<model_name>`` (same filesystem, and TF Serving ignores non-integer names),
runs the checks there, then renames it (``os.rename``) to the next free integer version, so
a server never sees a half-written or unchecked version and an existing version is never
replaced.

REST follows TF Serving's row format: ``{"instances": [{"b64": "..."}, ...]}`` for the single
string input of ``serving_default`` and ``{"predictions": [{"probabilities": [...],
"class_id": 3, "class_name": "happiness"}, ...]}`` or ``{"error": "..."}`` back.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from keras_fer.export.savedmodel import (
    CLASS_NAMES_ENDPOINT,
    FACES_INPUT,
    IMAGES_INPUT,
    OUTPUT_KEYS,
    SERVING_DEFAULT,
    SERVING_FACES,
)

WARMUP_FILE = "tf_serving_warmup_requests"
MODELS_CONFIG = "models.config"

Check = Callable[[Path], None]


class ModelCheckError(ValueError):
    """A model failed a pre-push check; nothing was pushed."""


class RestError(RuntimeError):
    """The server answered a REST request with ``{"error": ...}``."""


def versions(model_base: str | Path) -> list[int]:
    """Sorted integer versions present under ``<base_dir>/<model_name>``."""
    model_base = Path(model_base)
    if not model_base.is_dir():
        return []
    return sorted(int(p.name) for p in model_base.iterdir() if p.is_dir() and p.name.isdigit())


def check_savedmodel(
    path: str | Path,
    keras_model=None,
    faces: np.ndarray | None = None,
    atol: float = 1e-5,
) -> None:
    """Raises :class:`ModelCheckError` unless the SavedModel at ``path`` is servable.

    Checks: both classification signatures exist with the expected input names and outputs;
    ``probabilities`` is ``(B, K)`` with ``K`` class names and rows summing to 1; and, when
    ``keras_model`` and ``faces`` are given, the ``serving_faces`` output matches
    ``keras_model`` on the same preprocessed faces within ``atol``.

    Args:
        path: SavedModel directory.
        keras_model: optional in-memory inference model for the parity check.
        faces: optional uint8 faces ``(N, H, W)`` or ``(N, H, W, 1)``; a mid-gray face is used
            for the output checks when omitted.
        atol: parity tolerance on probabilities.
    """
    import tensorflow as tf

    from keras_fer.data.preprocess import tf_to_model_input

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as err:  # noqa: BLE001 - any load failure means "not servable"
        raise ModelCheckError(f"Cannot load SavedModel at {path}: {err}") from err
    expected = {SERVING_DEFAULT: IMAGES_INPUT, SERVING_FACES: FACES_INPUT}
    for name, input_name in expected.items():
        if name not in loaded.signatures:
            raise ModelCheckError(f"Signature '{name}' missing; found {list(loaded.signatures)}")
        sig = loaded.signatures[name]
        inputs = list(sig.structured_input_signature[1])
        if inputs != [input_name]:
            raise ModelCheckError(f"'{name}' must take '{input_name}'. Received inputs={inputs}")
        missing = set(OUTPUT_KEYS) - set(sig.structured_outputs)
        if missing:
            raise ModelCheckError(f"'{name}' lacks outputs {sorted(missing)}")
    class_names = loaded.signatures[CLASS_NAMES_ENDPOINT]()["class_names"].numpy()
    if faces is None:
        faces = np.full((1, 60, 60, 1), 128, np.uint8)
    faces = np.asarray(faces, np.uint8)
    if faces.ndim == 3:
        faces = faces[..., None]
    out = loaded.signatures[SERVING_FACES](faces=tf.constant(faces))
    probs = out["probabilities"].numpy()
    if probs.shape != (len(faces), len(class_names)):
        raise ModelCheckError(
            f"probabilities shape {probs.shape}, expected {(len(faces), len(class_names))}"
        )
    if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
        raise ModelCheckError(f"probabilities rows do not sum to 1: {probs.sum(axis=1)}")
    if keras_model is not None:
        ref = np.asarray(keras_model(tf_to_model_input(faces), training=False))
        diff = float(np.abs(ref - probs).max())
        if diff > atol:
            raise ModelCheckError(f"SavedModel differs from the Keras model by {diff} > {atol}")


def push(
    source: str | Path | Callable[[Path], object],
    base_dir: str | Path,
    model_name: str,
    checks: Sequence[Check] | None = None,
    warmup_images: Sequence[bytes] | None = None,
) -> Path:
    """Pushes a SavedModel as the next integer version of ``model_name``, atomically.

    Args:
        source: an exported SavedModel directory to copy, or a callable that writes the
            SavedModel into the empty directory it is given (e.g.
            ``lambda d: export_savedmodel(model, names, d)``).
        base_dir: serving root holding one folder per model name.
        model_name: TF Serving model name.
        checks: callables taking the staged directory and raising on failure; defaults to
            ``[check_savedmodel]``. Pass ``[]`` to skip.
        warmup_images: optional encoded images written as warm-up requests before the rename.

    Returns:
        The new version directory.

    Raises:
        ModelCheckError: a check failed; the staging directory is removed, nothing is pushed.
    """
    if not model_name or "/" in model_name or model_name.startswith("."):
        raise ValueError(f"Invalid model_name={model_name!r}")
    model_base = Path(base_dir) / model_name
    model_base.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_base))
    try:
        if callable(source):
            stage.rmdir()  # exporters want to create the directory themselves
            source(stage)
        else:
            if not (Path(source) / "saved_model.pb").exists():
                raise ModelCheckError(f"{source} is not a SavedModel directory (no saved_model.pb)")
            shutil.copytree(source, stage, dirs_exist_ok=True)
        if warmup_images:
            write_warmup_requests(stage, warmup_images, model_name=model_name)
        for check in [check_savedmodel] if checks is None else checks:
            try:
                check(stage)
            except ModelCheckError:
                raise
            except Exception as err:  # noqa: BLE001 - a failing check of any kind refuses
                raise ModelCheckError(f"{getattr(check, '__name__', check)}: {err}") from err
        return _rename_to_next_version(stage, model_base)
    except BaseException as err:
        shutil.rmtree(stage, ignore_errors=True)
        if isinstance(err, ModelCheckError):
            raise ModelCheckError(f"Refused to push '{model_name}': {err}") from err
        raise


def _rename_to_next_version(stage: Path, model_base: Path) -> Path:
    version = (versions(model_base) or [0])[-1] + 1
    while True:
        target = model_base / str(version)
        if not target.exists():
            try:
                # Renaming onto a non-empty directory fails (ENOTEMPTY), so a concurrent
                # pusher that took this number first is never overwritten.
                os.rename(stage, target)
                return target
            except OSError:
                if not target.exists():
                    raise
        version += 1


def write_models_config(
    base_dir: str | Path, names: Sequence[str], serving_root: str | None = "/models"
) -> Path:
    """Writes ``<base_dir>/models.config`` (a ``ModelServerConfig`` text proto).

    Args:
        base_dir: serving root holding one folder per model.
        names: model names to serve.
        serving_root: where ``base_dir`` is mounted inside the server (``/models`` in the
            ``tensorflow/serving`` image); ``None`` writes absolute local paths.

    Returns:
        Path of the written file.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    base_dir = Path(base_dir)
    config = model_server_config_pb2.ModelServerConfig()
    for name in names:
        entry = config.model_config_list.config.add()
        entry.name = name
        root = str(base_dir.resolve()) if serving_root is None else serving_root.rstrip("/")
        entry.base_path = f"{root}/{name}"
        entry.model_platform = "tensorflow"
    base_dir.mkdir(parents=True, exist_ok=True)
    path = base_dir / MODELS_CONFIG
    path.write_text(text_format.MessageToString(config))
    return path


def write_warmup_requests(
    version_dir: str | Path,
    example_images: Sequence[bytes],
    model_name: str = "model",
    signature_name: str = SERVING_DEFAULT,
) -> Path:
    """Writes ``assets.extra/tf_serving_warmup_requests``: one PredictionLog per image.

    TF Serving replays these requests when it loads the version, so the first real request
    does not pay for graph warm-up.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    if not example_images:
        raise ValueError("write_warmup_requests needs at least one encoded image.")
    extra = Path(version_dir) / "assets.extra"
    extra.mkdir(parents=True, exist_ok=True)
    path = extra / WARMUP_FILE
    with tf.io.TFRecordWriter(str(path)) as writer:
        for image in example_images:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name)
            )
            request.inputs[IMAGES_INPUT].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path


def rest_request(images: Sequence[bytes], signature_name: str | None = None) -> dict:
    """TF Serving REST body for ``serving_default``: ``{"instances": [{"b64": ...}, ...]}``.

    The signature has a single input, so each instance is the value itself; binary values
    travel as ``{"b64": <base64>}`` objects.
    """
    body = {"instances": [{"b64": base64.b64encode(bytes(im)).decode("ascii")} for im in images]}
    if signature_name:
        body["signature_name"] = signature_name
    return body


def parse_rest_response(response: dict | str | bytes) -> list[dict]:
    """``{"predictions": [...]}`` -> list of per-image dicts; ``{"error": ...}`` raises."""
    if isinstance(response, (str, bytes)):
        response = json.loads(response)
    if "error" in response:
        raise RestError(response["error"])
    if "predictions" not in response:
        raise ValueError(f"Not a TF Serving predict response. Received keys {sorted(response)}")
    return list(response["predictions"])


def upright_image_bytes(data: bytes) -> bytes:
    """An encoded image turned upright per its EXIF orientation (re-encoded as PNG).

    ``serving_default`` decodes pixels as stored, whereas cameras store many photos sideways
    with an EXIF orientation tag, which the CLI's reader honours; applying it before sending
    (client side, or in ``keras-fer serve``) gives serving the same face. Bytes without an
    orientation other than 1, or that Pillow cannot read, are returned unchanged (the server
    then reports a bad image itself).
    """
    import io

    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(bytes(data))) as image:
            if image.getexif().get(0x0112, 1) in (1, None):
                return bytes(data)
            image.load()
            upright = ImageOps.exif_transpose(image)
            out = io.BytesIO()
            mode = upright.mode if upright.mode in ("L", "RGB", "RGBA", "I;16") else "RGB"
            upright.convert(mode).save(out, format="PNG")
            return out.getvalue()
    except Exception:  # noqa: BLE001 - not decodable here: let the model's decoder say why
        return bytes(data)


def handle_rest(
    signature, request_json: dict | str | bytes, upright: bool = False
) -> tuple[int, dict]:
    """In-process stand-in for TF Serving's ``:predict`` handler on ``serving_default``.

    As in TF Serving, one image that cannot be decoded fails the whole request (HTTP 400);
    the error names it (``instances[i]: ...``) so a client can resend the others (see
    :func:`predict_rest`). An empty ``instances`` list is a 400 as well.

    Args:
        signature: the loaded ``serving_default`` concrete function.
        request_json: the request body (parsed or raw).
        upright: apply EXIF orientation first (:func:`upright_image_bytes`).

    Returns:
        ``(http_status, body)``: ``(200, {"predictions": [...]})`` or ``(400, {"error": msg})``.
    """
    import tensorflow as tf

    try:
        request = request_json
        if isinstance(request, (str, bytes)):
            request = json.loads(request)
        instances = request["instances"]
        if not isinstance(instances, list) or not instances:
            raise ValueError("'instances' must be a non-empty list")
        # Row format allows the bare value or {input_name: value} per instance.
        values = [inst.get(IMAGES_INPUT, inst) for inst in instances]
        images = [base64.b64decode(value["b64"], validate=True) for value in values]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        return 400, {"error": f"Malformed request: {err!r}"}
    if upright:
        images = [upright_image_bytes(image) for image in images]
    try:
        out = signature(**{IMAGES_INPUT: tf.constant(images)})
    except tf.errors.InvalidArgumentError as err:
        return 400, {"error": _name_bad_instances(signature, images, err.message)}
    return 200, {"predictions": _rows(out)}


def _name_bad_instances(signature, images: list, message: str) -> str:
    """``"instances[2]: <decoder message>"``: which images of a failed batch fail alone."""
    import tensorflow as tf

    if len(images) == 1:
        return f"instances[0]: {message}"
    bad = []
    for i, image in enumerate(images):
        try:
            signature(**{IMAGES_INPUT: tf.constant([image])})
        except tf.errors.InvalidArgumentError as err:
            bad.append(f"instances[{i}]: {err.message}")
    return "; ".join(bad) or message


def _rows(outputs: dict) -> list[dict]:
    arrays = {k: v.numpy() for k, v in outputs.items()}
    n = len(next(iter(arrays.values())))
    rows = []
    for i in range(n):
        row = {}
        for key, value in arrays.items():
            item = value[i]
            row[key] = item.decode() if isinstance(item, bytes) else item.tolist()
        rows.append(row)
    return rows


def predict_url(host: str, model_name: str, version: int | None = None) -> str:
    """``http://host/v1/models/<name>[/versions/<v>]:predict``."""
    suffix = f"/versions/{version}" if version is not None else ""
    return f"{host.rstrip('/')}/v1/models/{model_name}{suffix}:predict"


def predict_rest(
    url: str,
    images: Sequence[bytes],
    signature_name: str | None = None,
    timeout: float = 30.0,
    split_on_error: bool = False,
    upright: bool = True,
) -> list[dict]:
    """Posts encoded images to a TF Serving ``:predict`` URL and returns per-image results.

    TF Serving fails a whole request when one image cannot be decoded. With
    ``split_on_error`` a failed batch is resent one image at a time, so every good image is
    classified and each bad one gets ``{"error": ...}`` in its place.

    Args:
        url: the ``:predict`` URL (:func:`predict_url`).
        images: encoded images (JPEG, PNG, ...).
        signature_name: another signature than ``serving_default``.
        timeout: seconds per HTTP request.
        split_on_error: resend image by image when the batch fails (see above).
        upright: apply each image's EXIF orientation before sending
            (:func:`upright_image_bytes`), as the CLI does.

    Raises:
        RestError: the server answered with ``{"error": ...}`` (HTTP 4xx/5xx included) and
            ``split_on_error`` is off or the batch held one image.
    """
    if upright:
        images = [upright_image_bytes(image) for image in images]
    try:
        return _post(url, images, signature_name, timeout)
    except RestError:
        if not split_on_error or len(images) < 2:
            raise
    results = []
    for image in images:
        try:
            results.extend(_post(url, [image], signature_name, timeout))
        except RestError as err:
            results.append({"error": str(err)})
    return results


def _post(url: str, images: Sequence[bytes], signature_name, timeout: float) -> list[dict]:
    data = json.dumps(rest_request(images, signature_name)).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as err:
        body = err.read()
        try:
            parsed = json.loads(body)
        except ValueError:
            raise RestError(f"HTTP {err.code}: {body[:200]!r}") from err
        raise RestError(parsed.get("error", f"HTTP {err.code}")) from err
    return parse_rest_response(body)
