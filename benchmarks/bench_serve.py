"""Bounded load test of ``keras-fer serve`` over loopback: concurrent clients, p50/p99, errors.

Starts the REST server (TF Serving's API) on a free local port over a shipped SavedModel,
then ``--clients`` threads each send ``--requests`` predict requests of ``--batch`` aligned
real faces (the astronaut and ORL faces); every answer is checked (status 200, one row per
image, probabilities summing to 1), and one request in ``--bad_every`` carries a non-image,
which must come back as HTTP 400 naming it. Nothing is lost: sent = ok + expected 400s.

    python benchmarks/bench_serve.py --out benchmarks/results/serve_load.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_fer.inference.rest_server import ServedModel, serve_in_thread  # noqa: E402
from keras_fer.export.serving import predict_url, rest_request  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _faces():
    import io

    from PIL import Image
    from skimage import data as skdata

    from keras_fer.data.face_search import GroupFaceDetector
    from keras_fer.data.faces import FaceAligner
    from keras_fer.data.paths import data_dir

    images = [skdata.astronaut()]
    images += [np.asarray(Image.open(data_dir() / "orl_faces" / f"s{k}" / "1.pgm"))
               for k in range(1, 8)]
    out = []
    with GroupFaceDetector() as detector:
        aligner = FaceAligner(detector=detector)
        for image in images:
            buf = io.BytesIO()
            Image.fromarray(aligner.align_faces(image)[0].crop).save(buf, format="PNG")
            out.append(buf.getvalue())
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "saved_models" / "idennet_ferplus"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="per client")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--bad_every", type=int, default=10)
    parser.add_argument("--out", default="benchmarks/results/serve_load.json")
    args = parser.parse_args(argv)
    faces = _faces()
    model = ServedModel(args.model)
    server, base = serve_in_thread(model)
    url = predict_url(base, model.name)
    latencies, outcomes, lock = [], {"ok": 0, "bad_named": 0, "wrong": 0}, threading.Lock()

    def client(cid: int) -> None:
        rng = np.random.default_rng(cid)
        for r in range(args.requests):
            batch = [faces[i] for i in rng.integers(0, len(faces), args.batch)]
            bad = args.bad_every and (cid * args.requests + r) % args.bad_every == 0
            if bad:
                batch[1] = b"definitely not an image"
            body = json.dumps(rest_request(batch)).encode()
            req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    status, reply = resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as err:
                status, reply = err.code, json.loads(err.read())
            dt = time.perf_counter() - t0
            if bad:
                good = status == 400 and reply.get("error", "").startswith("instances[1]")
                key = "bad_named" if good else "wrong"
            else:
                rows = reply.get("predictions", [])
                good = status == 200 and len(rows) == len(batch) and all(
                    abs(sum(row["probabilities"]) - 1) < 1e-4 for row in rows)
                key = "ok" if good else "wrong"
            with lock:
                outcomes[key] += 1
                if not bad:
                    latencies.append(dt)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    server.shutdown()
    sent = args.clients * args.requests
    ms = np.asarray(latencies) * 1000
    result = {
        "model": str(model.path), "clients": args.clients, "requests_per_client": args.requests,
        "images_per_request": args.batch, "sent": sent, **outcomes,
        "lost": sent - sum(outcomes.values()), "warm_up_requests_replayed": model.warmed_up,
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "requests_per_s": round(sent / wall, 1),
        "images_per_s": round(sent * args.batch / wall, 1), "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["wrong"] == 0 and result["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
