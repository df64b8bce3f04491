"""Basic residual blocks (two 3x3 convolutions) built from stock ``keras.layers``.

Two blocks, as in the TFE-JL paper's Fig. 4:

- the *projection* block halves the spatial size with a stride-2 first convolution (the
  networks use it instead of pooling) and matches the shortcut with a 1x1 stride-2
  convolution;
- the *identity* block keeps size and width and adds its input back unchanged.

Every convolution is followed by batch normalisation, and the ReLU comes after the BN (and
after the addition). Convolutions carry no bias because the BN that follows has its own
offset. The blocks are free functions over symbolic tensors, so they need no custom layer
class and serialise with plain Keras; each layer is named ``f"{name}_<role>"``.
"""

from __future__ import annotations

import keras
from keras import layers

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def _conv_bn(
    x: keras.KerasTensor, filters: int, kernel_size: int, strides: int, name: str
) -> keras.KerasTensor:
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    bn = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn")
    return bn(x)


def _check_positive(value: int, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{what}` must be a positive int. Received: {what}={value!r}")


def apply_projection_block(
    x: keras.KerasTensor, filters: int, strides: int = 2, *, name: str
) -> keras.KerasTensor:
    """Residual block whose shortcut is a 1x1 convolution (stride ``strides``) + BN.

    Args:
        x: Input tensor ``(B, H, W, C)``.
        filters: Output channels of both 3x3 convolutions and of the shortcut.
        strides: Stride of the first 3x3 convolution and of the shortcut.
        name: Prefix of every layer name.

    Returns:
        Tensor ``(B, ceil(H / strides), ceil(W / strides), filters)``.
    """
    _check_positive(filters, "filters")
    _check_positive(strides, "strides")
    shortcut = _conv_bn(x, filters, 1, strides, name=f"{name}_shortcut")
    y = _conv_bn(x, filters, 3, strides, name=f"{name}_1")
    y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = _conv_bn(y, filters, 3, 1, name=f"{name}_2")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def apply_identity_block(x: keras.KerasTensor, *, name: str) -> keras.KerasTensor:
    """Residual block with an identity shortcut; keeps the input's size and width.

    Args:
        x: Input tensor ``(B, H, W, C)``.
        name: Prefix of every layer name.

    Returns:
        Tensor of the same shape as ``x``.
    """
    filters = x.shape[-1]
    if filters is None:
        raise ValueError(f"The channel dimension must be known. Received shape={x.shape}")
    y = _conv_bn(x, filters, 3, 1, name=f"{name}_1")
    y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = _conv_bn(y, filters, 3, 1, name=f"{name}_2")
    y = layers.Add(name=f"{name}_add")([x, y])
    return layers.Activation("relu", name=f"{name}_out")(y)
