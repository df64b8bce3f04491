"""serving_default turns EXIF-rotated JPEGs upright (as the CLI does) and answers an empty batch."""

import io
import struct

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps
from skimage import data as skdata

from keras_fer.export.savedmodel import decode_gray, exif_orientation, export_savedmodel

CLASSES = ("neutral", "happiness", "surprise")


def _jpeg(array, orientation=None):
    buf = io.BytesIO()
    kwargs = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    Image.fromarray(array).save(buf, format="JPEG", quality=95, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pillow(orientation):
    face = np.asarray(Image.fromarray(skdata.astronaut()[60:180, 160:290]).convert("L"))
    data = _jpeg(face, orientation)
    want = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("L"))
    got = decode_gray(tf.constant(data)).numpy()[..., 0]
    assert int(exif_orientation(tf.constant(data))) == orientation
    # TensorFlow's JPEG decoder (fast DCT) and Pillow's differ by ~1.3 levels on average.
    assert got.shape == want.shape and np.abs(got.astype(int) - want).mean() < 2.0


def test_big_endian_exif_and_images_without_orientation():
    face = skdata.astronaut()[60:180, 160:290]
    plain = _jpeg(face)
    # A Motorola-order ("MM") TIFF header with one IFD entry: orientation 6.
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack(">I", 0)
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff)) + b"Exif\x00\x00" + tiff
    big_endian = plain[:2] + app1 + plain[2:]
    assert int(exif_orientation(tf.constant(big_endian))) == 6
    assert decode_gray(tf.constant(big_endian)).shape[:2] == (130, 120)
    png = io.BytesIO()
    Image.fromarray(face).save(png, format="PNG")
    for data in (plain, png.getvalue(), b"GIF89a"):
        assert int(exif_orientation(tf.constant(data))) == 1


def test_exported_model_rotated_photo_and_empty_batch(tmp_path):
    keras.utils.set_random_seed(0)
    image = keras.Input((48, 48, 1), name="image")
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv")(image)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(image, keras.layers.Dense(3, activation="softmax", name="fc")(x))
    loaded = tf.saved_model.load(str(export_savedmodel(model, CLASSES, tmp_path / "sm")))
    serve = loaded.signatures["serving_default"]
    face = np.asarray(Image.fromarray(skdata.astronaut()[60:180, 170:290]).convert("L"))
    sideways = np.ascontiguousarray(np.rot90(face, k=1))  # stored turned 90 degrees left
    out = serve(images=tf.constant([_jpeg(face, 1), _jpeg(sideways, 6), _jpeg(sideways)]))
    probs = out["probabilities"].numpy()
    np.testing.assert_allclose(probs[1], probs[0], atol=0.02)
    assert np.abs(probs[2] - probs[0]).max() > np.abs(probs[1] - probs[0]).max()
    empty = serve(images=tf.constant([], tf.string))
    assert empty["probabilities"].shape == (0, 3) and empty["class_name"].shape == (0,)
