"""TFLite variants of an inference model and a LiteRT runner.

Conversion goes through a float SavedModel of the model (``from_keras_model`` targets
``tf.keras`` models), with a dynamic batch dimension. Variants:

- ``float32``: no optimisation;
- ``float16``: float16 weights, float compute on CPU;
- ``dynamic``: int8 weights, activations quantised on the fly;
- ``int8``: full integer kernels calibrated on a representative set of training faces,
  float32 input/output (drop-in for the float model);
- ``int8_io``: the same with int8 input and output tensors (for integer-only accelerators);
  :class:`LiteRTClassifier` applies the quantisation parameters.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from keras_fer.data.preprocess import INPUT_SIZE, to_model_input

VARIANTS = ("float32", "float16", "dynamic", "int8", "int8_io")
FACE_SHAPE = (INPUT_SIZE, INPUT_SIZE, 1)


def as_model_input(faces: np.ndarray) -> np.ndarray:
    """uint8 faces ``(N, H, W[, 1])`` -> float32 ``(N, 48, 48, 1)``; float input passes through.

    Float arrays must already be model inputs (``(N, 48, 48, 1)`` in [0, 1]).
    """
    faces = np.asarray(faces)
    if faces.dtype == np.uint8:
        if faces.ndim == 4 and faces.shape[-1] == 1:
            faces = faces[..., 0]
        return to_model_input(faces)
    if faces.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 1):
        raise ValueError(
            "Float faces must be model inputs (N, 48, 48, 1) in [0, 1]; pass aligned uint8 "
            f"faces otherwise. Received dtype={faces.dtype}, shape={faces.shape}"
        )
    return faces.astype(np.float32, copy=False)


def representative_dataset(
    faces: np.ndarray,
    max_samples: int = 200,
    seed: int = 0,
    input_shape: tuple[int, int, int] = FACE_SHAPE,
):
    """Calibration generator for the converter: up to ``max_samples`` faces, one per step.

    For another ``input_shape`` than the expression models' ``(48, 48, 1)``, ``faces`` must
    already be float model inputs ``(N, *input_shape)``.
    """
    if tuple(input_shape) == FACE_SHAPE:
        x = as_model_input(faces)
    else:
        x = np.asarray(faces, np.float32)
        if x.shape[1:] != tuple(input_shape):
            raise ValueError(
                f"Representative inputs must have shape (N, {', '.join(map(str, input_shape))})."
                f" Received shape={x.shape}"
            )
    if len(x) == 0:
        raise ValueError("The representative dataset is empty.")
    order = np.random.default_rng(seed).permutation(len(x))[:max_samples]

    def gen() -> Iterable[list]:
        for i in order:
            yield [x[i : i + 1]]

    return gen


def write_float_savedmodel(
    model, directory: str, input_shape: tuple[int, int, int] = FACE_SHAPE
) -> None:
    """SavedModel whose only signature is ``image (None, *input_shape) -> model output``.

    Converting from a SavedModel freezes the Keras 3 variables; a bare concrete function
    keeps them as resource reads that the int8 calibrator cannot run.
    """
    import keras
    import tensorflow as tf

    spec = tf.TensorSpec((None, *input_shape), tf.float32, name="image")
    if isinstance(model, keras.Model):
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda image: model(image, training=False), [spec])
        archive.write_out(directory, verbose=False)
    else:
        # tf_keras (QAT / pruned) models: a bare module holding the variables saves in a
        # fraction of the time tf_keras' own SavedModel serialisation takes.
        root = tf.Module()
        root.model_variables = list(model.variables)
        fn = tf.function(lambda image: model(image, training=False), input_signature=[spec])
        tf.saved_model.save(root, directory, signatures={"serving_default": fn})


def convert(
    model,
    variant: str,
    out_path: str | Path,
    representative_faces: np.ndarray | None = None,
    input_shape: tuple[int, int, int] = FACE_SHAPE,
) -> Path:
    """Converts ``model`` to the TFLite ``variant`` and writes it to ``out_path``.

    Args:
        model: a Keras 3 (TensorFlow backend) or tf_keras inference model.
        variant: one of :data:`VARIANTS`.
        out_path: the ``.tflite`` file to write.
        representative_faces: training faces (uint8 aligned or float model inputs) for the
            ``int8``/``int8_io`` calibration.
        input_shape: ``(H, W, C)`` of the model's float input (see
            :func:`representative_dataset` for other shapes than the default).

    Returns:
        ``out_path`` as a ``Path``.
    """
    import tensorflow as tf

    if variant not in VARIANTS:
        raise ValueError(f"Unknown TFLite variant {variant!r}; expected one of {VARIANTS}")
    if variant in ("int8", "int8_io") and representative_faces is None:
        raise ValueError(f"TFLite variant {variant!r} needs representative_faces.")
    with tempfile.TemporaryDirectory() as tmp:
        write_float_savedmodel(model, tmp, input_shape)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if variant != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if variant == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif variant in ("int8", "int8_io"):
            converter.representative_dataset = representative_dataset(
                representative_faces, input_shape=input_shape
            )
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if variant == "int8_io":
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        flatbuffer = converter.convert()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(flatbuffer)
    return out_path


# Faces per interpreter invocation in LiteRTClassifier.predict (bounds the tensor arena).
MAX_BATCH = 256


class LiteRTClassifier:
    """Runs a keras-fer ``.tflite`` classifier (or any one-input, one-output model, such as
    the face embedding network) with ``ai_edge_litert``.

    Args:
        path: the ``.tflite`` file.
        num_threads: interpreter threads (1 for per-face latency numbers).
    """

    def __init__(self, path: str | Path, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self._interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batch = int(self._input["shape"][0])

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    @property
    def num_classes(self) -> int:
        return int(self._output["shape"][-1])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Float32 ``(B, 48, 48, 1)`` in [0, 1] -> float32 probabilities ``(B, K)``.

        Other models take their own input shape (``(B, 150, 150, 3)`` for the face network).

        Runs at most :data:`MAX_BATCH` faces per invocation: the interpreter allocates every
        intermediate tensor for the whole batch (a depth-40 DenseNet on 3,000 faces needed
        over 20 GB).
        """
        x = np.asarray(x, np.float32)
        expected = tuple(int(d) for d in self._input["shape"][1:])
        if x.ndim != 4 or x.shape[1:] != expected:
            raise ValueError(
                f"Expected (B, {', '.join(map(str, expected))}) float input. "
                f"Received shape={x.shape}"
            )
        if len(x) > MAX_BATCH:
            return np.concatenate([self._invoke(x[i : i + MAX_BATCH])
                                   for i in range(0, len(x), MAX_BATCH)])
        return self._invoke(x)

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        if len(x) != self._batch:
            self._interpreter.resize_tensor_input(self._input["index"], list(x.shape))
            self._interpreter.allocate_tensors()
            self._input = self._interpreter.get_input_details()[0]
            self._output = self._interpreter.get_output_details()[0]
            self._batch = len(x)
        self._interpreter.set_tensor(self._input["index"], _quantize(x, self._input))
        self._interpreter.invoke()
        return _dequantize(self._interpreter.get_tensor(self._output["index"]), self._output)

    def predict_faces(self, faces: np.ndarray) -> np.ndarray:
        """Aligned uint8 faces ``(N, H, W)`` -> probabilities ``(N, K)``."""
        return self.predict(as_model_input(faces))


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return x
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    q = np.round(x / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.dtype(detail["dtype"]) == np.float32:
        return y.copy()
    scale, zero_point = detail["quantization"]
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)
