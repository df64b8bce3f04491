"""Parity and size report: every exported variant against the in-memory Keras model.

For each variant (a SavedModel directory or a ``.tflite`` file) on the same held-out faces:
accuracy and its difference to the Keras model (percentage points), the largest absolute
difference of the output probabilities, the size on disk, and the median single-thread
latency of classifying one face (preprocessed input, model only).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from keras_fer.export.tflite import LiteRTClassifier, as_model_input


def file_size(path: str | Path) -> int:
    """Bytes of a file, or of all files under a directory."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _median_latency_ms(fn: Callable[[np.ndarray], object], x1: np.ndarray, runs: int) -> float:
    fn(x1)  # first call allocates / traces
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(x1)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


def _in_chunks(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
               size: int = 256) -> np.ndarray:
    """``fn`` over ``x`` in slices of ``size`` (whole-set batches of large models exhaust
    memory: their activations scale with the batch)."""
    return np.concatenate([np.asarray(fn(x[i : i + size])) for i in range(0, len(x), size)])


def _savedmodel_predictor(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import tensorflow as tf

    from keras_fer.export.savedmodel import SERVING_FACES

    signature = tf.saved_model.load(str(path)).signatures[SERVING_FACES]

    def predict(faces_uint8: np.ndarray) -> np.ndarray:
        return _in_chunks(lambda f: signature(faces=tf.constant(f[..., None]))[
            "probabilities"].numpy(), faces_uint8)

    return predict


def parity_report(
    keras_model,
    variants: Mapping[str, str | Path],
    faces: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    latency_runs: int = 50,
) -> dict:
    """Compares every exported variant with ``keras_model`` on held-out faces.

    Args:
        keras_model: the trained inference model.
        variants: name -> SavedModel directory or ``.tflite`` file.
        faces: held-out aligned uint8 faces ``(N, H, W)``.
        labels: their class indices ``(N,)``.
        class_names: class names (index-aligned with the model output).
        latency_runs: timed single-face runs per variant (median reported).

    Returns:
        ``{"num_faces", "class_names", "keras": {...}, "variants": {name: {...}}}`` where each
        entry has ``accuracy`` (percent), ``accuracy_delta`` (points vs Keras),
        ``max_abs_diff``, ``size_bytes`` and ``latency_ms``.
    """
    import tensorflow as tf

    faces = np.asarray(faces, np.uint8)
    labels = np.asarray(labels)
    if faces.ndim != 3 or len(faces) != len(labels) or len(faces) == 0:
        raise ValueError(
            f"Expected faces (N, H, W) and labels (N,). Received {faces.shape}, {labels.shape}"
        )
    x = as_model_input(faces)
    ref = _in_chunks(lambda t: keras_model(t, training=False), x)
    keras_acc = float(np.mean(ref.argmax(1) == labels) * 100.0)
    keras_fn = tf.function(lambda t: keras_model(t, training=False))
    report = {
        "num_faces": int(len(faces)),
        "class_names": list(class_names),
        "keras": {
            "accuracy": keras_acc,
            "params": int(keras_model.count_params()),
            "latency_ms": _median_latency_ms(lambda t: keras_fn(t).numpy(), x[:1], latency_runs),
        },
        "variants": {},
    }
    for name, path in variants.items():
        path = Path(path)
        if path.is_dir():
            predict = _savedmodel_predictor(path)
            probs = predict(faces)
            latency = _median_latency_ms(predict, faces[:1], latency_runs)
        else:
            runner = LiteRTClassifier(path, num_threads=1)
            probs = runner.predict(x)
            latency = _median_latency_ms(runner.predict, x[:1], latency_runs)
        acc = float(np.mean(probs.argmax(1) == labels) * 100.0)
        report["variants"][name] = {
            "path": str(path),
            "accuracy": acc,
            "accuracy_delta": acc - keras_acc,
            "max_abs_diff": float(np.abs(probs - ref).max()),
            "size_bytes": file_size(path),
            "latency_ms": latency,
        }
    return report


def to_markdown(report: dict) -> str:
    """The report as a Markdown table (one row per variant, Keras first)."""
    keras = report["keras"]
    lines = [
        f"Held-out faces: {report['num_faces']}; latency: median single-thread, one face.",
        "",
        "| variant | accuracy (%) | delta (pts) | max abs diff | size (KB) | latency (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| keras | {keras['accuracy']:.2f} | 0.00 | 0 | - | {keras['latency_ms']:.3f} |",
    ]
    for name, row in report["variants"].items():
        lines.append(
            f"| {name} | {row['accuracy']:.2f} | {row['accuracy_delta']:+.2f} | "
            f"{row['max_abs_diff']:.2e} | {row['size_bytes'] / 1024:.1f} | "
            f"{row['latency_ms']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def write_report(
    report: dict, out_dir: str | Path, stem: str = "export_report"
) -> tuple[Path, Path]:
    """Writes ``<stem>.json`` and ``<stem>.md`` into ``out_dir``; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2))
    md_path.write_text(to_markdown(report))
    return json_path, md_path
