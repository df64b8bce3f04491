"""SavedModel export of an inference model, with preprocessing inside the graph.

The exported SavedModel has three endpoints (all of them are also signatures, which is what
TF Serving and ``saved_model_cli`` list):

- ``serving_default(images)``: ``images`` is a ``tf.string`` batch ``(B,)`` of encoded
  JPEG/PNG/BMP/GIF face crops of any size, colour or gray. Each one is decoded (and turned
  upright per its EXIF orientation, for JPEG; an empty batch gives 0 rows), converted to
  gray with the ITU-R 601 luma weights that PIL's ``convert("L")`` uses, and passed through
  :func:`keras_fer.data.preprocess.tf_to_model_input` (resize to the aligned size, centre
  crop, scale to [0, 1]), so serving runs exactly the training test path. A string that is not
  an image makes ``DecodeImage`` raise ``InvalidArgumentError`` for that request only, which
  TF Serving returns as an error response.
- ``serving_faces(faces)``: ``faces`` is a uint8 batch ``(B, H, W, 1)`` of aligned face crops
  (normally 60x60), preprocessed with the same function.
- ``class_names()``: returns the class names, which are also stored as a variable and written
  to ``assets.extra/class_names.txt``.

Both classification endpoints return ``probabilities`` (float32 ``(B, K)``), ``class_id``
(int64 ``(B,)``) and ``class_name`` (string ``(B,)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import keras

from keras_fer.data.preprocess import tf_to_model_input

SERVING_DEFAULT = "serving_default"
SERVING_FACES = "serving_faces"
CLASS_NAMES_ENDPOINT = "class_names"
IMAGES_INPUT = "images"
FACES_INPUT = "faces"
OUTPUT_KEYS = ("probabilities", "class_id", "class_name")
CLASS_NAMES_FILE = "class_names.txt"
# PIL's convert("L") weights; readers load colour files through PIL, so serving must match.
_LUMA = (0.299, 0.587, 0.114)


def check_inference_model(model: keras.Model, class_names: Sequence[str]) -> None:
    """Raises ``ValueError`` unless ``model`` follows the inference-model contract.

    The contract: one float input ``(B, 48, 48, 1)`` and one output ``(B, K)`` with
    ``K == len(class_names)``.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            "Only single-input single-output inference models can be exported (export the "
            "inference sub-model, not a training wrapper). Received "
            f"{len(model.inputs)} inputs and {len(model.outputs)} outputs for '{model.name}'."
        )
    in_shape = tuple(model.inputs[0].shape[1:])
    if in_shape != (48, 48, 1):
        raise ValueError(
            f"Expected input shape (None, 48, 48, 1). Received {model.inputs[0].shape}"
        )
    k = model.outputs[0].shape[-1]
    if len(model.outputs[0].shape) != 2 or k != len(class_names):
        raise ValueError(
            f"Expected output (None, {len(class_names)}) for class_names={list(class_names)}. "
            f"Received output shape {model.outputs[0].shape}"
        )


def exif_orientation(encoded):
    """EXIF orientation (1-8) of a JPEG held in a scalar ``tf.string``; 1 when it has none.

    Reads the first IFD of the ``Exif`` APP1 segment (either byte order, up to 64 entries in
    its first 4 KB) for tag 0x0112, in graph ops, so ``serving_default`` can turn camera
    photos upright as the CLI's reader (Pillow's ``exif_transpose``) does.
    """
    import tensorflow as tf

    window = 4096
    parts = tf.strings.split(tf.reshape(encoded, [1]), sep="Exif\x00\x00", maxsplit=1).values
    is_jpeg = tf.equal(tf.strings.substr(encoded, 0, 2), b"\xff\xd8")
    tiff = tf.strings.substr(parts[tf.minimum(tf.size(parts) - 1, 1)], 0, window)
    raw = tf.cast(tf.io.decode_raw(tiff, tf.uint8), tf.int32)
    raw = tf.pad(raw, [[0, window - tf.size(raw)]])
    little = tf.equal(raw[0], 0x49)

    def u16(offset):
        lo = tf.gather(raw, tf.clip_by_value(offset, 0, window - 1))
        hi = tf.gather(raw, tf.clip_by_value(offset + 1, 0, window - 1))
        return tf.where(little, lo + 256 * hi, 256 * lo + hi)

    ifd = tf.where(little, u16(4) + 65536 * u16(6), 65536 * u16(4) + u16(6))
    count = u16(ifd)
    starts = ifd + 2 + 12 * tf.range(64)
    found = (u16(starts) == 0x0112) & (tf.range(64) < count) & (starts + 12 <= window)
    value = tf.reduce_max(tf.where(found, u16(starts + 8), 0))
    usable = is_jpeg & (tf.size(parts) == 2) & (value >= 1) & (value <= 8)
    return tf.where(usable, value, 1)


def apply_orientation(image, orientation):
    """Turns an ``(H, W, C)`` image upright for an EXIF orientation, as ``exif_transpose``."""
    import tensorflow as tf

    transpose = lambda x: tf.transpose(x, [1, 0, 2])  # noqa: E731
    branches = [
        lambda: image,
        lambda: tf.reverse(image, [1]),
        lambda: tf.reverse(image, [0, 1]),
        lambda: tf.reverse(image, [0]),
        lambda: transpose(image),
        lambda: tf.image.rot90(image, k=3),
        lambda: transpose(tf.reverse(image, [0, 1])),
        lambda: tf.image.rot90(image, k=1),
    ]
    return tf.switch_case(orientation - 1, branches)


def decode_gray(encoded):
    """One encoded image (scalar ``tf.string``) -> uint8 ``(H, W, 1)`` gray image, upright per
    its EXIF orientation (JPEG)."""
    import tensorflow as tf

    image = tf.io.decode_image(encoded, channels=0, expand_animations=False)
    image = apply_orientation(image, exif_orientation(encoded))
    channels = tf.shape(image)[-1]

    def luma():
        rgb = tf.cast(image[..., :3], tf.float32)
        gray = tf.reduce_sum(rgb * tf.constant(_LUMA, tf.float32), axis=-1, keepdims=True)
        return tf.cast(tf.clip_by_value(tf.round(gray), 0.0, 255.0), tf.uint8)

    # 1 = gray, 2 = gray + alpha, 3 = RGB, 4 = RGBA; alpha is dropped.
    return tf.cond(channels < 3, lambda: image[..., :1], luma)


def build_export_archive(
    model: keras.Model, class_names: Sequence[str]
) -> keras.export.ExportArchive:
    """Builds the ``ExportArchive`` with the three endpoints described in the module docstring.

    Args:
        model: functional inference model, input ``(B, 48, 48, 1)`` float32 in [0, 1], output
            softmax ``(B, K)``.
        class_names: ``K`` class names, index-aligned with the model output.

    Returns:
        The archive, ready for ``write_out``.
    """
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "SavedModel export needs KERAS_BACKEND=tensorflow. Received backend="
            f"{keras.backend.backend()!r} (load the trained weights into a TensorFlow-backend "
            "model first)."
        )
    check_inference_model(model, class_names)
    names = tf.Variable(list(class_names), dtype=tf.string, trainable=False, name="class_names")

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_variable_collection("class_names_variable", [names])

    def classify(x):
        probabilities = model(x, training=False)
        class_id = tf.argmax(probabilities, axis=-1)
        return {
            "probabilities": probabilities,
            "class_id": class_id,
            "class_name": tf.gather(names, class_id),
        }

    def serve_images(images):
        def run():
            faces = tf.map_fn(
                lambda s: tf_to_model_input(decode_gray(s)[None])[0],
                images,
                fn_output_signature=tf.TensorSpec((48, 48, 1), tf.float32),
            )
            return classify(faces)

        def empty():  # a batch of 0 images: 0 rows (the model itself fails on it)
            return {
                "probabilities": tf.zeros((0, len(class_names)), tf.float32),
                "class_id": tf.zeros((0,), tf.int64),
                "class_name": tf.zeros((0,), tf.string),
            }

        return tf.cond(tf.size(images) > 0, run, empty)

    def serve_faces(faces):
        return classify(tf_to_model_input(faces))

    archive.add_endpoint(
        SERVING_DEFAULT,
        serve_images,
        input_signature=[tf.TensorSpec([None], tf.string, name=IMAGES_INPUT)],
    )
    archive.add_endpoint(
        SERVING_FACES,
        serve_faces,
        input_signature=[tf.TensorSpec([None, None, None, 1], tf.uint8, name=FACES_INPUT)],
    )
    archive.add_endpoint(
        CLASS_NAMES_ENDPOINT, lambda: {"class_names": tf.identity(names)}, input_signature=[]
    )
    return archive


def export_savedmodel(model: keras.Model, class_names: Sequence[str], out_dir: str | Path) -> Path:
    """Writes the SavedModel (plus ``assets.extra/class_names.txt``) to ``out_dir``.

    Args:
        model: the inference model (see :func:`build_export_archive`).
        class_names: class names, index-aligned with the model output.
        out_dir: target directory; must not exist yet or be empty.

    Returns:
        ``out_dir`` as a ``Path``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"Refusing to overwrite non-empty SavedModel directory {out_dir}")
    build_export_archive(model, class_names).write_out(str(out_dir), verbose=False)
    extra = out_dir / "assets.extra"
    extra.mkdir(exist_ok=True)
    (extra / CLASS_NAMES_FILE).write_text("".join(f"{n}\n" for n in class_names))
    return out_dir


def load_class_names(saved_model_dir: str | Path) -> list[str]:
    """Class names of an exported SavedModel, read from ``assets.extra`` (no TF needed)."""
    path = Path(saved_model_dir) / "assets.extra" / CLASS_NAMES_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {saved_model_dir} is not a keras-fer export.")
    return path.read_text().splitlines()
