"""ResNet12 / ResNet18 emotion networks of TFE-JL (the paper's Fig. 3), sized for 48x48 faces.

The paper's text fixes the shape and Fig. 3 the depth; the project reads them as:

- stem: 3x3 convolution with 16 filters, stride 1, BN, ReLU (1 layer);
- ResNet18: four stages of widths 16, 16, 32, 64, each a projection block (stride 2)
  followed by an identity block: 8 blocks x 2 convolutions = 16 layers;
- ResNet12: the paper removes the four identity blocks and adds one projection block of
  width 16, i.e. five projection blocks of widths 16, 16, 16, 32, 64: 5 x 2 = 10 layers;
- global average pooling to the 64-d emotion feature, then the softmax layer (1 layer).

Layer count (stem + block convolutions + FC) is 1 + 16 + 1 = 18 and 1 + 10 + 1 = 12.
Downsampling is done only by the stride-2 projection blocks (no pooling layers), so a 48x48
input ends at 3x3 (ResNet18) or 2x2 (ResNet12) before the GAP. The ResNet-only baseline of
the paper is :func:`build_resnet` itself, trained on the same folds and budget as the
tandem model.
"""

from __future__ import annotations

import keras
from keras import layers

from keras_fer.layers.residual import BN_EPSILON, BN_MOMENTUM
from keras_fer.layers.residual import apply_identity_block, apply_projection_block

STEM_FILTERS = 16
EMOTION_FEATURE_DIM = 64

# Block sequence per depth: (width, kind), where kind "project" halves the spatial size.
RESNET_BLOCKS: dict[int, tuple[tuple[int, str], ...]] = {
    12: ((16, "project"), (16, "project"), (16, "project"), (32, "project"), (64, "project")),
    18: (
        (16, "project"),
        (16, "identity"),
        (16, "project"),
        (16, "identity"),
        (32, "project"),
        (32, "identity"),
        (64, "project"),
        (64, "identity"),
    ),
}


def apply_resnet_backbone(x: keras.KerasTensor, depth: int, *, name: str) -> keras.KerasTensor:
    """Stem, residual blocks and GAP: image tensor -> 64-d emotion feature.

    Args:
        x: Input tensor ``(B, H, W, C)``.
        depth: 12 or 18 (see the module docstring).
        name: Prefix of every layer name; the feature is the layer ``f"{name}_feature"``.

    Returns:
        The emotion feature ``(B, 64)``.
    """
    if depth not in RESNET_BLOCKS:
        raise ValueError(f"`depth` must be one of {sorted(RESNET_BLOCKS)}. Received: depth={depth}")
    x = layers.Conv2D(
        STEM_FILTERS,
        3,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_stem_conv",
    )(x)
    bn = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_stem_bn")
    x = bn(x)
    x = layers.Activation("relu", name=f"{name}_stem_relu")(x)
    for index, (filters, kind) in enumerate(RESNET_BLOCKS[depth], start=1):
        block_name = f"{name}_block{index}"
        if kind == "project":
            x = apply_projection_block(x, filters, strides=2, name=block_name)
        else:
            x = apply_identity_block(x, name=block_name)
    return layers.GlobalAveragePooling2D(name=f"{name}_feature")(x)


def build_resnet(
    depth: int,
    num_classes: int,
    input_shape: tuple[int, int, int] = (48, 48, 1),
    name: str = "resnet",
) -> keras.Model:
    """Builds the ResNet emotion classifier (also the paper's ResNet-only baseline).

    Args:
        depth: 12 (CK+) or 18 (FER+).
        num_classes: Number of expression classes of the softmax layer.
        input_shape: ``(H, W, C)`` of the float32 input named ``"image"``.
        name: Model name and prefix of every layer name. Keep the default ``"resnet"`` when
            the weights are to be transferred into the tandem model.

    Returns:
        A functional model ``image -> softmax (B, num_classes)``; the 64-d feature is the
        output of layer ``f"{name}_feature"``.
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an int >= 2. Received: num_classes={num_classes}")
    image = keras.Input(shape=input_shape, name="image")
    feature = apply_resnet_backbone(image, depth, name=name)
    probs = layers.Dense(num_classes, activation="softmax", name=f"{name}_predictions")(feature)
    return keras.Model(image, probs, name=name)
