"""``keras_fer.Predictor``: face detection + alignment + expression classification in one object.

A :class:`Predictor` holds a classifier (an exported SavedModel, run through its
``serving_faces`` signature, or a ``.tflite`` file, run with LiteRT) and a MediaPipe face
aligner. ``predict_image`` takes a photo of any size and returns one dict per face::

    {"box": [x, y, w, h], "score": 0.93, "class": "happiness", "class_id": 4,
     "probabilities": {"anger": 0.01, ...}}

Without a model path the shipped default (:mod:`keras_fer.inference.defaults`, a ``.tflite``
file) is used. With a ``.tflite`` model nothing here imports TensorFlow or Keras.

Class names come from the SavedModel (its ``class_names`` signature), from a text file next to
a ``.tflite`` file (see :func:`tflite_class_names_path`; one name per line), or from the
``class_names`` argument, which wins.

Probabilities assume equally likely classes by default (``prior="balanced"``): a model that
ships a ``class_prior.json`` has its training set's class frequencies divided out as that
file says (:mod:`keras_fer.inference.prior`); ``prior="training"`` gives the model's own.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from keras_fer.data.face_search import DEFAULT_MIN_FACE
from keras_fer.data.faces import ONE_STEP_GAIN, FaceAligner, FaceDetector, FaceResult
from keras_fer.data.imageio import ImageReadError, read_rgb, to_8bit
from keras_fer.inference.defaults import DEFAULT_TTA, TTAS
from keras_fer.inference.prior import PRIORS, load_prior

CLASS_NAMES_FILE = "class_names.txt"
CLASSIFY_BATCH = 256  # faces per model call in Predictor.classify
_TFLITE_IDENTIFIER = b"TFL3"  # FlatBuffer file identifier at bytes 4-8 of every .tflite
ImageLike = Union[str, "os.PathLike[str]", np.ndarray, "PIL.Image.Image"]  # noqa: F821


def as_image_array(image: ImageLike) -> np.ndarray:
    """A path, PIL image or uint8/uint16 array -> uint8 ``(H, W)`` gray or ``(H, W, 3)`` RGB."""
    if isinstance(image, (str, os.PathLike)):
        return read_rgb(image)
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        return np.asarray(to_8bit(image).convert("RGB"), dtype=np.uint8)
    array = np.asarray(image)
    if array.dtype == np.uint16:  # scaled like a 16-bit file, not clipped
        array = np.round(array / 257.0).astype(np.uint8)
    if array.dtype != np.uint8:
        raise ValueError(f"Expected a uint8 (or uint16) image array. Received dtype={array.dtype}")
    if array.ndim == 3 and array.shape[-1] in (1, 4):
        array = array[..., 0] if array.shape[-1] == 1 else array[..., :3]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)):
        raise ValueError(
            f"Expected a gray (H, W) or RGB (H, W, 3) image. Received shape={array.shape}"
        )
    return array


def tflite_class_names_path(tflite_path: Union[str, Path]) -> Optional[Path]:
    """The class-names file of a ``.tflite`` file, or ``None`` when there is none.

    Looks for ``<name>.class_names.txt``, then ``class_names.txt`` in the same folder, then
    the sibling SavedModel's names in ``export_model``'s layout (``<out>/tflite/*.tflite``
    next to ``<out>/savedmodel/assets.extra/class_names.txt``).
    """
    tflite_path = Path(tflite_path)
    for candidate in (
        tflite_path.with_name(tflite_path.stem + "." + CLASS_NAMES_FILE),
        tflite_path.with_name(CLASS_NAMES_FILE),
        tflite_path.parent.parent / "savedmodel" / "assets.extra" / CLASS_NAMES_FILE,
    ):
        if candidate.is_file():
            return candidate
    return None


class ModelLoadError(ValueError):
    """A model file or folder that exists but cannot be loaded; the message names it."""


def _first_line(err: BaseException, limit: int = 300) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def check_model_path(model_path: Union[str, Path]) -> Path:
    """Cheap checks of a model path (no model loaded); returns the path to load.

    Raises:
        FileNotFoundError: nothing at ``model_path``.
        ModelLoadError: a file that is not a ``.tflite`` model, or a folder that is not a
            SavedModel (or TF Serving model base).
    """
    model_path = Path(model_path)
    if not model_path.exists():
        raise FileNotFoundError(f"Model not found: {model_path} (give a SavedModel folder, "
                                "e.g. saved_models/expression_ferplus_resnet18/1, or a "
                                ".tflite file; with none, the default model is used)")
    if model_path.is_dir():
        try:
            return resolve_saved_model_dir(model_path)
        except FileNotFoundError as err:
            raise ModelLoadError(str(err)) from err
    if model_path.suffix != ".tflite":
        raise ModelLoadError(
            f"{model_path}: model_path must be a SavedModel directory or a .tflite file"
        )
    with open(model_path, "rb") as f:
        head = f.read(8)
    if head[4:8] != _TFLITE_IDENTIFIER:
        raise ModelLoadError(f"{model_path} is not a TFLite model (corrupt or truncated file)")
    return model_path


def resolve_saved_model_dir(path: Union[str, Path]) -> Path:
    """A SavedModel directory, or the newest ``<version>/`` of a TF Serving model base."""
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    versions = sorted(int(p.name) for p in path.iterdir() if p.name.isdigit() and p.is_dir())
    for version in reversed(versions):
        if (path / str(version) / "saved_model.pb").is_file():
            return path / str(version)
    raise FileNotFoundError(
        f"{path} is neither a SavedModel directory (no saved_model.pb) nor a TF Serving model "
        "base with integer version folders."
    )


class _SavedModelClassifier:
    """The ``serving_faces`` signature of a keras-fer SavedModel."""

    def __init__(self, path: Path, num_threads: Optional[int]):
        import tensorflow as tf

        from keras_fer.export.savedmodel import (
            CLASS_NAMES_ENDPOINT,
            FACES_INPUT,
            SERVING_FACES,
        )

        if num_threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(num_threads)
                tf.config.threading.set_inter_op_parallelism_threads(num_threads)
            except RuntimeError:
                warnings.warn(
                    f"num_threads={num_threads} ignored for the SavedModel: TensorFlow's "
                    "runtime was already initialised in this process."
                )
        self.path = resolve_saved_model_dir(path)
        self._tf = tf
        self._loaded = tf.saved_model.load(str(self.path))
        if SERVING_FACES not in self._loaded.signatures:
            raise ValueError(
                f"SavedModel {self.path} has no '{SERVING_FACES}' signature (found "
                f"{sorted(self._loaded.signatures)}); export it with keras_fer.export."
            )
        self._signature = self._loaded.signatures[SERVING_FACES]
        self._input = FACES_INPUT
        names = self._loaded.signatures[CLASS_NAMES_ENDPOINT]()["class_names"].numpy()
        self.class_names = [n.decode("utf-8") for n in names]

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        out = self._signature(**{self._input: self._tf.constant(faces[..., None])})
        return out["probabilities"].numpy()


class _TFLiteClassifier:
    """A keras-fer ``.tflite`` classifier run by ``export.tflite.LiteRTClassifier``."""

    def __init__(self, path: Path, num_threads: int):
        from keras_fer.export.tflite import LiteRTClassifier

        self.path = path
        self._runner = LiteRTClassifier(path, num_threads=num_threads)
        sidecar = tflite_class_names_path(path)
        self.class_names = sidecar.read_text().splitlines() if sidecar else None

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        return self._runner.predict_faces(faces)


class Predictor:
    """Detects, aligns and classifies every face of an image.

    Args:
        model_path: an exported SavedModel directory (or a TF Serving model base, whose newest
            version is used) or a ``.tflite`` file; default: the shipped default model.
        detector: a face detector to share (``FaceDetector`` or ``GroupFaceDetector``); by
            default the predictor creates a ``GroupFaceDetector`` (and :meth:`close` releases
            it).
        min_confidence: face detection threshold in [0, 1] for the detector created here.
        num_threads: CPU threads for the classifier (default: all cores). For a SavedModel
            it sets TensorFlow's thread pools, which only works before TF has run anything.
        class_names: overrides the class names stored with the model (needed for a
            ``.tflite`` file without a class-names sidecar).
        min_face: for the detector created here (a
            :class:`~keras_fer.data.face_search.GroupFaceDetector`: close-ups, group photos,
            small faces), the smallest face side in pixels it must reach (default 40); smaller
            is slower on large photos.
        prior: ``"balanced"`` (default): probabilities as if every class were equally common,
            where the model ships a ``class_prior.json`` (:attr:`prior` says what is applied;
            ``None`` for a model without one); ``"training"``: the model's own probabilities,
            under its training set's class frequencies.
        tta: ``"none"`` (default, :data:`~keras_fer.inference.defaults.DEFAULT_TTA`): one
            pass, the model's output as exported; ``"flip"``: average each face's
            probabilities with its mirror image's (twice the classifier's time; on FER+ Valid
            the default model's balanced accuracy goes 76.64 -> 79.32 with its prior divided
            out, on CK+48 81.35 -> 81.24).
    """

    def __init__(
        self,
        model_path: Optional[Union[str, Path]] = None,
        detector: Optional[FaceDetector] = None,
        min_confidence: float = 0.5,
        num_threads: Optional[int] = None,
        class_names: Optional[Sequence[str]] = None,
        min_face: int = DEFAULT_MIN_FACE,
        prior: str = "balanced",
        tta: str = DEFAULT_TTA,
    ):
        if model_path is None:
            from keras_fer.inference.defaults import default_model_path

            model_path = default_model_path()
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1. Received: num_threads={num_threads}")
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {', '.join(PRIORS)}. Received: prior={prior!r}")
        if tta not in TTAS:
            raise ValueError(f"tta must be one of {', '.join(TTAS)}. Received: tta={tta!r}")
        self.tta = tta
        model_path = check_model_path(model_path)
        try:
            if model_path.is_dir():
                self._classifier = _SavedModelClassifier(model_path, num_threads)
            else:
                self._classifier = _TFLiteClassifier(
                    model_path, num_threads or os.cpu_count() or 1
                )
        except ModelLoadError:
            raise
        except Exception as err:  # noqa: BLE001 - TF / LiteRT raise many types; name the file
            raise ModelLoadError(f"Cannot load model {model_path}: {_first_line(err)}") from err
        names = list(class_names) if class_names is not None else self._classifier.class_names
        if names is None:
            raise ValueError(
                f"No class names for {model_path}: pass class_names=[...] or write them one per "
                f"line to {model_path.with_name(model_path.stem + '.' + CLASS_NAMES_FILE)}."
            )
        self.model_path = self._classifier.path
        self.class_names: List[str] = names
        # The prior file is checked against the model's own class names: renaming them
        # (class_names=...) keeps the columns, and so the prior, as they are.
        own_names = self._classifier.class_names or names
        self.prior = load_prior(self.model_path, own_names) if prior == "balanced" else None
        self._own_detector = None
        if detector is None:
            from keras_fer.data.face_search import GroupFaceDetector

            detector = self._own_detector = GroupFaceDetector(min_confidence, min_face=min_face)
        # One keypoint refinement moved ONE_STEP_GAIN of the way, at the detector's 96 px
        # refinement input: nearly as precise as the two full ones at 128 px it replaces, the
        # same accuracy, ~2 ms a face less (benchmarks/results/alignment_refine.md).
        self._aligner = FaceAligner(detector=detector, refine_steps=1, refine_gain=ONE_STEP_GAIN)
        self._check_num_classes()

    def _check_num_classes(self) -> None:
        try:
            probe = self.classify(np.full((1, 60, 60), 128, np.uint8))
        except Exception as err:  # noqa: BLE001 - a model that cannot run one face
            raise ModelLoadError(
                f"Model {self.model_path} fails on an aligned face: {_first_line(err)}"
            ) from err
        if probe.shape[-1] != len(self.class_names):
            raise ValueError(
                f"The model outputs {probe.shape[-1]} classes but {len(self.class_names)} class "
                f"names were given: {self.class_names}"
            )

    @property
    def aligner(self) -> FaceAligner:
        """The face aligner (detector + eye alignment to 60x60 crops)."""
        return self._aligner

    def _run(self, faces: np.ndarray) -> np.ndarray:
        return np.concatenate([
            np.asarray(self._classifier(np.ascontiguousarray(faces[i:i + CLASSIFY_BATCH])),
                       np.float32) for i in range(0, len(faces), CLASSIFY_BATCH)])

    def classify(self, faces: np.ndarray) -> np.ndarray:
        """Class probabilities of aligned faces, run through the model ``CLASSIFY_BATCH`` at
        a time (any ``N``: a dataset's thousands of faces need no batching by the caller).

        Args:
            faces: uint8 ``(N, H, W)`` or ``(N, H, W, 1)`` aligned gray faces (normally 60x60;
                other sizes are resized exactly as the model's serving path does).

        Returns:
            float32 ``(N, K)`` probabilities, columns in ``class_names`` order (with the
            class prior divided out when :attr:`prior` is set).
        """
        faces = np.asarray(faces)
        if faces.dtype != np.uint8:
            raise ValueError(f"Expected uint8 aligned faces. Received dtype={faces.dtype}")
        if faces.ndim == 4 and faces.shape[-1] == 1:
            faces = faces[..., 0]
        if faces.ndim != 3:
            raise ValueError(f"Expected faces (N, H, W[, 1]). Received shape={faces.shape}")
        if len(faces) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        probabilities = self._run(faces)
        if self.tta == "flip":
            probabilities = (probabilities + self._run(faces[:, :, ::-1])) / 2.0
        return probabilities if self.prior is None else self.prior.adjust(probabilities)

    def predict_faces(self, faces: np.ndarray) -> List[Dict]:
        """Classifies aligned faces; one ``{"class", "class_id", "probabilities"}`` dict each."""
        return [self._label(p) for p in self.classify(faces)]

    def detect(self, image: ImageLike) -> List[FaceResult]:
        """Detects and aligns every face of one image (best detection score first)."""
        return self._aligner.align_faces(as_image_array(image))

    def predict_image(self, image: ImageLike) -> List[Dict]:
        """Every face of one image (path, PIL image or uint8 gray/RGB array), classified.

        Returns:
            One dict per face, best detection first: ``box`` ``[x, y, w, h]`` in image pixels,
            detection ``score``, ``class``, ``class_id`` and ``probabilities`` ``{name: p}``;
            ``[]`` when the image has no face.

        Raises:
            ImageReadError: ``image`` is a path that cannot be read as an image.
        """
        return self.predict_images([image])[0]

    def predict_images(self, images: Sequence[ImageLike]) -> List[List[Dict]]:
        """:meth:`predict_image` for several images, classifying all their faces in one batch."""
        detected = [self.detect(image) for image in images]
        crops = [face.crop for faces in detected for face in faces]
        labels = self.predict_faces(np.stack(crops)) if crops else []
        out, start = [], 0
        for faces in detected:
            out.append(
                [
                    {"box": [int(v) for v in face.box], "score": round(face.score, 4), **label}
                    for face, label in zip(faces, labels[start : start + len(faces)])
                ]
            )
            start += len(faces)
        return out

    def _label(self, probabilities: np.ndarray) -> Dict:
        class_id = int(np.argmax(probabilities))
        return {
            "class": self.class_names[class_id],
            "class_id": class_id,
            "probabilities": {n: float(p) for n, p in zip(self.class_names, probabilities)},
        }

    def close(self) -> None:
        """Releases the face detector if this predictor created it."""
        self._aligner.close()
        if self._own_detector is not None:
            self._own_detector.close()
            self._own_detector = None

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
