"""Size and speed of TFE-JL's inference model now that it contains dlib's face network.

    python benchmarks/tfe_face_export.py  ->  benchmarks/results/tfe_face_export.json

Builds the CK+ (7 classes, ResNet12) and FER+ (8 classes, ResNet18) tandem inference
models with ``identity="face_resnet"`` and, for comparison, with ``"deepid"``; exports each
with the project's exporters (:func:`keras_fer.export.savedmodel.export_savedmodel`,
:func:`keras_fer.export.tflite.convert` int8 calibrated on 200 CK+48 faces) and times one
face on one thread (LiteRT, median of 50 calls after 5 warm-up; and the Keras model).
Sizes and latency do not depend on the trained values, so the tandem layers keep their
initial weights (the face network carries dlib's).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_fer.data import preprocess  # noqa: E402
from keras_fer.data.paths import data_dir  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "tfe_face_export.json"
REPEATS = 50


def _dir_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 2)


def _median_ms(fn, x) -> float:
    for _ in range(5):
        fn(x)
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn(x)
        times.append(1000.0 * (time.perf_counter() - start))
    return round(float(np.median(times)), 2)


def main() -> dict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from keras_fer.export import tflite
    from keras_fer.export.savedmodel import export_savedmodel
    from keras_fer.models import tfe
    from keras_fer.data.experiments import load_experiment

    exp = load_experiment("ckplus48", data_dir(), "ck7", use_orl=False)
    calib = exp.faces[np.random.default_rng(0).choice(len(exp.faces), 200, replace=False)]
    one = preprocess.to_model_input(calib[:1])
    rows = []
    for identity, depth, classes in (("face_resnet", 12, 7), ("deepid", 12, 7),
                                     ("face_resnet", 18, 8)):
        cfg = tfe.TFEConfig(num_classes=classes, num_identities=100, resnet_depth=depth,
                            identity=identity)
        model = tfe.inference_model(tfe.build_tfe(cfg))
        names = [f"c{k}" for k in range(classes)]
        with tempfile.TemporaryDirectory() as tmp:
            sm = export_savedmodel(model, names, Path(tmp) / "savedmodel")
            path = tflite.convert(model, "int8", Path(tmp) / "int8.tflite", calib)
            runner = tflite.LiteRTClassifier(path, num_threads=1)
            keras_fn = tf.function(lambda t: model(t, training=False))
            row = {
                "identity": identity, "resnet_depth": depth, "classes": classes,
                "parameters": int(model.count_params()),
                "savedmodel_mb": _dir_mb(sm),
                "tflite_int8_mb": round(path.stat().st_size / 2**20, 2),
                "tflite_int8_latency_ms": _median_ms(runner.predict, one),
                "keras_latency_ms": _median_ms(lambda t: keras_fn(t).numpy(), one),
            }
        print(row, flush=True)
        rows.append(row)
    doc = {"latency": f"one face, one thread, median of {REPEATS} calls after 5 warm-up",
           "calibration": "200 CK+48 faces (seed 0)", "models": rows}
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    return doc


if __name__ == "__main__":
    main()
