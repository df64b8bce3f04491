"""A small local HTTP server speaking TF Serving's REST API over an exported SavedModel.

``keras-fer serve saved_models/idennet_ferplus`` answers, like ``tensorflow_model_server
--rest_api_port``:

- ``GET  /v1/models/<name>[/versions/<v>]``: version status
  (``{"model_version_status": [{"version", "state": "AVAILABLE", "status"}]}``);
- ``GET  /v1/models/<name>[/versions/<v>]/metadata``: ``model_spec`` and the signature
  definitions (inputs and outputs with dtype and shape);
- ``POST /v1/models/<name>[/versions/<v>]:predict``: the row format of
  :mod:`keras_fer.export.serving` (``{"instances": [{"b64": ...}]}`` ->
  ``{"predictions": [...]}`` or HTTP 400 ``{"error": ...}``); an unknown model or version is
  HTTP 404. Requests go through :func:`keras_fer.export.serving.handle_rest`, so error
  handling is the one the tests exercise; a bad image is named (``instances[i]: ...``), and
  EXIF orientation is applied before the graph decodes (TF Serving itself cannot: there the
  client does it, see ``predict_rest``).

It serves the newest version of a TF Serving model base (or one SavedModel folder as version
1), replays ``assets.extra/tf_serving_warmup_requests`` before it accepts connections, and
binds to ``127.0.0.1`` unless told otherwise. It is meant for local use and for testing
client code end to end; production serving is TF Serving itself (see docs/deployment.md).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Optional, Tuple

HELP = "serve an exported SavedModel over TF Serving's REST API on a local port"
_ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<rest>.*)$")


class ServedModel:
    """One loaded SavedModel version: its signatures, metadata and warm-up count."""

    def __init__(self, path: str | Path, name: Optional[str] = None):
        import tensorflow as tf

        from keras_fer.export.savedmodel import SERVING_DEFAULT
        from keras_fer.inference.predictor import resolve_saved_model_dir

        base = Path(path)
        self.path = resolve_saved_model_dir(base)
        self.version = int(self.path.name) if self.path.name.isdigit() else 1
        self.name = name or (base.name if self.path != base else self.path.name)
        self._loaded = tf.saved_model.load(str(self.path))
        self.signature = self._loaded.signatures[SERVING_DEFAULT]
        self.warmed_up = self._warm_up()

    def _warm_up(self) -> int:
        """Replays the warm-up requests (as TF Serving does on load); returns how many ran."""
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        from keras_fer.export.serving import WARMUP_FILE

        path = self.path / "assets.extra" / WARMUP_FILE
        if not path.is_file():
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(str(path)):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            inputs = {
                key: tf.constant(tf.make_ndarray(proto))
                for key, proto in log.predict_log.request.inputs.items()
            }
            self.signature(**inputs)
            count += 1
        return count

    def status(self) -> Dict:
        """TF Serving's ``GetModelStatus`` response."""
        return {
            "model_version_status": [
                {
                    "version": str(self.version),
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }

    def metadata(self) -> Dict:
        """TF Serving's ``GetModelMetadata`` response (signature definitions)."""

        def tensor(spec) -> Dict:
            dims = [{"size": str(-1 if d is None else d)} for d in spec.shape.as_list()]
            return {"dtype": f"DT_{spec.dtype.name.upper()}", "tensor_shape": {"dim": dims},
                    "name": spec.name or ""}

        defs = {}
        for key, fn in self._loaded.signatures.items():
            inputs = {k: tensor(v) for k, v in fn.structured_input_signature[1].items()}
            outputs = {k: tensor(v) for k, v in fn.structured_outputs.items()}
            defs[key] = {
                "inputs": inputs,
                "outputs": outputs,
                "method_name": "tensorflow/serving/predict",
            }
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
            "metadata": {"signature_def": {"signature_def": defs}},
        }


class _Handler(BaseHTTPRequestHandler):
    server_version = "keras-fer-serve"
    model: ServedModel  # set on the subclass made by make_server

    def log_message(self, fmt, *args) -> None:  # one line per request only with --verbose
        if getattr(self.server, "verbose", False):
            sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

    def _send(self, status: int, body: Dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> Tuple[Optional[str], str]:
        """(error or None, the rest of the path after the model/version part)."""
        match = _ROUTE.match(self.path.split("?", 1)[0])
        if not match:
            return f"Malformed request: {self.command} {self.path}", ""
        name, version = match["name"], match["version"]
        if name != self.model.name or (version is not None and int(version) != self.model.version):
            spec = f"Specific({name}, {version})" if version else f"Latest({name})"
            return f"Servable not found for request: {spec}", ""
        return None, match["rest"]

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        error, rest = self._route()
        if error:
            self._send(404, {"error": error})
        elif rest in ("", "/"):
            self._send(200, self.model.status())
        elif rest == "/metadata":
            self._send(200, self.model.metadata())
        else:
            self._send(404, {"error": f"Malformed request: GET {self.path}"})

    def do_POST(self) -> None:  # noqa: N802
        from keras_fer.export.serving import handle_rest

        error, rest = self._route()
        if error:
            self._send(404, {"error": error})
            return
        if rest != ":predict":
            self._send(404, {"error": f"Malformed request: POST {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        status, body = handle_rest(self.model.signature, self.rfile.read(length), upright=True)
        self._send(status, body)


def make_server(
    model: ServedModel, host: str = "127.0.0.1", port: int = 8501, verbose: bool = False
) -> ThreadingHTTPServer:
    """A threading HTTP server for ``model`` (``port=0`` picks a free port)."""
    handler = type("Handler", (_Handler,), {"model": model})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.verbose = verbose
    return server


def serve_in_thread(model: ServedModel, host: str = "127.0.0.1", port: int = 0):
    """Starts a server in a daemon thread; returns ``(server, base_url)`` (for tests)."""
    server = make_server(model, host, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the ``serve`` arguments on ``parser``."""
    parser.add_argument("model", help="TF Serving model base (<name>/<version>/) or SavedModel")
    parser.add_argument("--name", default=None, help="model name in URLs (default: folder name)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: local)")
    parser.add_argument("--port", type=int, default=8501, help="port (TF Serving's REST: 8501)")
    parser.add_argument("--verbose", action="store_true", help="TensorFlow logs, request lines")


def run(args: argparse.Namespace) -> int:
    """Runs ``keras-fer serve`` until Ctrl-C; returns the exit status."""
    if not args.verbose:
        from keras_fer.inference.quiet import silence_native_stderr

        silence_native_stderr()
    if not Path(args.model).exists():
        print(f"keras-fer serve: model not found: {args.model}", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(
            f"keras-fer serve: --port must be in [0, 65535]. Received: {args.port}",
            file=sys.stderr,
        )
        return 2
    try:
        model = ServedModel(args.model, args.name)
        server = make_server(model, args.host, args.port, args.verbose)
    except Exception as err:  # noqa: BLE001 - one line; --verbose shows the traceback
        if args.verbose:
            raise
        line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"keras-fer serve: {type(err).__name__}: {line}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    print(
        f"keras-fer serve: model '{model.name}' version {model.version} ({model.path}), "
        f"{model.warmed_up} warm-up requests replayed; http://{host}:{port}/v1/models/"
        f"{model.name}:predict (Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
