"""Finding every face of a photo: close-ups, group photos and small faces.

:class:`GroupFaceDetector` combines the two BlazeFace models shipped in ``keras_fer/assets``:

- the short-range model (128x128 input) on the whole image, for faces close to the camera,
  including tight crops that fill the frame (with its padded retry, see ``FaceDetector``);
- when the photo is larger than ``TILE_RATIO * min_face`` (200 px at the default), the
  full-range model (192x192 input, faces up to ~5 m) on the whole image, then the short-range
  model on a pyramid of overlapping square tiles (:func:`tile_sides`: the smallest
  ``TILE_RATIO * min_face``, each level twice the previous; stride half a tile, so every face
  up to half a tile lies wholly inside one tile).

BlazeFace finds a face reliably only when the face is at least about a fifth of the window it
looks at, whatever its pixel size in the model input: on composed group photos (real ORL and
CK+ faces pasted on a texture) a face in a window 2-4x its side scored 0.7-0.9, in a window 6x
its side 0.2-0.8, 8x and more mostly nothing. Hence :data:`TILE_RATIO` = 5: tiles of side
``s`` cover faces from ``s / 5`` to ``s / 2``, the whole-image passes faces from
``long_side / 5``. The short-range model scores these windows higher than the full-range one
and costs a third (1.1 vs 3.5 ms). Tile detections must score >= 0.75 and be >= 3/4 of
``min_face``. With the default ``min_face=40``: photos up to 200 px get one short-range pass
(ORL, CK+, FER crops), a 512 px photo adds the full-range pass and 25 + 4 tiles, a 1600x1200
photo 6 + 35 + 165 tiles (at 48: 240 px, 16 tiles, 6 + 24 + 117). The default is 40 because
the composed group photos' heads of ~40 px are missed at 48 (71/75 found; 75/75 at 40, with
the same single false detection on 14 face-free photos: ``benchmarks/bench_group_faces.py``).
Overlapping detections are merged by score (a box mostly inside a better one is dropped).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from keras_fer.data.face_detector import Detection, FaceDetector, _as_uint8_image
from keras_fer.data.faces import REFINE_SIZE, refine_eye_positions

FULL_RANGE_MODEL = "face_detection_full_range_sparse.tflite"
DEFAULT_MIN_FACE = 40
# "litert": the models run by keras_fer.data.blazeface (no MediaPipe); "mediapipe": through
# the MediaPipe Tasks FaceDetector.
BACKENDS = ("litert", "mediapipe")
# Tiles look at many small windows, so their detections must be larger and surer than those
# of the whole-image passes: on 14 face-free photos (stars, gravel, text) the short-range
# tiles' false detections scored <= 0.70 (hubble_deep_field) at min_face 48; the composed
# faces' tile detections scored 0.8-0.9.
_TILE_CONFIDENCE = 0.75
# A face is found reliably when it is at least 1 / TILE_RATIO of the window (module doc).
TILE_RATIO = 5.0
_TILE_MIN_SIZE = 0.75
# Two boxes are one face when this much of the smaller lies inside the larger.
_OVERLAP = 0.5
# Keypoint refinement (FaceAligner) runs the short-range model at this input on a proportionally
# smaller canvas (144 px instead of 192): the face at the same pixels, ~0.6 ms an invoke instead
# of ~1.1 (benchmarks/results/alignment_refine.md).
REFINE_INPUT = 96


def full_range_model_path() -> Path:
    """Path of the BlazeFace full-range (sparse) model shipped with the package."""
    return Path(str(resources.files("keras_fer") / "assets" / FULL_RANGE_MODEL))


def merge_detections(detections: Sequence[Detection], overlap: float = _OVERLAP,
                     kept: Sequence[Detection] = ()) -> List[Detection]:
    """Greedy suppression by score: drops a box when ``overlap`` of the smaller box of a pair
    lies inside a better-scored kept box (tiles cut faces, so IoU alone keeps halves).

    ``kept``: boxes that win over every one of ``detections`` (the whole-image passes' over
    the tiles': a face the whole image shows keeps that box, framed the same from one video
    frame to the next, and tiles only add faces it missed). Returns best score first.
    """
    kept = list(kept)
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
    return sorted(kept, key=lambda d: -d.score)


def tile_origins(length: int, side: int) -> List[int]:
    """Start offsets of tiles of ``side`` pixels, stride ``side // 2``, covering ``length``."""
    if length <= side:
        return [0]
    stride = max(side // 2, 1)
    starts = list(range(0, length - side, stride))
    return starts + [length - side]


def tile_sides(long_side: int, min_face: int, ratio: Optional[float] = None) -> List[int]:
    """Tile sides of the pyramid, smallest first: ``ratio * min_face``, doubled until a level
    reaches the faces the whole-image passes find (``long_side / ratio`` and up).

    BlazeFace finds a face reliably when it is at least ``1 / ratio`` of the window it looks
    at (see the module doc); tiles of side ``s`` with stride ``s / 2`` hold every face of
    ``s / ratio`` to ``s / 2`` wholly inside one tile, so for ``ratio >= 4`` the levels leave
    no gap. A photo no larger than ``ratio * min_face`` needs no tiles.
    """
    ratio = TILE_RATIO if ratio is None else float(ratio)
    side = int(round(ratio * min_face))
    sides: List[int] = []
    while side < long_side and (not sides or sides[-1] / 2 < long_side / ratio):
        sides.append(side)
        side *= 2
    return sides


def _shift(det: Detection, dx: int, dy: int, width: int, height: int) -> Detection:
    x, y, w, h = det.box
    x0, y0 = min(x + dx, width), min(y + dy, height)
    x1, y1 = min(x + dx + w, width), min(y + dy + h, height)
    return Detection((x0, y0, x1 - x0, y1 - y0), det.score, det.keypoints + np.float32([dx, dy]))


class GroupFaceDetector:
    """Short-range + full-range BlazeFace with tiling: every face of at least ``min_face`` px.

    Behaves like :class:`~keras_fer.data.face_detector.FaceDetector` (``detect``, ``close``,
    context manager); ``detect(image, margins=...)`` with explicit margins uses the
    short-range model alone (what keypoint refinement asks for on an upright face crop), at
    ``refine_input`` px, on crops of the geometry in ``refine_canvas``.

    Args:
        min_detection_confidence: score threshold in [0, 1] for both models.
        min_face: smallest face side, in image pixels, that must be found (the smallest tiles
            are ``TILE_RATIO * min_face``); smaller faces may still be found. Larger values
            mean fewer tiles (faster).
        backend: ``"litert"`` (default; :mod:`keras_fer.data.blazeface`, no MediaPipe) or
            ``"mediapipe"`` (the Tasks ``FaceDetector``).
        refine_input: with the LiteRT backend, the short-range model's input side for
            keypoint refinement (a multiple of 16; see :data:`REFINE_INPUT`); ``None``: its own
            128 px on the aligner's default 192 px canvas (as the MediaPipe backend always does).
    """

    def __init__(
        self,
        min_detection_confidence: float = 0.5,
        min_face: int = DEFAULT_MIN_FACE,
        backend: str = "litert",
        refine_input: Optional[int] = REFINE_INPUT,
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
        self.tiler = self.short
        self.refiner = self.short
        # (side, eye positions) of FaceAligner's refinement canvas; None: its default.
        self.refine_canvas = None
        if backend == "litert" and refine_input is not None:
            native = self.short.input_size
            side = REFINE_SIZE * int(refine_input) / native
            if refine_input != native:
                if side != int(side):
                    raise ValueError(f"refine_input must make a whole canvas of "
                                     f"{REFINE_SIZE} * refine_input / {native} px. "
                                     f"Received: refine_input={refine_input}")
                try:
                    self.refiner = make(min_detection_confidence, margins=(0.0,),
                                        input_size=int(refine_input))
                except BaseException:
                    self.short.close()
                    self.full.close()
                    raise
                self.refine_canvas = (int(side), refine_eye_positions(int(side)))

    def detect(
        self, image: np.ndarray, margins: Optional[Sequence[float]] = None
    ) -> List[Detection]:
        """Every face of a uint8 gray or RGB image, best score first."""
        if margins is not None:
            return self.refiner.detect(image, margins)
        image = _as_uint8_image(image)
        h, w = image.shape[:2]
        found = self.short.detect(image)
        side = max(h, w)
        if side <= TILE_RATIO * self.min_face:
            return merge_detections(found)  # small photo: the short range covers min_face
        whole = merge_detections(found + self.full.detect(image))
        found = []
        for tile_side in tile_sides(side, self.min_face):
            for y in tile_origins(h, tile_side):
                for x in tile_origins(w, tile_side):
                    tile = image[y : y + tile_side, x : x + tile_side]
                    found += [
                        _shift(d, x, y, w, h)
                        for d in self.tiler.detect(tile, margins=(0.0,))
                        if d.score >= self.tile_confidence
                        and min(d.box[2:]) >= _TILE_MIN_SIZE * self.min_face
                    ]
        return merge_detections(found, kept=whole)

    def close(self) -> None:
        """Releases the models."""
        self.short.close()
        self.full.close()
        if self.refiner is not self.short:
            self.refiner.close()

    def __enter__(self) -> "GroupFaceDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
