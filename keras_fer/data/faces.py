"""Eye-based alignment of detected faces to fixed crops.

Detection lives in :mod:`keras_fer.data.face_detector` (its names are re-exported here).
:class:`FaceAligner` turns each detection
into a grayscale ``size`` x ``size`` uint8 crop through a similarity transform (rotation,
uniform scale, translation) that puts the two eye centres at fixed positions, and
:meth:`FaceAligner.align_records` does the same for a whole :class:`RecordTable`, recording
images without a face in ``table.skipped`` instead of raising.

The default eye positions come from running this detector on the already-cropped datasets
the models train on: mean eye centres at x = 0.29 / 0.69, y = 0.39 / 0.38 of the crop on
CK+48, and x = 0.31 / 0.67, y = 0.38 / 0.36 on FER2013; so faces aligned from raw photos
look like those crops.

MediaPipe is imported lazily, so already-cropped datasets can be resized with
``skip_detection=True`` without loading it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import List, Optional, Tuple

import cv2
import numpy as np

from keras_fer.data.face_detector import (  # noqa: F401 - re-exported, the public face API
    DEFAULT_MARGINS,
    KEYPOINT_NAMES,
    Detection,
    FaceDetector,
    _as_uint8_image,
    default_model_path,
)
from keras_fer.data.preprocess import ALIGNED_SIZE, resize_uint8
from keras_fer.data.records import RecordTable, Skipped

# (x, y) fractions of the crop for the image-left eye, then the image-right eye.
DEFAULT_EYE_POSITIONS = ((0.30, 0.38), (0.70, 0.38))
NO_FACE = "no face detected"
# Supersampling cap when the crop is much smaller than the face (see warp_face).
_MAX_SUPERSAMPLE = 8
# Keypoint refinement re-detects on an upright face in this canvas, eyes 0.2 of it apart:
# BlazeFace eye keypoints are off by up to ~8 degrees on tilted faces, and by ~2 after two
# refinement steps (measured on rotated ORL and astronaut images).
REFINE_SIZE = 192
_REFINE_EYES = ((0.4, 0.44), (0.6, 0.44))


def refine_eye_positions(side: int) -> Tuple[Tuple[float, float], Tuple[float, float]]:
    """Eye positions (fractions) of a ``side`` px refinement canvas holding the face at the same
    pixels, relative to its centre, as the default ``REFINE_SIZE`` canvas: less (or more)
    context around the same face, for a detector run at ``side / REFINE_SIZE`` of 128 px."""
    if side == REFINE_SIZE:
        return _REFINE_EYES
    half = (_REFINE_EYES[1][0] - _REFINE_EYES[0][0]) / 2 * REFINE_SIZE
    above = (0.5 - _REFINE_EYES[0][1]) * REFINE_SIZE
    centre = side / 2
    y = (centre - above) / side
    return ((centre - half) / side, y), ((centre + half) / side, y)


# keras_fer.Predictor's alignment: one refinement step moved this fraction of the way. Nearly
# as precise as two full steps (eyes of rotated and scaled faces within 0.0226 vs 0.0216 eye
# distances), the same expression accuracy on 5,300 labelled faces, one BlazeFace invoke less
# (FaceAligner's refine_gain; benchmarks/results/alignment_refine.md).
ONE_STEP_GAIN = 0.8


@dataclasses.dataclass(frozen=True)
class FaceResult:
    """A detected face and its aligned crop.

    Attributes:
        box: ``(x, y, w, h)`` integer box in original image pixels, clipped to the image.
        score: detector confidence in [0, 1].
        keypoints: float32 ``(6, 2)`` original-image pixel coordinates, ``KEYPOINT_NAMES``
            order (after refinement, see ``FaceAligner.refine_keypoints``).
        crop: uint8 ``(size, size)`` grayscale aligned face.
        transform: float64 ``(2, 3)`` affine matrix mapping original pixel coordinates to crop
            pixel coordinates (``crop = cv2.warpAffine(gray, transform, (size, size))``).
    """

    box: Tuple[int, int, int, int]
    score: float
    keypoints: np.ndarray
    crop: np.ndarray
    transform: np.ndarray

    @property
    def aligned_keypoints(self) -> np.ndarray:
        """Keypoints mapped into the crop, float32 ``(6, 2)``."""
        return apply_transform(self.transform, self.keypoints)


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 gray ``(H, W)``, ``(H, W, 1)``, RGB or RGBA image -> uint8 ``(H, W)``."""
    image = _as_uint8_image(image)
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def eye_transform(
    eyes: np.ndarray,
    size: int = ALIGNED_SIZE,
    eye_positions: Tuple[Tuple[float, float], Tuple[float, float]] = DEFAULT_EYE_POSITIONS,
) -> np.ndarray:
    """Similarity transform that maps two eye centres onto fixed crop positions.

    Args:
        eyes: ``(2, 2)`` pixel coordinates of the image-left eye then the image-right eye.
        size: crop side in pixels.
        eye_positions: target ``(x, y)`` of the same two eyes as fractions of the crop.

    Returns:
        float64 ``(2, 3)`` matrix ``[[a, -b, tx], [b, a, ty]]`` for ``cv2.warpAffine``.
    """
    eyes = np.asarray(eyes, dtype=np.float64)
    if eyes.shape != (2, 2):
        raise ValueError(f"Expected eyes of shape (2, 2). Received shape={eyes.shape}")
    # Pixel-centre convention: fraction f of the crop is at f * size - 0.5.
    targets = np.asarray(eye_positions, dtype=np.float64) * size - 0.5
    src = complex(*eyes[0]), complex(*eyes[1])
    dst = complex(*targets[0]), complex(*targets[1])
    if abs(src[1] - src[0]) < 1e-6:
        raise ValueError(f"The two eye positions coincide. Received eyes={eyes.tolist()}")
    # As complex numbers a similarity is z -> a z + t with a = scale * exp(i angle).
    a = (dst[1] - dst[0]) / (src[1] - src[0])
    t = dst[0] - a * src[0]
    return np.array([[a.real, -a.imag, t.real], [a.imag, a.real, t.imag]])


def apply_transform(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Maps ``(N, 2)`` points through a ``(2, 3)`` affine matrix; returns float32 ``(N, 2)``."""
    points = np.asarray(points, dtype=np.float64)
    return (points @ transform[:, :2].T + transform[:, 2]).astype(np.float32)


def warp_face(image: np.ndarray, transform: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """Applies ``transform`` to a uint8 gray or RGB image, giving a ``(size, size[, 3])`` crop.

    When the face shrinks by more than 2x, the crop is rendered ``k`` times larger and
    area-averaged down, because bilinear sampling alone would alias.
    """
    scale = math.hypot(transform[0, 0], transform[1, 0])
    k = int(min(max(math.floor(1.0 / scale), 1), _MAX_SUPERSAMPLE)) if scale > 0 else 1
    # Pixel centres of the k-times crop: u_k = k * u + (k - 1) / 2.
    big = transform * k
    big[:, 2] += (k - 1) / 2.0
    out = cv2.warpAffine(
        image, big, (size * k, size * k), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    if k > 1:
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)
    return out


class FaceAligner:
    """Detects faces and warps each to an eye-aligned grayscale crop.

    Args:
        size: crop side in pixels (default ``preprocess.ALIGNED_SIZE``).
        eye_positions: target ``(x, y)`` fractions of the image-left and image-right eye.
        detector: a :class:`FaceDetector` to use; by default one is created on first use
            with ``min_detection_confidence`` (and closed by :meth:`close`).
        min_detection_confidence: threshold for the detector created here.
        refine_steps: how many times to re-detect the keypoints on the provisionally aligned
            face (more accurate eyes on tilted faces); 0 uses the first detection as is.
        refine_gain: each refinement step moves the keypoints this fraction of the way to the
            re-detected ones. The re-detection over-corrects (the step after it moves back by
            10-20% of its move: measured on CK+, FER+ and ORL faces), so one step at
            :data:`ONE_STEP_GAIN` lands about where two full steps do
            (``benchmarks/bench_alignment.py``).
    """

    def __init__(
        self,
        size: int = ALIGNED_SIZE,
        eye_positions: Tuple[Tuple[float, float], Tuple[float, float]] = DEFAULT_EYE_POSITIONS,
        detector: Optional[FaceDetector] = None,
        min_detection_confidence: float = 0.5,
        refine_steps: int = 2,
        refine_gain: float = 1.0,
    ):
        if size < 8:
            raise ValueError(f"size must be >= 8 pixels. Received: size={size}")
        (lx, ly), (rx, ry) = eye_positions
        if refine_steps < 0:
            raise ValueError(f"refine_steps must be >= 0. Received: refine_steps={refine_steps}")
        if not 0.0 < refine_gain <= 1.0:
            raise ValueError(f"refine_gain must be in (0, 1]. Received: refine_gain={refine_gain}")
        if not (0 <= lx < rx <= 1 and 0 <= ly <= 1 and 0 <= ry <= 1):
            raise ValueError(
                "eye_positions must be ((x_left, y), (x_right, y)) fractions in [0, 1] with "
                f"x_left < x_right. Received: eye_positions={eye_positions}"
            )
        self.size = int(size)
        self.eye_positions = ((float(lx), float(ly)), (float(rx), float(ry)))
        self.min_detection_confidence = float(min_detection_confidence)
        self.refine_steps = int(refine_steps)
        self.refine_gain = float(refine_gain)
        self._detector = detector
        self._owns_detector = detector is None

    @property
    def detector(self) -> FaceDetector:
        """The face detector (created on first access)."""
        if self._detector is None:
            self._detector = FaceDetector(self.min_detection_confidence)
        return self._detector

    def refine_keypoints(self, image: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
        """Re-detects a face on its provisionally upright version; returns refined keypoints.

        Args:
            image: the uint8 gray or RGB image the keypoints belong to.
            keypoints: float ``(6, 2)`` keypoints of one face in ``image`` pixels.

        Returns:
            float32 ``(6, 2)`` keypoints in ``image`` pixels (the input when re-detection
            finds no face near the expected place).

        The upright face is a ``REFINE_SIZE`` (192) px canvas, eyes 0.2 of it apart, unless
        the detector has a ``refine_canvas`` attribute ``(side, eye_positions)``
        (``GroupFaceDetector``: 144 px for its short-range model run at 96 px).
        """
        image = _as_uint8_image(image)
        keypoints = np.asarray(keypoints, dtype=np.float32)
        side, eyes = getattr(self.detector, "refine_canvas", None) or (REFINE_SIZE, _REFINE_EYES)
        expected = (np.mean(eyes, axis=0) * side) - 0.5
        eye_distance = (eyes[1][0] - eyes[0][0]) * side
        for _ in range(self.refine_steps):
            transform = eye_transform(keypoints[:2], side, eyes)
            canvas = warp_face(image, transform, side)
            found = self.detector.detect(canvas, margins=(0.0,))
            # The face we follow sits at the canvas centre; anything farther than the eye
            # distance away is another face.
            shift = [float(np.linalg.norm(d.keypoints[:2].mean(0) - expected)) for d in found]
            if not found or min(shift) > eye_distance:
                break
            best = found[int(np.argmin(shift))]
            redetected = apply_transform(cv2.invertAffineTransform(transform), best.keypoints)
            if self.refine_gain == 1.0:
                keypoints = redetected
            else:
                keypoints = keypoints + np.float32(self.refine_gain) * (redetected - keypoints)
        return keypoints

    def align(self, image: np.ndarray, detection: Detection) -> FaceResult:
        """Aligns one detection of ``image`` (uint8 gray or RGB) to a :class:`FaceResult`."""
        keypoints = self.refine_keypoints(image, detection.keypoints)
        transform = eye_transform(keypoints[:2], self.size, self.eye_positions)
        return FaceResult(
            box=detection.box,
            score=detection.score,
            keypoints=keypoints,
            crop=warp_face(to_gray(image), transform, self.size),
            transform=transform,
        )

    def align_faces(self, image: np.ndarray) -> List[FaceResult]:
        """Detects and aligns every face; ``[]`` when there is none.

        Args:
            image: uint8 grayscale ``(H, W)`` or RGB ``(H, W, 3)`` image of any size.

        Returns:
            One :class:`FaceResult` per face, best score first.
        """
        return [self.align(image, d) for d in self.detector.detect(image)]

    def align_largest(self, image: np.ndarray) -> Optional[FaceResult]:
        """Aligns the face with the largest box, or returns ``None`` when there is none."""
        detections = self.detector.detect(image)
        if not detections:
            return None
        return self.align(image, max(detections, key=lambda d: (d.area, d.score)))

    def align_records(
        self, table: RecordTable, skip_detection: bool = False, progress: bool = True
    ) -> RecordTable:
        """Aligns every image of a record table.

        Args:
            table: records with grayscale uint8 images (dense or an object array).
            skip_detection: for already-cropped faces (CK+48, FER+): only resize each image
                to ``size`` x ``size``.
            progress: show a tqdm progress bar.

        Returns:
            A new table whose ``images`` are uint8 ``(M, size, size)``; images without a face
            are dropped and listed in ``skipped`` with reason ``NO_FACE``.
        """
        from tqdm import tqdm

        crops, kept, skipped = [], [], []
        desc = f"{'resizing' if skip_detection else 'aligning'} {table.name or 'faces'}"
        for i, image in enumerate(tqdm(table.images, desc=desc, disable=not progress)):
            if skip_detection:
                crops.append(resize_uint8(to_gray(image)[None], self.size)[0])
                kept.append(i)
                continue
            face = self.align_largest(image)
            if face is None:
                skipped.append(Skipped(str(table.path[i]), NO_FACE))
            else:
                crops.append(face.crop)
                kept.append(i)
        out = table.subset(np.asarray(kept, dtype=np.int64))
        out.images = np.stack(crops) if crops else np.zeros((0, self.size, self.size), np.uint8)
        out.skipped.extend(skipped)
        return out

    def close(self) -> None:
        """Closes the detector if this aligner created it."""
        if self._owns_detector and self._detector is not None:
            self._detector.close()
            self._detector = None

    def __enter__(self) -> "FaceAligner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@functools.lru_cache(maxsize=1)
def default_aligner() -> FaceAligner:
    """A shared :class:`FaceAligner` with default settings (created once per process)."""
    return FaceAligner()


def align_faces(image: np.ndarray, aligner: Optional[FaceAligner] = None) -> List[FaceResult]:
    """Every face of ``image`` aligned (``[]`` when none); see :meth:`FaceAligner.align_faces`."""
    return (aligner or default_aligner()).align_faces(image)


def align_largest(image: np.ndarray, aligner: Optional[FaceAligner] = None) -> Optional[FaceResult]:
    """The largest face aligned, or ``None``; see :meth:`FaceAligner.align_largest`."""
    return (aligner or default_aligner()).align_largest(image)


def align_records(
    table: RecordTable,
    skip_detection: bool = False,
    aligner: Optional[FaceAligner] = None,
    progress: bool = True,
) -> RecordTable:
    """Aligns a record table; see :meth:`FaceAligner.align_records`."""
    return (aligner or default_aligner()).align_records(table, skip_detection, progress)
