"""BlazeFace run directly with LiteRT: MediaPipe's face detection graph in NumPy.

:class:`LiteRTFaceDetector` is a drop-in for :class:`~keras_fer.data.face_detector.
FaceDetector` (same ``detect`` / ``close`` / margins / letterboxing) that runs the shipped
``.tflite`` BlazeFace models with ``ai_edge_litert`` and decodes them as MediaPipe's
``face_detection_{short,full}_range`` graphs do: SSD anchors (``SsdAnchorsCalculator``
settings of each graph), box and keypoint regression relative to the anchor centres
(``TensorsToDetectionsCalculator``, sigmoid scores clipped at +-100) and weighted
non-maximum suppression (IoU 0.3). It needs neither MediaPipe nor TensorFlow, and skips
MediaPipe's per-call graph overhead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from keras_fer.data.face_detector import (
    DEFAULT_MARGINS,
    Detection,
    checked_detector_args,
    detect_over_margins,
    margin_canvas,
)

# Per input size: (strides, anchors per cell for each stride). Short range (128 px): strides
# 8, 16, 16, 16 with two anchors each (aspect 1 + interpolated scale), the three 16s merged;
# full range (192 px): stride 4, one anchor (no interpolated scale).
_ANCHOR_LAYOUT: Dict[int, Tuple[Tuple[int, int], ...]] = {
    128: ((8, 2), (16, 6)),
    192: ((4, 1),),
}
_NMS_IOU = 0.3


def ssd_anchors(input_size: int, model_size: Optional[int] = None) -> np.ndarray:
    """float32 ``(N, 2)`` anchor centres (x, y) in [0, 1], MediaPipe's order.

    ``model_size``: the model's own input side, whose anchor layout is used, when the model
    runs at another ``input_size`` (a multiple of its largest stride; default: the same).
    """
    centres = []
    for stride, per_cell in _ANCHOR_LAYOUT[model_size or input_size]:
        cells = int(np.ceil(input_size / stride))
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], -1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou: float = _NMS_IOU
) -> List[Tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's WEIGHTED suppression: each cluster's box and keypoints are the
    score-weighted mean of its members; its score is the best member's."""
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    out = []
    remaining = np.arange(len(scores))
    while remaining.size:
        top = remaining[0]
        overlap = _iou(boxes[top], boxes[remaining]) > iou
        members = remaining[overlap]
        weights = scores[members][:, None]
        box = (boxes[members] * weights).sum(0) / weights.sum()
        kps = (keypoints[members] * weights[:, :, None]).sum(0) / weights.sum()
        out.append((box, kps, float(scores[top])))
        remaining = remaining[~overlap]
    return out


class LiteRTFaceDetector:
    """A BlazeFace ``.tflite`` (short- or full-range) run with LiteRT; see the module doc.

    Args:
        min_detection_confidence: score threshold in [0, 1].
        margins: as for ``FaceDetector``: margins tried in order until one finds a face.
        model_path: a BlazeFace model (128 px short-range or 192 px full-range input);
            default: the shipped short-range model.
        num_threads: LiteRT CPU threads.
        input_size: run the model at this square input instead of its own (the short-range
            model's convolutions take any multiple of its largest anchor stride, 16, and its
            box and keypoint offsets stay in input pixels; the full-range model cannot).
            Images are resized to it, so a face is found at the same pixel scale in a
            proportionally smaller window: the keypoint refinement's upright face crops at
            96 px (``GroupFaceDetector``), half the cost of 128.
    """

    def __init__(
        self,
        min_detection_confidence: float = 0.5,
        margins: Sequence[float] = DEFAULT_MARGINS,
        model_path: Optional[str | Path] = None,
        num_threads: int = 1,
        input_size: Optional[int] = None,
    ):
        from ai_edge_litert.interpreter import Interpreter

        model_path = checked_detector_args(min_detection_confidence, margins, model_path)
        self._interpreter = Interpreter(str(model_path), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        (inp,) = self._interpreter.get_input_details()
        self._input = inp["index"]
        model_size = int(inp["shape"][1])
        if model_size not in _ANCHOR_LAYOUT:
            raise ValueError(f"{model_path} is not a BlazeFace model (input {inp['shape']})")
        self.input_size = model_size if input_size is None else int(input_size)
        largest_stride = max(stride for stride, _ in _ANCHOR_LAYOUT[model_size])
        if self.input_size < largest_stride or self.input_size % largest_stride:
            raise ValueError(
                f"input_size must be a positive multiple of {largest_stride} for {model_path}. "
                f"Received: input_size={input_size}"
            )
        if self.input_size != model_size:
            try:
                self._interpreter.resize_tensor_input(
                    self._input, [1, self.input_size, self.input_size, 3]
                )
                self._interpreter.allocate_tensors()
            except RuntimeError as err:  # e.g. the full-range model's fixed reshapes
                raise ValueError(f"{model_path} cannot run at input_size={input_size}: "
                                 f"{str(err).splitlines()[0]}") from err
        outs = self._interpreter.get_output_details()
        self._boxes = next(o["index"] for o in outs if o["shape"][-1] == 16)
        self._scores = next(o["index"] for o in outs if o["shape"][-1] == 1)
        self._anchors = ssd_anchors(self.input_size, model_size)
        if len(self._anchors) != int(outs[0]["shape"][1]):
            raise ValueError(f"{model_path}: {outs[0]['shape'][1]} outputs for "
                             f"{len(self._anchors)} anchors at input_size={self.input_size}")
        self._tensor = np.zeros((1, self.input_size, self.input_size, 3), np.float32)
        self.min_detection_confidence = float(min_detection_confidence)
        self.margins = tuple(float(m) for m in margins)
        # Anchors whose raw logit is below this cannot reach the threshold: only the others'
        # scores are computed (a margin of 1e-3 keeps the float64 decision below exact).
        t = self.min_detection_confidence
        self._logit_floor = (-np.inf if t <= 0.0 else 36.0 if t >= 1.0
                             else float(np.log(t / (1.0 - t))) - 1e-3)

    def detect(
        self, image: np.ndarray, margins: Optional[Sequence[float]] = None
    ) -> List[Detection]:
        """Finds faces in a uint8 gray or RGB image; best score first (see FaceDetector)."""
        return detect_over_margins(self._detect_once, image,
                                   self.margins if margins is None else margins)

    def _detect_once(self, image: np.ndarray, margin: float) -> List[Detection]:
        if self._interpreter is None:
            raise RuntimeError("This LiteRTFaceDetector was closed; create a new one.")
        h, w = image.shape[:2]
        # A gray canvas is resized as one channel, then made RGB (the same values as resizing
        # its RGB copy, at a third of the work; cvtColor, because NumPy's broadcast of one
        # channel into three in the division below took 0.22 of its 0.24 ms); [-1, 1] is
        # written into a buffer kept between calls.
        canvas, side, top, left = margin_canvas(image, margin, rgb=False)
        size = self.input_size
        if side != size:
            canvas = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_LINEAR)
        if canvas.ndim == 2:
            canvas = cv2.cvtColor(canvas, cv2.COLOR_GRAY2RGB)
        np.divide(canvas, np.float32(127.5), out=self._tensor[0], dtype=np.float32)
        np.subtract(self._tensor, np.float32(1.0), out=self._tensor)
        self._interpreter.set_tensor(self._input, self._tensor)
        self._interpreter.invoke()
        logits = self._interpreter.get_tensor(self._scores)[0, :, 0]
        candidates = np.flatnonzero(logits >= self._logit_floor)
        if not candidates.size:
            return []
        logits = np.clip(logits[candidates].astype(np.float64), -100.0, 100.0)
        scores = 1.0 / (1.0 + np.exp(-logits))
        passed = scores >= self.min_detection_confidence
        if not passed.any():
            return []
        keep, scores = candidates[passed], scores[passed]
        raw = self._interpreter.get_tensor(self._boxes)[0, keep]
        anchors = self._anchors[keep]
        centre = raw[:, :2] / size + anchors
        half = raw[:, 2:4] / size / 2.0
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        keypoints = raw[:, 4:16].reshape(-1, 6, 2) / size + anchors[:, None, :]
        detections = []
        for box, kps, score in weighted_nms(boxes, keypoints, scores):
            x0, y0, x1, y1 = box * side - np.array([left, top, left, top])
            x0, x1 = int(min(max(x0, 0), w)), int(min(max(x1, 0), w))
            y0, y1 = int(min(max(y0, 0), h)), int(min(max(y1, 0), h))
            if x1 <= x0 or y1 <= y0:
                continue
            # Normalised keypoints are continuous coordinates; -0.5 moves them to OpenCV's
            # pixel-centre convention, as FaceDetector does.
            points = (kps * side - np.array([left, top]) - 0.5).astype(np.float32)
            detections.append(Detection((x0, y0, x1 - x0, y1 - y0), score, points))
        return detections

    def close(self) -> None:
        """Releases the interpreter; the detector cannot be used afterwards."""
        self._interpreter = None

    def __enter__(self) -> "LiteRTFaceDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
