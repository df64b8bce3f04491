"""dlib's face recognition ResNet as a Keras model: 150x150 RGB face -> 128-d embedding.

Davis King's network from dlib's ``dnn_face_recognition_ex.cpp`` (trained on about 3 million
faces of about 7,500 identities, 99.38% on LFW; weights in the public domain, CC0). The
weights come from ``dlib_face_recognition_resnet_model_v1.dat`` in the PyPI package
``face-recognition-models`` (read by :mod:`keras_fer.models.dlib_dat`, nothing is
downloaded) and are cached as Keras weights (:func:`weights_cache_path`).

Layout, as the ``.dat`` file and dlib's own output (the parity test) fix it, for a 150x150
input:

=====================  ===============================================  ==========
stage                  layers                                           output
=====================  ===============================================  ==========
input                  ``(x - (122.782, 117.001, 104.298)) / 256``      150x150x3
stem                   conv 7x7/2 (32, valid), affine, ReLU,            72x72x32
                       max pool 3x3/2 (valid)                           35x35x32
blocks 1-3             3 x residual(32)                                 35x35x32
blocks 4-7             residual_down(64) + 3 x residual(64)             17x17x64
blocks 8-10            residual_down(128) + 2 x residual(128)           8x8x128
blocks 11-13           residual_down(256) + 2 x residual(256)           4x4x256
block 14               residual_down(256)                               2x2x256
head                   global average pool, dense 128 (no bias)         128
=====================  ===============================================  ==========

A residual block is conv 3x3 (same) -> affine -> ReLU -> conv 3x3 (same) -> affine, added
to its input, then ReLU. A down block's first conv has stride 2 and no padding, and its
shortcut is a 2x2/2 average pool of the input. dlib's ``add_prev`` adds tensors of
different shapes by zero-padding the smaller one at the end of each axis (extra channels,
last rows and columns): the pool keeps 32 of the 64 channels in block 4, and in blocks 11
and 14 the strided conv gives 3x3 and 1x1 where the pool gives 4x4 and 2x2. ``affine`` is
dlib's frozen batch normalisation (per-channel ``x * gamma + beta``). The output is the raw
fc output (dlib's ``compute_face_descriptor``), not L2-normalised; dlib's same-person
threshold is a Euclidean distance of 0.6.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import keras
import numpy as np
from keras import layers

from keras_fer import io_atomic
from keras_fer.models.dlib_dat import DlibNetwork, read_dlib_network

INPUT_SIZE = 150
EMBEDDING_DIM = 128
DLIB_MEANS = (122.782, 117.001, 104.298)
DLIB_SCALE = 256.0
DLIB_DISTANCE_THRESHOLD = 0.6
STEM_FILTERS = 32

# (filters, down) per residual block, input to output.
BLOCKS: tuple[tuple[int, bool], ...] = (
    (32, False), (32, False), (32, False),
    (64, True), (64, False), (64, False), (64, False),
    (128, True), (128, False), (128, False),
    (256, True), (256, False), (256, False),
    (256, True),
)  # fmt: skip

INSTALL_HINT = "pip install face-recognition-models==0.3.0"


@keras.saving.register_keras_serializable(package="keras_fer")
class ChannelAffine(layers.Layer):
    """dlib's ``affine`` layer: frozen batch normalisation ``x * gamma + beta`` per channel.

    Both vectors are non-trainable, as in dlib, where the layer has no learnable parameters.
    """

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(
            shape=(channels,), initializer="ones", trainable=False, name="gamma"
        )
        self.beta = self.add_weight(
            shape=(channels,), initializer="zeros", trainable=False, name="beta"
        )

    def call(self, inputs):
        return inputs * keras.ops.cast(self.gamma, inputs.dtype) + keras.ops.cast(
            self.beta, inputs.dtype
        )


@keras.saving.register_keras_serializable(package="keras_fer")
class ZeroPadAdd(layers.Layer):
    """dlib's ``add_prev``: the sum of two NHWC tensors zero-padded to their common size.

    Each operand is padded at the end of every axis where it is smaller (last rows, last
    columns, extra channels), as dlib's ``tt::add`` does for tensors of different shapes.
    """

    def call(self, inputs):
        a, b = inputs
        sizes = [max(p, q) for p, q in zip(a.shape[1:], b.shape[1:])]
        return self._pad(a, sizes) + self._pad(b, sizes)

    @staticmethod
    def _pad(x, sizes):
        pads = [(0, 0)] + [(0, size - have) for size, have in zip(sizes, x.shape[1:])]
        if not any(after for _, after in pads):
            return x
        return keras.ops.pad(x, pads)

    def compute_output_shape(self, input_shapes):
        a, b = input_shapes
        return (a[0],) + tuple(max(p, q) for p, q in zip(a[1:], b[1:]))


def _conv(x, filters: int, kernel: int, strides: int, name: str):
    # dlib pads a stride-1 conv by kernel // 2 (Keras "same") and a strided one not at all.
    padding = "same" if strides == 1 else "valid"
    return layers.Conv2D(filters, kernel, strides=strides, padding=padding, name=name)(x)


def _residual_block(x, filters: int, down: bool, name: str):
    y = _conv(x, filters, 3, 2 if down else 1, f"{name}_conv1")
    y = ChannelAffine(name=f"{name}_affine1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(y, filters, 3, 1, f"{name}_conv2")
    y = ChannelAffine(name=f"{name}_affine2")(y)
    if down:
        x = layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)
    y = ZeroPadAdd(name=f"{name}_add")([y, x])
    return layers.ReLU(name=f"{name}_relu2")(y)


def build_dlib_resnet(name: str = "dlib_resnet") -> keras.Model:
    """The architecture with random weights: ``image (B, 150, 150, 3)`` RGB 0..255 -> 128-d."""
    image = keras.Input(shape=(INPUT_SIZE, INPUT_SIZE, 3), name="image")
    x = layers.Normalization(
        mean=list(DLIB_MEANS), variance=[DLIB_SCALE**2] * 3, name=f"{name}_input_scale"
    )(image)
    x = _conv(x, STEM_FILTERS, 7, 2, f"{name}_stem_conv")
    x = ChannelAffine(name=f"{name}_stem_affine")(x)
    x = layers.ReLU(name=f"{name}_stem_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, name=f"{name}_stem_pool")(x)
    for index, (filters, down) in enumerate(BLOCKS, start=1):
        x = _residual_block(x, filters, down, f"{name}_block{index}")
    x = layers.GlobalAveragePooling2D(name=f"{name}_avg_pool")(x)
    embedding = layers.Dense(EMBEDDING_DIM, use_bias=False, name=f"{name}_embedding")(x)
    return keras.Model(image, embedding, name=name)


def dlib_model_path() -> Path:
    """The ``.dat`` file of the installed ``face-recognition-models`` package.

    Raises:
        ModuleNotFoundError / FileNotFoundError: with the one-line fix.
    """
    try:
        import face_recognition_models
    except ImportError as err:
        raise ModuleNotFoundError(
            f"dlib's face network needs the package face-recognition-models: {INSTALL_HINT}"
        ) from err
    path = Path(face_recognition_models.face_recognition_model_location())
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing (broken face-recognition-models install): "
            f"pip install --force-reinstall face-recognition-models==0.3.0"
        )
    return path


def weights_cache_path(dat_path: str | Path) -> Path:
    """Where the converted weights of ``dat_path`` are cached.

    ``$KERAS_FER_CACHE``, else ``$XDG_CACHE_HOME/keras_fer``, else ``~/.cache/keras_fer``;
    the file name holds the ``.dat`` file's size and SHA-256 prefix, so another file
    never reuses a stale cache.
    """
    data = Path(dat_path).read_bytes()
    key = f"{len(data)}_{hashlib.sha256(data).hexdigest()[:16]}"
    root = os.environ.get("KERAS_FER_CACHE")
    if root is None:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
        root = os.path.join(xdg, "keras_fer")
    return Path(root) / f"dlib_face_resnet_{key}.weights.h5"


def _model_layers(model: keras.Model, name: str):
    """The model's parameterised layers in dlib's file order."""
    ordered = [model.get_layer(f"{name}_stem_conv"), model.get_layer(f"{name}_stem_affine")]
    for index in range(1, len(BLOCKS) + 1):
        block = f"{name}_block{index}"
        ordered += [
            model.get_layer(f"{block}_{role}") for role in ("conv1", "affine1", "conv2", "affine2")
        ]
    return ordered + [model.get_layer(f"{name}_embedding")]


def _dlib_layout() -> list[tuple]:
    """``(kind, pool window, pool stride)`` of every dlib layer of the network, input upwards."""
    layout = [("con",), ("affine",), ("relu",), ("max_pool", (3, 3), (2, 2))]
    for _, down in BLOCKS:
        layout += [("con",), ("affine",), ("relu",), ("con",), ("affine",)]
        layout += [("avg_pool", (2, 2), (2, 2))] if down else []
        layout += [("add_prev",), ("relu",)]
    return layout + [("avg_pool", (0, 0), (1, 1)), ("fc",)]


def load_dlib_weights(model: keras.Model, network: DlibNetwork, name: str = "dlib_resnet"):
    """Fills ``model`` (from :func:`build_dlib_resnet`) with a parsed dlib network.

    Raises:
        ValueError: If the file's layers, strides or paddings differ from the model's.
    """
    means = tuple(round(m, 3) for m in network.means)
    if means != DLIB_MEANS or network.input_size != (INPUT_SIZE, INPUT_SIZE):
        raise ValueError(
            f"Unexpected dlib input contract: means={network.means}, size={network.input_size}"
        )
    found = [
        (
            (layer.kind, layer.config["window"], layer.config["stride"])
            if layer.kind.endswith("pool")
            else (layer.kind,)
        )
        for layer in network.layers
    ]
    if found != _dlib_layout() or any(
        layer.config["padding"] != (0, 0) for layer in network.layers if layer.kind.endswith("pool")
    ):
        raise ValueError("The dlib file's layers are not dnn_face_recognition_ex.cpp's network.")
    source = [layer for layer in network.layers if layer.kind in ("con", "affine", "fc")]
    target = _model_layers(model, name)
    if len(source) != len(target):
        raise ValueError(
            f"The dlib file has {len(source)} parameterised layers, the model {len(target)}."
        )
    for dlib_layer, keras_layer in zip(source, target):
        if dlib_layer.kind == "con":
            strides = tuple(keras_layer.strides)
            # Keras "same" at stride 1 is dlib's kernel // 2; a strided conv is "valid".
            pad = (0, 0) if strides != (1, 1) else tuple(k // 2 for k in keras_layer.kernel_size)
            if dlib_layer.config["stride"] != strides or dlib_layer.config["padding"] != pad:
                raise ValueError(
                    f"{keras_layer.name}: dlib has stride {dlib_layer.config['stride']}, "
                    f"padding {dlib_layer.config['padding']}; the model stride {strides}"
                )
            kernel = dlib_layer.params["filters"].transpose(2, 3, 1, 0)  # OIHW -> HWIO
            keras_layer.set_weights([kernel, dlib_layer.params["bias"]])
        elif dlib_layer.kind == "affine":
            keras_layer.set_weights([dlib_layer.params["gamma"], dlib_layer.params["beta"]])
        else:
            keras_layer.set_weights([dlib_layer.params["kernel"]])


WEIGHTS_ENV = "KERAS_FER_DLIB_WEIGHTS"


def dlib_resnet(weights: str | None = "dlib") -> keras.Model:
    """dlib's face recognition ResNet: ``image (B, 150, 150, 3)`` RGB 0..255 -> ``(B, 128)``.

    Args:
        weights: ``"dlib"`` for the trained network (from the cache, else converted from the
            installed ``face-recognition-models`` file and cached), ``None`` for random
            initialisation. Where ``$KERAS_FER_DLIB_WEIGHTS`` names a converted
            ``.weights.h5`` (e.g. a copy of the cache carried to a machine without the
            package, such as the GPU machine), ``"dlib"`` loads that file instead.

    Returns:
        A functional model named ``dlib_resnet``; the embedding is the raw fc output (not
        L2-normalised), like dlib's ``compute_face_descriptor``.
    """
    if weights not in ("dlib", None):
        raise ValueError(f"`weights` must be 'dlib' or None. Received: weights={weights!r}")
    model = build_dlib_resnet()
    if weights is None:
        return model
    carried = os.environ.get(WEIGHTS_ENV)
    if carried:
        if not Path(carried).is_file():
            raise FileNotFoundError(
                f"${WEIGHTS_ENV}={carried} is not a file: unset it to convert the installed "
                "face-recognition-models file, or point it at a converted .weights.h5")
        model.load_weights(carried)
        return model
    dat_path = dlib_model_path()
    cache = weights_cache_path(dat_path)
    if cache.is_file():
        model.load_weights(cache)
        return model
    load_dlib_weights(model, read_dlib_network(dat_path))
    _write_atomically(model, cache)
    return model


def _write_atomically(model: keras.Model, path: Path) -> None:
    """Saves the weights atomically (:mod:`keras_fer.io_atomic`).

    A cache that cannot be written (read-only home) is skipped: the weights are already in
    the model and the next call converts the file again.
    """
    try:
        with io_atomic.atomic_path(path) as tmp:
            model.save_weights(tmp, overwrite=True)
    except OSError:
        return


def to_face_input(gray_faces: np.ndarray) -> np.ndarray:
    """Aligned gray faces -> the network's input ``(N, 150, 150, 3)`` float32 in 0..255.

    Args:
        gray_faces: ``(N, H, W)`` or ``(N, H, W, 1)``, any size, uint8 or float in 0..255.
            Faces are resized bilinearly to 150x150 (uint8 faces stay on the uint8 grid, so
            the result is exactly the uint8 chip dlib would be given) and the gray channel
            is repeated as R, G and B.

    Returns:
        float32 ``(N, 150, 150, 3)``.
    """
    from PIL import Image

    faces = np.asarray(gray_faces)
    if faces.ndim == 4 and faces.shape[-1] == 1:
        faces = faces[..., 0]
    if faces.ndim != 3:
        raise ValueError(
            f"Expected gray faces (N, H, W) or (N, H, W, 1). Received shape={faces.shape}"
        )
    size = (INPUT_SIZE, INPUT_SIZE)
    if faces.dtype == np.uint8:
        resized = [np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in faces]
    else:
        faces = faces.astype(np.float32, copy=False)
        resized = [np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in faces]
    out = np.stack(resized).astype(np.float32) if resized else np.zeros((0,) + size, np.float32)
    return np.repeat(out[..., None], 3, axis=-1)
