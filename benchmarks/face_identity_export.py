"""dlib's face ResNet (Keras port) exported to TFLite float16 and int8: parity, size, latency.

For the Keras model (float32) and its TFLite float16 and int8 conversions
(:func:`keras_fer.export.tflite.convert`; int8 calibrated on ``--calibration_faces`` FER+
Valid faces, float32 input and output), on real faces that the calibration never saw
(``--faces_per_dataset`` each from CK+48, ORL and FER+ Test, through
:func:`keras_fer.models.face_identity.to_face_input`):

- cosine between each variant's embedding and the Keras embedding (mean and min over the
  faces), the largest absolute difference and the largest Euclidean distance (dlib's
  same-person threshold is a distance of 0.6);
- file size (Keras: the cached ``.weights.h5``);
- latency of one face, one thread (TensorFlow intra/inter-op threads and LiteRT threads set
  to 1), median over ``--repeats`` calls after warm-up.

Run::

    python benchmarks/face_identity_export.py

writes ``benchmarks/results/face_identity_export.json`` and ``face_identity_export.md``;
the ``.tflite`` files go to ``--work_dir`` (default ``runs/face_identity_export``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from keras_fer import io_atomic  # noqa: E402
from keras_fer.data.paths import data_dir  # noqa: E402
from keras_fer.export import tflite  # noqa: E402
from keras_fer.models import face_identity  # noqa: E402

HERE = Path(__file__).resolve().parent
FERPLUS_TILE = 48
FERPLUS_TILES_PER_ROW = 128
INPUT_SHAPE = (face_identity.INPUT_SIZE, face_identity.INPUT_SIZE, 3)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--faces_per_dataset", type=int, default=40, help="Evaluation faces per dataset.")
    add("--calibration_faces", type=int, default=200, help="FER+ Valid faces for int8.")
    add("--repeats", type=int, default=50, help="Timed single-face calls per variant.")
    add("--work_dir", default="runs/face_identity_export")
    add(
        "--out",
        default=str(HERE / "results" / "face_identity_export"),
        help="Output path without extension (.json and .md are written).",
    )
    return parser.parse_args(argv)


def ferplus_tiles(split: str, indices: Sequence[int]) -> np.ndarray:
    """Tiles of a FER+ mosaic (tile i is row i of the split's label.csv)."""
    mosaic = np.asarray(
        Image.open(data_dir() / "ferplus" / "data" / split / "faces.png").convert("L")
    )
    tiles = []
    for i in indices:
        row, col = divmod(int(i), FERPLUS_TILES_PER_ROW)
        top, left = row * FERPLUS_TILE, col * FERPLUS_TILE
        tiles.append(mosaic[top : top + FERPLUS_TILE, left : left + FERPLUS_TILE])
    return np.stack(tiles)


def evaluation_faces(n: int) -> Dict[str, np.ndarray]:
    """``n`` gray faces each from CK+48 (spread over the sorted files), ORL (image 1 of
    subjects 1..n, 40 at most) and FER+ Test (every 50th tile)."""
    root = data_dir()
    ck_files = sorted((root / "ckplus48" / "CK+48").glob("*/*.png"))
    step = max(1, len(ck_files) // n)
    ck = np.stack([np.asarray(Image.open(p).convert("L")) for p in ck_files[::step][:n]])
    orl = np.stack(
        [
            np.asarray(Image.open(root / "orl_faces" / f"s{k}" / "1.pgm").convert("L"))
            for k in range(1, min(n, 40) + 1)
        ]
    )
    return {
        "ckplus48": ck,
        "orl": orl,
        "ferplus_test": ferplus_tiles("FER2013Test", range(0, 50 * n, 50)),
    }


def median_latency_ms(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, repeats: int):
    for _ in range(5):
        fn(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 2)


def compare(ref: np.ndarray, out: np.ndarray) -> Dict:
    ref, out = ref.astype(np.float64), out.astype(np.float64)
    cos = (ref * out).sum(-1) / np.linalg.norm(ref, axis=-1) / np.linalg.norm(out, axis=-1)
    return {
        "cosine_mean": round(float(cos.mean()), 8),
        "cosine_min": round(float(cos.min()), 8),
        "max_abs_diff": float(f"{np.abs(ref - out).max():.3g}"),
        # dlib calls two faces the same person below a Euclidean distance of 0.6.
        "max_distance": float(f"{np.linalg.norm(ref - out, axis=-1).max():.3g}"),
    }


def environment() -> Dict:
    import keras
    import tensorflow as tf

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU core(s), no GPU",
        "python": platform.python_version(),
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
    }


def run(args: argparse.Namespace) -> Dict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    faces = evaluation_faces(args.faces_per_dataset)
    x = np.concatenate([face_identity.to_face_input(f) for f in faces.values()])
    calibration = face_identity.to_face_input(
        ferplus_tiles("FER2013Valid", range(args.calibration_faces))
    )
    model = face_identity.dlib_resnet()
    cache = face_identity.weights_cache_path(face_identity.dlib_model_path())
    keras_fn = tf.function(lambda t: model(t, training=False))
    ref = np.concatenate([keras_fn(x[i : i + 32]).numpy() for i in range(0, len(x), 32)])
    one = x[:1]
    rows: List[Dict] = [{
        "variant": "keras_float32",
        "file": cache.name,
        "size_mb": round(cache.stat().st_size / 2**20, 2),
        "latency_ms": median_latency_ms(lambda t: keras_fn(t).numpy(), one, args.repeats),
        **compare(ref, ref),
    }]  # fmt: skip
    work = Path(args.work_dir)
    for variant in ("float16", "int8"):
        path = tflite.convert(
            model,
            variant,
            work / f"dlib_resnet_{variant}.tflite",
            calibration if variant == "int8" else None,
            INPUT_SHAPE,
        )
        runner = tflite.LiteRTClassifier(path, num_threads=1)
        out = runner.predict(x)
        rows.append({
            "variant": f"tflite_{variant}",
            "file": path.name,
            "size_mb": round(path.stat().st_size / 2**20, 2),
            "latency_ms": median_latency_ms(runner.predict, one, args.repeats),
            **compare(ref, out),
        })  # fmt: skip
        print(rows[-1], flush=True)
    return {
        "model": "dlib_resnet (dlib_face_recognition_resnet_model_v1.dat, Keras port)",
        "faces": {name: len(f) for name, f in faces.items()},
        "calibration": f"{len(calibration)} FER+ Valid faces (tiles 0..{len(calibration) - 1})",
        "latency": f"one face, one thread, median of {args.repeats} calls after 5 warm-up",
        "environment": environment(),
        "variants": rows,
    }


def markdown(doc: Dict) -> str:
    faces = ", ".join(f"{n} {name}" for name, n in doc["faces"].items())
    env = doc["environment"]
    lines = [
        "# dlib face ResNet (Keras port) exported to TFLite",
        "",
        f"Cosine to the Keras float32 embedding over {sum(doc['faces'].values())} real faces "
        f"({faces}); int8 calibrated on {doc['calibration']}; latency: {doc['latency']}. "
        f"Max distance: the largest Euclidean distance to the Keras embedding (dlib's "
        f"same-person threshold is 0.6). {env['machine']}, TensorFlow {env['tensorflow']}, "
        f"{env['date']}.",
        "",
        "| variant | size (MB) | latency (ms) | cosine mean | cosine min | max abs diff "
        "| max distance |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in doc["variants"]:
        lines.append(
            f"| {r['variant']} | {r['size_mb']} | {r['latency_ms']} | "
            f"{r['cosine_mean']:.8f} | {r['cosine_min']:.8f} | {r['max_abs_diff']:.3g} | "
            f"{r['max_distance']:.3g} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> Dict:
    args = parse_args(argv)
    doc = run(args)
    io_atomic.write_results(args.out, doc, markdown(doc), indent=1)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return doc


if __name__ == "__main__":
    main()
