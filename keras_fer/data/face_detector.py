"""Face detection: MediaPipe BlazeFace in image mode on the CPU, without TensorFlow.

:class:`FaceDetector` runs a BlazeFace ``.tflite`` model shipped in ``keras_fer/assets``
through the MediaPipe Tasks face detector and returns :class:`Detection` boxes and six
keypoints in original image pixels. :mod:`keras_fer.data.faces` aligns them.

MediaPipe's Python package imports TensorFlow when it is installed (only to open files
through ``tf.io.gfile`` and for its docs tooling, with a fallback when TensorFlow is absent);
:func:`import_mediapipe` hides TensorFlow during that import so detection costs no
TensorFlow start-up (~2 s) and works in an install without it.
"""

from __future__ import annotations

import dataclasses
import sys
from importlib import resources
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

# MediaPipe's keypoint order; "right"/"left" are the subject's, so the right eye is the one on
# the image's left in an unmirrored photo.
KEYPOINT_NAMES = (
    "right_eye",
    "left_eye",
    "nose_tip",
    "mouth_center",
    "right_ear_tragion",
    "left_ear_tragion",
)
# Margins (fraction of the longer side added on every side) tried in order: the short-range
# model misses faces that fill the whole frame (tight crops) but also faces that become too
# small, so a padded retry runs only when the plain letterboxed image gives nothing.
DEFAULT_MARGINS = (0.0, 0.25)


def import_mediapipe():
    """Imports ``mediapipe`` (and the Tasks face detector) without importing TensorFlow.

    When TensorFlow is already loaded it is left alone and used as MediaPipe would.
    """
    if "mediapipe.tasks.python.vision" in sys.modules or "tensorflow" in sys.modules:
        import mediapipe
        import mediapipe.tasks.python.vision  # noqa: F401

        return mediapipe
    # A None entry makes "import tensorflow" raise ModuleNotFoundError, which MediaPipe
    # catches and replaces with its TensorFlow-free fallbacks.
    sys.modules["tensorflow"] = None
    try:
        import mediapipe
        import mediapipe.tasks.python.vision  # noqa: F401
    finally:
        if sys.modules.get("tensorflow", 0) is None:
            del sys.modules["tensorflow"]
    return mediapipe


def default_model_path() -> Path:
    """Path of the BlazeFace short-range model shipped with the package."""
    return Path(str(resources.files("keras_fer") / "assets" / "face_detection_short_range.tflite"))


def checked_detector_args(min_detection_confidence: float, margins: Sequence[float],
                          model_path: Optional[str | Path]) -> Path:
    """Validates a detector's settings (MediaPipe's or LiteRT's); returns the model's path
    (the shipped short-range model when ``model_path`` is ``None``)."""
    if not 0.0 <= min_detection_confidence <= 1.0:
        raise ValueError(
            "min_detection_confidence must be in [0, 1]. "
            f"Received: min_detection_confidence={min_detection_confidence}"
        )
    if not margins or any(m < 0 for m in margins):
        raise ValueError(f"margins must be non-empty and >= 0. Received: margins={margins}")
    model_path = Path(model_path) if model_path is not None else default_model_path()
    if not model_path.is_file():
        raise FileNotFoundError(f"Face detection model not found: {model_path}")
    return model_path


def margin_canvas(
    image: np.ndarray, margin: float, rgb: bool = True
) -> Tuple[np.ndarray, int, int, int]:
    """``image`` centred on a square canvas ``margin`` x its longer side wider on each side,
    borders replicated (BlazeFace finds faces that fill the frame this way). A square image
    with no margin is returned as is (no copy).

    Args:
        rgb: convert a gray canvas to RGB (MediaPipe takes RGB only); with ``False`` a gray
            image stays gray (the LiteRT detector resizes one channel, then repeats it).

    Returns:
        ``(canvas, side, top, left)``: the canvas, its side and the image's offset in it.
    """
    h, w = image.shape[:2]
    side = int(round(max(h, w) * (1.0 + 2.0 * margin)))
    top, left = (side - h) // 2, (side - w) // 2
    if side == h == w:
        canvas = image
    else:
        canvas = cv2.copyMakeBorder(
            image, top, side - h - top, left, side - w - left, cv2.BORDER_REPLICATE
        )
    if rgb and canvas.ndim == 2:
        canvas = cv2.cvtColor(canvas, cv2.COLOR_GRAY2RGB)
    return canvas, side, top, left


@dataclasses.dataclass(frozen=True)
class Detection:
    """One face found by :class:`FaceDetector`, in original image pixels.

    Attributes:
        box: ``(x, y, w, h)`` integer box, clipped to the image.
        score: detector confidence in [0, 1].
        keypoints: float32 ``(6, 2)`` (x, y) pixel coordinates (pixel centres at integers), in
            ``KEYPOINT_NAMES`` order; may lie slightly outside the image.
    """

    box: Tuple[int, int, int, int]
    score: float
    keypoints: np.ndarray

    @property
    def area(self) -> int:
        """Box area in pixels."""
        return self.box[2] * self.box[3]


def _as_uint8_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"Expected a uint8 image. Received dtype={image.dtype}")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 3)):
        raise ValueError(
            f"Expected a grayscale (H, W) or RGB (H, W, 3) image. Received shape={image.shape}"
        )
    if min(image.shape[:2]) < 1:
        raise ValueError(f"Expected a non-empty image. Received shape={image.shape}")
    return image


def detect_over_margins(detect_once, image: np.ndarray,
                        margins: Sequence[float]) -> List[Detection]:
    """``detect_once(image, margin)`` for each margin in order until one finds a face: those
    faces, best score first (``[]`` if none does). ``image`` is checked and made uint8 first."""
    image = _as_uint8_image(image)
    for margin in margins:
        found = detect_once(image, margin)
        if found:
            return sorted(found, key=lambda d: -d.score)
    return []


class FaceDetector:
    """MediaPipe BlazeFace short-range detector in image mode on the CPU.

    Close it (or use it as a context manager): a detector still open when the interpreter
    exits makes MediaPipe print an ignored exception from its ``__del__``.

    Images are letterboxed to a square (edge pixels replicated) before detection, so the
    model's square input does not squash faces in tall or wide images.

    Args:
        min_detection_confidence: score threshold in [0, 1].
        margins: margins to try in order, each a fraction of the longer image side added on
            every side; the first margin that yields a face wins.
        model_path: a BlazeFace ``.tflite`` file; default :func:`default_model_path`.
    """

    def __init__(
        self,
        min_detection_confidence: float = 0.5,
        margins: Sequence[float] = DEFAULT_MARGINS,
        model_path: Optional[str | Path] = None,
    ):
        model_path = checked_detector_args(min_detection_confidence, margins, model_path)
        import_mediapipe()
        from mediapipe.tasks.python.core.base_options import BaseOptions
        from mediapipe.tasks.python.vision import FaceDetector as MpFaceDetector
        from mediapipe.tasks.python.vision import FaceDetectorOptions

        options = FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            min_detection_confidence=float(min_detection_confidence),
        )
        self._detector = MpFaceDetector.create_from_options(options)
        self.min_detection_confidence = float(min_detection_confidence)
        self.margins = tuple(float(m) for m in margins)

    def detect(
        self, image: np.ndarray, margins: Optional[Sequence[float]] = None
    ) -> List[Detection]:
        """Finds faces in a uint8 grayscale or RGB image of any size.

        Args:
            image: uint8 ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA.
            margins: overrides the detector's ``margins`` for this call.

        Returns:
            The detections (possibly empty), best score first.
        """
        return detect_over_margins(self._detect_once, image,
                                   self.margins if margins is None else margins)

    def _detect_once(self, image: np.ndarray, margin: float) -> List[Detection]:
        mp = import_mediapipe()

        if self._detector is None:
            raise RuntimeError("This FaceDetector was closed; create a new one.")
        h, w = image.shape[:2]
        # The model's graph takes RGB only: a GRAY8 mp.Image fails inside MediaPipe.
        canvas, side, top, left = margin_canvas(image, margin)
        mp_image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(canvas))
        result = self._detector.detect(mp_image)
        detections = []
        for det in result.detections:
            box = det.bounding_box
            x0 = min(max(box.origin_x - left, 0), w)
            y0 = min(max(box.origin_y - top, 0), h)
            x1 = min(max(box.origin_x + box.width - left, 0), w)
            y1 = min(max(box.origin_y + box.height - top, 0), h)
            if x1 <= x0 or y1 <= y0:
                continue
            # Normalised keypoints are continuous coordinates (pixel edges at integers);
            # -0.5 moves them to OpenCV's pixel-centre convention used by warpAffine.
            keypoints = np.array(
                [[k.x * side - left - 0.5, k.y * side - top - 0.5] for k in det.keypoints],
                dtype=np.float32,
            )
            score = det.categories[0].score if det.categories else 0.0
            detections.append(Detection((x0, y0, x1 - x0, y1 - y0), float(score), keypoints))
        return detections

    def close(self) -> None:
        """Releases the MediaPipe graph; the detector cannot be used afterwards."""
        if self._detector is not None:
            self._detector.close()
            self._detector = None

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


