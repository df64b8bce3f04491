"""Face detection recall on composed group photos and false detections on face-free images.

Group photos are composed from real faces: ORL heads (92x112) and CK+ crops (48x48) pasted at
several scales onto a 1600x1200 canvas of a natural texture, plus scikit-image's astronaut
side by side (512x1024) and tiled 2x2 and 3x3. A pasted face counts as found when a
detection's box centre lies inside it (each face matched once); any other detection is false.
Face-free images are scikit-image's photos without people.

    python benchmarks/bench_group_faces.py --out benchmarks/results/group_faces.json

Prints a Markdown table; writes the JSON with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_fer.data.face_detector import FaceDetector  # noqa: E402
from keras_fer.data.face_search import GroupFaceDetector, full_range_model_path  # noqa: E402
from keras_fer.data.paths import data_dir  # noqa: E402

FACE_FREE = ("coffee", "chelsea", "rocket", "brick", "grass", "gravel", "coins", "page",
             "horse", "moon", "text", "hubble_deep_field", "immunohistochemistry", "retina")


def _paste_faces(faces, scales, seed, size=(1200, 1600)):
    """Pastes each face at its scale onto a textured canvas, no overlaps; returns (rgb, boxes)."""
    from skimage import data as skdata

    rng = np.random.default_rng(seed)
    texture = cv2.resize(skdata.grass(), size[::-1]).astype(np.float32)
    canvas = np.clip(texture * 0.5 + 90, 0, 255).astype(np.uint8)
    canvas = np.stack([canvas] * 3, -1)
    boxes = []
    for face, scale in zip(faces, scales):
        im = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA
                        if scale < 1 else cv2.INTER_LINEAR)
        h, w = im.shape[:2]
        for _ in range(200):
            y, x = int(rng.integers(0, size[0] - h)), int(rng.integers(0, size[1] - w))
            if all(x + w < bx or bx + bw < x or y + h < by or by + bh < y
                   for bx, by, bw, bh in boxes):
                break
        else:
            continue
        canvas[y : y + h, x : x + w] = im if im.ndim == 3 else im[..., None]
        boxes.append((x, y, w, h))
    return canvas, boxes


def group_photos():
    """[(name, rgb, [gt boxes])]."""
    from skimage import data as skdata

    root = data_dir()
    orl = [np.asarray(Image.open(root / "orl_faces" / f"s{k}" / "1.pgm")) for k in range(1, 41)]
    ck_files = sorted((root / "ckplus_neutral" / "CK+").glob("*/*.png"))[::25][:20]
    ck = [np.asarray(Image.open(p).convert("L")) for p in ck_files]
    photos = []
    orl_scales = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
    for i in range(4):
        faces = orl[i * 10 : i * 10 + 10]
        scales = [orl_scales[(i + j) % len(orl_scales)] for j in range(10)]
        photos.append((f"orl_group_{i}", *_paste_faces(faces, scales, seed=i)))
    ck_scales = (1.0, 1.5, 2.0, 3.0, 4.0)
    for i in range(2):
        faces = ck[i * 10 : i * 10 + 10]
        scales = [ck_scales[(i + j) % len(ck_scales)] for j in range(10)]
        photos.append((f"ck_group_{i}", *_paste_faces(faces, scales, seed=10 + i)))
    astronaut = skdata.astronaut()
    face = (173, 67, 103, 103)  # the astronaut's face box in the 512x512 photo

    def tiled(n_y, n_x):
        boxes = [(face[0] + 512 * c, face[1] + 512 * r, face[2], face[3])
                 for r in range(n_y) for c in range(n_x)]
        return np.tile(astronaut, (n_y, n_x, 1)), boxes

    photos.append(("astronaut_side_by_side", *tiled(1, 2)))
    photos.append(("astronaut_2x2", *tiled(2, 2)))
    photos.append(("astronaut_3x3", *tiled(3, 3)))
    return photos


def score(detections, boxes):
    """(found, false): ground-truth boxes hit by a detection centre, and unmatched detections."""
    unmatched = list(range(len(boxes)))
    false = 0
    for det in detections:
        x, y, w, h = det.box
        cx, cy = x + w / 2, y + h / 2
        hit = next((i for i in unmatched if boxes[i][0] <= cx <= boxes[i][0] + boxes[i][2]
                    and boxes[i][1] <= cy <= boxes[i][1] + boxes[i][3]), None)
        if hit is None:
            false += 1
        else:
            unmatched.remove(hit)
    return len(boxes) - len(unmatched), false


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/group_faces.json")
    parser.add_argument("--min_confidence", type=float, default=0.5)
    args = parser.parse_args(argv)
    from skimage import data as skdata

    photos = group_photos()
    free = [(name, getattr(skdata, name)()) for name in FACE_FREE]
    free = [(n, im if im.ndim == 3 else np.stack([im] * 3, -1)) for n, im in free]
    free = [(n, (im * 255).astype(np.uint8) if im.dtype != np.uint8 else im[..., :3])
            for n, im in free]
    conf = args.min_confidence
    methods = {
        "short_range (before)": lambda: FaceDetector(conf),
        "full_range, whole image": lambda: FaceDetector(
            conf, margins=(0.0,), model_path=full_range_model_path()),
        "group, min_face=64": lambda: GroupFaceDetector(conf, min_face=64),
        "group, min_face=48": lambda: GroupFaceDetector(conf, min_face=48),
        "group, min_face=48, MediaPipe backend": lambda: GroupFaceDetector(
            conf, min_face=48, backend="mediapipe"),
        "group, min_face=40 (default)": lambda: GroupFaceDetector(conf, min_face=40),
        "group, min_face=32": lambda: GroupFaceDetector(conf, min_face=32),
    }
    results = {"min_confidence": conf, "cpu_threads": os.cpu_count(), "methods": {}}
    for name, make in methods.items():
        with make() as detector:
            detector.detect(photos[0][1])  # warm-up
            rows, group_s = [], 0.0
            for photo, rgb, boxes in photos:
                t0 = time.perf_counter()
                detections = detector.detect(rgb)
                seconds = time.perf_counter() - t0
                group_s += seconds
                found, false = score(detections, boxes)
                rows.append({"photo": photo, "size": list(rgb.shape[:2]), "faces": len(boxes),
                             "found": found, "false": false, "ms": round(1000 * seconds, 1)})
            free_rows = [{"image": n, "detections": len(detector.detect(im))} for n, im in free]
        faces = sum(r["faces"] for r in rows)
        results["methods"][name] = {
            "faces": faces,
            "found": sum(r["found"] for r in rows),
            "recall": round(sum(r["found"] for r in rows) / faces, 4),
            "false_in_groups": sum(r["false"] for r in rows),
            "false_on_face_free": sum(r["detections"] for r in free_rows),
            "ms_per_group_photo": round(1000 * group_s / len(photos), 1),
            "ms_1600x1200_median": round(float(np.median(
                [r["ms"] for r in rows if r["size"] == [1200, 1600]])), 1),
            "photos": rows,
            "face_free": free_rows,
        }
    print("| detector | faces found | recall | false (group photos) | false (14 face-free) "
          "| ms / group photo | ms / 1600x1200 photo (median) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results["methods"].items():
        print(f"| {name} | {r['found']}/{r['faces']} | {100 * r['recall']:.1f}% | "
              f"{r['false_in_groups']} | {r['false_on_face_free']} | {r['ms_per_group_photo']} "
              f"| {r['ms_1600x1200_median']} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
