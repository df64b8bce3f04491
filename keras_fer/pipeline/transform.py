"""Transform: the one preprocessing function shared by training and the serving signature.

TFX's Transform exists so that the preprocessing a model was trained with is the one it is
served with. Here that function already exists: the SavedModel's ``serving_default``
(:mod:`keras_fer.export.savedmodel`) decodes each encoded crop with ``decode_gray`` and
applies :func:`keras_fer.data.preprocess.tf_to_model_input`; :func:`preprocessing_fn` is that
same composition, and :func:`decode_faces` is its first half, the part the Trainer applies to
the examples before the runner's crop-and-scale (``preprocess.to_model_input`` at test time,
random crops of the same uint8 faces in training).

The component writes the functions as a SavedModel (``transform_fn/``, signatures
``preprocess`` and ``decode_faces``) that the Trainer loads, so training reads its inputs
through the artifact, not through whatever code happens to be installed.
"""

from __future__ import annotations

import glob
import itertools
import json
from pathlib import Path
from typing import Dict

import numpy as np

from keras_fer.data import tfrecords
from keras_fer.data.preprocess import ALIGNED_SIZE, INPUT_SIZE

TRANSFORM_DIR = "transform_fn"
TRANSFORM_JSON = "transform.json"
PREPROCESS_SIGNATURE = "preprocess"
DECODE_SIGNATURE = "decode_faces"


def decode_faces(images):
    """Encoded aligned crops (``tf.string`` ``(B,)``) -> uint8 ``(B, 60, 60, 1)`` gray faces."""
    import tensorflow as tf

    from keras_fer.export.savedmodel import decode_gray

    return tf.map_fn(
        lambda s: tf.ensure_shape(decode_gray(s), (ALIGNED_SIZE, ALIGNED_SIZE, 1)),
        images,
        fn_output_signature=tf.TensorSpec((ALIGNED_SIZE, ALIGNED_SIZE, 1), tf.uint8),
    )


def preprocessing_fn(images):
    """Encoded crops of any size (``tf.string`` ``(B,)``) -> float32 ``(B, 48, 48, 1)`` in [0, 1].

    Exactly what ``serving_default`` computes before the model.
    """
    import tensorflow as tf

    from keras_fer.data.preprocess import tf_to_model_input
    from keras_fer.export.savedmodel import decode_gray

    return tf.map_fn(
        lambda s: tf_to_model_input(decode_gray(s)[None])[0],
        images,
        fn_output_signature=tf.TensorSpec((INPUT_SIZE, INPUT_SIZE, 1), tf.float32),
    )


def save_transform_graph(out_dir: str | Path) -> Path:
    """Writes :func:`preprocessing_fn` and :func:`decode_faces` as a SavedModel."""
    import tensorflow as tf

    spec = tf.TensorSpec([None], tf.string, name="images")
    module = tf.Module()
    module.preprocess = tf.function(lambda images: {"x": preprocessing_fn(images)},
                                    input_signature=[spec])
    module.decode_faces = tf.function(lambda images: {"faces": decode_faces(images)},
                                      input_signature=[spec])
    out_dir = Path(out_dir)
    tf.saved_model.save(module, str(out_dir), signatures={
        PREPROCESS_SIGNATURE: module.preprocess, DECODE_SIGNATURE: module.decode_faces})
    return out_dir


class TransformGraph:
    """The Transform artifact loaded back: call its functions on encoded crops.

    Args:
        transform_dir: the ``transform_fn`` SavedModel directory.
    """

    def __init__(self, transform_dir: str | Path):
        import tensorflow as tf

        self._loaded = tf.saved_model.load(str(transform_dir))

    def _call(self, signature: str, key: str, images, batch_size: int) -> np.ndarray:
        import tensorflow as tf

        fn = self._loaded.signatures[signature]
        images = list(images)
        if not images:
            raise ValueError("Expected at least one encoded image. Received an empty batch.")
        parts = [fn(images=tf.constant(images[i:i + batch_size]))[key].numpy()
                 for i in range(0, len(images), batch_size)]
        return np.concatenate(parts)

    def decode_faces(self, images, batch_size: int = 512) -> np.ndarray:
        """Encoded aligned crops -> uint8 ``(N, 60, 60)`` faces (the training input)."""
        return self._call(DECODE_SIGNATURE, "faces", images, batch_size)[..., 0]

    def preprocess(self, images, batch_size: int = 512) -> np.ndarray:
        """Encoded crops -> float32 ``(N, 48, 48, 1)`` model input (the serving input)."""
        return self._call(PREPROCESS_SIGNATURE, "x", images, batch_size)


def run_transform(examples_dir: str | Path, output_dir: str | Path) -> Dict[str, object]:
    """The Transform component: writes the transform graph and checks it on real examples.

    The check decodes the first examples of the train split through the saved graph and
    requires the aligned size, so a mismatch between ExampleGen and the preprocessing
    contract fails here rather than in the middle of training.
    """
    output_dir = Path(output_dir)
    save_transform_graph(output_dir / TRANSFORM_DIR)
    files = sorted(glob.glob(tfrecords.split_pattern(str(examples_dir), "train")))
    if not files:
        raise FileNotFoundError(f"No train shards under {examples_dir}.")
    sample = [tfrecords.parse_example(r)[tfrecords.IMAGE_KEY]
              for r in itertools.islice(tfrecords.iter_records(files), 8)]
    graph = TransformGraph(output_dir / TRANSFORM_DIR)
    faces = graph.decode_faces(sample)
    x = graph.preprocess(sample)
    document = {
        "preprocessing_fn": f"{__name__}.preprocessing_fn",
        "serving_signature": "keras_fer.export.savedmodel: serving_default",
        "aligned_size": ALIGNED_SIZE,
        "input_size": INPUT_SIZE,
        "checked_examples": int(len(sample)),
        "sample_input_mean": float(x.mean()),
        "sample_faces_shape": list(faces.shape),
    }
    (output_dir / TRANSFORM_JSON).write_text(json.dumps(document, indent=1) + "\n")
    return {"transform_graph": TRANSFORM_DIR, "metadata": TRANSFORM_JSON}
