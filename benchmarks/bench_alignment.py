"""Keypoint refinement settings of the eye alignment: cost against precision and accuracy.

``FaceAligner`` re-detects the face on an upright crop of itself to correct BlazeFace's
keypoints (``refine_steps``; each step one short-range invoke). This measures, on real faces,
each setting against the previous default (2 full steps at the model's 128 px input):

- accuracy of the default classifier (int8 FER+ ResNet-18) on the aligned faces of CK+48
  (7 classes; ``neutral`` answered counts as wrong), CK+ neutral/peak frames (8) and FER+ Test
  (8, majority vote), each photo through the Predictor's detector; paired against the previous
  default (faces right only with the new setting / only with the old, exact McNemar p);
- prediction agreement with the previous default on every face (the previous default with one
  more step agrees with itself only so far: the refinement's own noise);
- precision without landmarks: each ORL face (and the astronaut) is rotated by up to 25
  degrees and scaled by 0.6-2.5 (0.4-1.5), aligned, and its eye keypoints mapped back; the
  error against the same setting on the untouched photo, as a fraction of the eye distance
  and as the eye line's angle;
- the mean eye-line angle against the previous default (a systematic tilt), the mean eye
  distance ratio;
- ms to align one ORL photo's face (detection excluded), one thread.

    FER_DATA_DIR=/work/shared/data python benchmarks/bench_alignment.py \\
        --out benchmarks/results/alignment_refine.json
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_fer import io_atomic  # noqa: E402
from keras_fer.data import faces as F  # noqa: E402
from keras_fer.data.face_search import GroupFaceDetector  # noqa: E402
from keras_fer.data.paths import data_dir  # noqa: E402

FERPLUS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
LABELLED = ("ckplus48", "ckplus_neutral", "ferplus_test")
# name: (GroupFaceDetector refine_input, refine_steps, refine_gain); the first is the reference.
SETTINGS = {
    "2 steps at 128 px (before)": (None, 2, 1.0),
    "3 steps at 128 px": (None, 3, 1.0),
    "1 step at 128 px": (None, 1, 1.0),
    "1 step x0.8 at 128 px": (None, 1, F.ONE_STEP_GAIN),
    "2 steps at 96 px": (96, 2, 1.0),
    "1 step at 96 px": (96, 1, 1.0),
    "1 step x0.8 at 96 px (Predictor now)": (96, 1, F.ONE_STEP_GAIN),
}


def labelled_faces(root: Path):
    """(set, gray image, FER+ class id or -1) of the three labelled sets."""
    rename = {"happy": "happiness"}
    for path in sorted((root / "ckplus48" / "CK+48").glob("*/*.png")):
        yield "ckplus48", np.asarray(Image.open(path).convert("L")), FERPLUS.index(
            rename.get(path.parent.name, path.parent.name))
    for path in sorted((root / "ckplus_neutral" / "CK+").glob("*/*.png")):
        yield "ckplus_neutral", np.asarray(Image.open(path).convert("L")), FERPLUS.index(
            path.parent.name)
    folder = root / "ferplus" / "data" / "FER2013Test"
    mosaic = np.asarray(Image.open(folder / "faces.png").convert("L"))
    with open(folder / "label.csv", newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            votes = np.array([int(v) for v in row[2:12]])
            label = int(np.argmax(votes[:8])) if np.argmax(votes) < 8 else -1
            r, c = 48 * (i // 128), 48 * (i % 128)
            yield "ferplus_test", mosaic[r : r + 48, c : c + 48], label


def transformed_faces(root: Path, seed: int = 0):
    """(base id, k, image, matrix): k = 0 the photo itself, else rotated and scaled by
    ``matrix`` (original pixels -> new pixels)."""
    from skimage import data as skdata

    rng = np.random.default_rng(seed)
    bases = [np.asarray(Image.open(p)) for p in sorted((root / "orl_faces").glob("s*/*.pgm"))]
    bases.append(skdata.astronaut())
    for b, image in enumerate(bases):
        h, w = image.shape[:2]
        astronaut = b == len(bases) - 1
        yield b, 0, image, np.array([[1.0, 0, 0], [0, 1.0, 0]])
        for k in range(1, 13 if astronaut else 3):
            degrees = float(rng.uniform(-25, 25))
            low, high = (0.4, 1.5) if astronaut else (0.6, 2.5)
            scale = float(np.exp(rng.uniform(np.log(low), np.log(high))))
            m = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), degrees, 1.0) * scale
            m[:, 2] += (scale - 1) * 0.5  # pixel centres: x' = s (x + 0.5) - 0.5
            size = (int(round(w * scale)), int(round(h * scale)))
            flags = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            yield b, k, cv2.warpAffine(image, m, size, flags=flags,
                                       borderMode=cv2.BORDER_REPLICATE), m


def _roll(points: np.ndarray) -> float:
    dx, dy = points[1] - points[0]
    return math.degrees(math.atan2(dy, dx))


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value of b against c discordant pairs."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/alignment_refine.json")
    parser.add_argument("--model", default=None, help="classifier (default: the default model)")
    parser.add_argument("--limit", type=int, default=None, help="faces per labelled set (quick)")
    args = parser.parse_args(argv)
    from keras_fer.export.tflite import LiteRTClassifier
    from keras_fer.inference.defaults import default_model_path

    root = data_dir()
    labelled = [[] for _ in LABELLED]
    for name, image, label in labelled_faces(root):
        rows = labelled[LABELLED.index(name)]
        if args.limit is None or len(rows) < args.limit:
            rows.append((name, image, label))
    labelled = [row for rows in labelled for row in rows]
    transformed = list(transformed_faces(root))
    classifier = LiteRTClassifier(args.model or default_model_path(),
                                  num_threads=os.cpu_count() or 1)
    with GroupFaceDetector() as detector:
        detections = [detector.detect(image) for _, image, _ in labelled]
        detections += [detector.detect(image) for _, _, image, _ in transformed]
    images = [image for _, image, _ in labelled] + [image for _, _, image, _ in transformed]
    found = [i for i, d in enumerate(detections) if d]
    n_lab = len(labelled)
    orl_first = [np.asarray(Image.open(root / "orl_faces" / f"s{k}" / "1.pgm"))
                 for k in range(1, 21)]
    keypoints, predictions, timing = {}, {}, {}
    for name, (refine_input, steps, gain) in SETTINGS.items():
        with GroupFaceDetector(refine_input=refine_input) as detector:
            aligner = F.FaceAligner(detector=detector, refine_steps=steps, refine_gain=gain)
            faces = {i: aligner.align(images[i], detections[i][0]) for i in found}
            ones = [(im, detector.detect(im)[0]) for im in orl_first]
            times = []  # the detectors run on one thread
            for _ in range(5):
                for im, det in ones:
                    t0 = time.perf_counter()
                    aligner.align(im, det)
                    times.append(time.perf_counter() - t0)
        timing[name] = round(1000 * float(np.median(times)), 3)
        keypoints[name] = {i: f.keypoints for i, f in faces.items()}
        probabilities = classifier.predict_faces(np.stack([faces[i].crop for i in found]))
        predictions[name] = dict(zip(found, probabilities.argmax(-1).tolist()))
        print(f"{name}: aligned", flush=True)

    reference = next(iter(SETTINGS))
    ref_pred, ref_kp = predictions[reference], keypoints[reference]
    results = {"faces_detected": {s: sum(1 for i in found if i < n_lab and labelled[i][0] == s)
                                  for s in LABELLED},
               "transformed_faces": sum(1 for i in found if i >= n_lab),
               "reference": reference, "settings": {}}
    for name in SETTINGS:
        pred, kp = predictions[name], keypoints[name]
        row = {"accuracy": {}, "refine_invokes": SETTINGS[name][1]}
        scored = [i for i in found if i < n_lab and labelled[i][2] >= 0]
        for s in LABELLED:
            ii = [i for i in scored if labelled[i][0] == s]
            row["accuracy"][s] = round(100 * float(np.mean([pred[i] == labelled[i][2]
                                                            for i in ii])), 2)
        b = sum(pred[i] == labelled[i][2] != ref_pred[i] for i in scored)
        c = sum(ref_pred[i] == labelled[i][2] != pred[i] for i in scored)
        row["right_only_here_vs_only_before"] = [int(b), int(c)]
        row["mcnemar_p"] = round(mcnemar_p(b, c), 3)
        row["agreement_with_before"] = round(100 * float(np.mean([pred[i] == ref_pred[i]
                                                                  for i in found])), 2)
        row["eye_line_angle_vs_before_deg"] = {
            s: round(float(np.mean([_roll(kp[i]) - _roll(ref_kp[i]) for i in found
                                    if i < n_lab and labelled[i][0] == s])), 3)
            for s in LABELLED}
        row["eye_distance_vs_before"] = round(float(np.mean(
            [np.linalg.norm(kp[i][1] - kp[i][0]) / np.linalg.norm(ref_kp[i][1] - ref_kp[i][0])
             for i in found])), 4)
        base = {transformed[i - n_lab][0]: kp[i] for i in found
                if i >= n_lab and transformed[i - n_lab][1] == 0}
        eye, angle = [], []
        for i in found:
            if i < n_lab:
                continue
            b_id, k, _, m = transformed[i - n_lab]
            if k == 0 or b_id not in base:
                continue
            back = F.apply_transform(cv2.invertAffineTransform(m), kp[i])
            ref = base[b_id]
            distance = np.linalg.norm(ref[1] - ref[0])
            eye.append(float(np.max(np.linalg.norm(back[:2] - ref[:2], axis=-1)) / distance))
            angle.append(abs(_roll(back) - _roll(ref)))
        row["transform_eye_error"] = {"mean": round(float(np.mean(eye)), 4),
                                      "p95": round(float(np.percentile(eye, 95)), 4)}
        row["transform_angle_error_deg"] = {"mean": round(float(np.mean(angle)), 3),
                                            "p95": round(float(np.percentile(angle, 95)), 3)}
        row["align_ms_orl_one_thread"] = timing[name]
        results["settings"][name] = row
    lines = [
        "| refinement | refinement invokes | acc CK+48 / CK+ neutral / FER+ Test | right only "
        "here / only before (McNemar p) | agrees with before | eye error, rotated+scaled (mean "
        "/ p95 of eye distance) | angle error, deg (mean / p95) | eye line vs before, deg | "
        "align ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results["settings"].items():
        acc = " / ".join(f"{r['accuracy'][s]:.2f}" for s in LABELLED)
        tilt = " / ".join(f"{v:+.2f}" for v in r["eye_line_angle_vs_before_deg"].values())
        lines.append(
            f"| {name} | {r['refine_invokes']} | {acc} | "
            f"{r['right_only_here_vs_only_before'][0]} / "
            f"{r['right_only_here_vs_only_before'][1]} ({r['mcnemar_p']}) | "
            f"{r['agreement_with_before']}% | {r['transform_eye_error']['mean']:.4f} / "
            f"{r['transform_eye_error']['p95']:.4f} | {r['transform_angle_error_deg']['mean']:.2f}"
            f" / {r['transform_angle_error_deg']['p95']:.2f} | {tilt} | "
            f"{r['align_ms_orl_one_thread']} |")
    counts = results["faces_detected"]
    lines.append("")
    lines.append(f"Faces: {counts['ckplus48']} CK+48, {counts['ckplus_neutral']} CK+ neutral, "
                 f"{counts['ferplus_test']} FER+ Test (detected; those with a majority label "
                 f"scored), {results['transformed_faces']} ORL/astronaut photos and their "
                 "rotated and scaled copies.")
    table = "\n".join(lines)
    print(table)
    io_atomic.write_results(args.out, results, table + "\n", indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
