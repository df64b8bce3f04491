"""Finding every face of a photo: close-ups, group photos and small faces.

:class:`GroupFaceDetector` combines the two BlazeFace models shipped in ``keras_fer/assets``:

- the short-range model (128x128 input) on the whole image, for faces close to the camera,
  including tight crops that fill the frame (with its padded retry, see ``FaceDetector``);
- when the photo is too large for the short range to reach ``min_face`` (over 341 px at the
  default), the full-range model (192x192 input, faces up to ~5 m) on the whole image, then on a
  pyramid of overlapping square tiles (each half the side of the previous level, stride half a
  tile, so every face up to half a tile lies wholly inside one tile) until faces of
  ``min_face`` pixels are large enough for the model.

The full-range model finds faces down to about 13 px in its 192 px input (measured on the
astronaut photo scaled down: 13 px found, 9 px missed), so :data:`MODEL_MIN_FACE` = 16 px
keeps a margin: a whole-image pass covers faces >= ``long_side * 16 / 192``. With the default
``min_face=48`` (the models' input side: smaller faces are upscaled) a photo up to 341 px
needs the short-range pass only, up to 576 px one pass per model; a 1536 px group photo adds 9
tiles; ``min_face=32`` adds 9 + 49.
Overlapping detections are merged by score (a box mostly inside a better one is dropped).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from keras_fer.data.face_detector import Detection, FaceDetector, _as_uint8_image

FULL_RANGE_MODEL = "face_detection_full_range_sparse.tflite"
MODEL_INPUT = 192
MODEL_MIN_FACE = 16
# The short-range model (128 px input) finds faces down to ~14 px of its input (astronaut
# scaled: 17.5 px found, 12.5 missed); with a margin, photos whose long side maps min_face to
# >= 18 px need no full-range pass at all (up to 341 px at min_face=48: ORL, CK+, FER crops).
SHORT_INPUT = 128
SHORT_MIN_FACE = 18
DEFAULT_MIN_FACE = 48
# "litert": the models run by keras_fer.data.blazeface (no MediaPipe); "mediapipe": through
# the MediaPipe Tasks FaceDetector.
BACKENDS = ("litert", "mediapipe")
# Tiles look at many small windows, so their detections must be larger and surer than those
# of the whole-image passes: on 14 face-free photos (stars, gravel, text) every false tile
# detection scored < 0.72 or was smaller than 3/4 of min_face, every composed face >= 0.68.
_TILE_CONFIDENCE = 0.65
_TILE_MIN_SIZE = 0.75
# Two boxes are one face when this much of the smaller lies inside the larger.
_OVERLAP = 0.5


def full_range_model_path() -> Path:
    """Path of the BlazeFace full-range (sparse) model shipped with the package."""
    return Path(str(resources.files("keras_fer") / "assets" / FULL_RANGE_MODEL))


def merge_detections(detections: Sequence[Detection], overlap: float = _OVERLAP) -> List[Detection]:
    """Greedy suppression by score: drops a box when ``overlap`` of the smaller box of a pair
    lies inside a better-scored kept box (tiles cut faces, so IoU alone keeps halves)."""
    kept: List[Detection] = []
    for det in sorted(detections, key=lambda d: -d.score):
        x, y, w, h = det.box
        duplicate = False
        for other in kept:
            ox, oy, ow, oh = other.box
            iw = min(x + w, ox + ow) - max(x, ox)
            ih = min(y + h, oy + oh) - max(y, oy)
            if iw > 0 and ih > 0 and iw * ih >= overlap * min(w * h, ow * oh):
                duplicate = True
                break
        if not duplicate:
            kept.append(det)
    return kept


def tile_origins(length: int, side: int) -> List[int]:
    """Start offsets of tiles of ``side`` pixels, stride ``side // 2``, covering ``length``."""
    if length <= side:
        return [0]
    stride = max(side // 2, 1)
    starts = list(range(0, length - side, stride))
    return starts + [length - side]


def _shift(det: Detection, dx: int, dy: int, width: int, height: int) -> Detection:
    x, y, w, h = det.box
    x0, y0 = min(x + dx, width), min(y + dy, height)
    x1, y1 = min(x + dx + w, width), min(y + dy + h, height)
    return Detection((x0, y0, x1 - x0, y1 - y0), det.score, det.keypoints + np.float32([dx, dy]))


class GroupFaceDetector:
    """Short-range + full-range BlazeFace with tiling: every face of at least ``min_face`` px.

    Behaves like :class:`~keras_fer.data.face_detector.FaceDetector` (``detect``, ``close``,
    context manager); ``detect(image, margins=...)`` with explicit margins uses the
    short-range model alone (what keypoint refinement asks for on an upright face crop).

    Args:
        min_detection_confidence: score threshold in [0, 1] for both models.
        min_face: smallest face side, in image pixels, that the tiling must reach; smaller
            faces may still be found. Larger values mean fewer tiles (faster).
        backend: ``"litert"`` (default; :mod:`keras_fer.data.blazeface`, no MediaPipe) or
            ``"mediapipe"`` (the Tasks ``FaceDetector``).
    """

    def __init__(
        self,
        min_detection_confidence: float = 0.5,
        min_face: int = DEFAULT_MIN_FACE,
        backend: str = "litert",
    ):
        if min_face < 8:
            raise ValueError(f"min_face must be >= 8 pixels. Received: min_face={min_face}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}. Received: backend={backend!r}")
        self.min_face = int(min_face)
        self.backend = backend
        self.min_detection_confidence = float(min_detection_confidence)
        self.tile_confidence = max(self.min_detection_confidence, _TILE_CONFIDENCE)
        if backend == "litert":
            from keras_fer.data.blazeface import LiteRTFaceDetector as make
        else:
            make = FaceDetector
        self.short = make(min_detection_confidence)
        try:
            self.full = make(
                min_detection_confidence, margins=(0.0,), model_path=full_range_model_path()
            )
        except BaseException:
            self.short.close()
            raise

    def detect(
        self, image: np.ndarray, margins: Optional[Sequence[float]] = None
    ) -> List[Detection]:
        """Every face of a uint8 gray or RGB image, best score first."""
        if margins is not None:
            return self.short.detect(image, margins)
        image = _as_uint8_image(image)
        h, w = image.shape[:2]
        found = self.short.detect(image)
        side = max(h, w)
        if side * SHORT_MIN_FACE / SHORT_INPUT <= self.min_face:
            return merge_detections(found)  # small photo: the short range covers min_face
        found += self.full.detect(image)
        while side * MODEL_MIN_FACE / MODEL_INPUT > self.min_face and side >= 2 * MODEL_INPUT // 3:
            side //= 2
            for y in tile_origins(h, side):
                for x in tile_origins(w, side):
                    tile = image[y : y + side, x : x + side]
                    found += [
                        _shift(d, x, y, w, h)
                        for d in self.full.detect(tile)
                        if d.score >= self.tile_confidence
                        and min(d.box[2:]) >= _TILE_MIN_SIZE * self.min_face
                    ]
        return merge_detections(found)

    def close(self) -> None:
        """Releases both MediaPipe graphs."""
        self.short.close()
        self.full.close()

    def __enter__(self) -> "GroupFaceDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
