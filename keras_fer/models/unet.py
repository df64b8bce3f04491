"""U-Net image-to-image generator with IF-GAN's three self-attention modules.

For a 48x48 input and ``base_filters = f`` (3 downsamplings)::

    48x48 f  --------------------------------------------- skip0 ---------> 48x48 f -> 1
      24x24 2f  ----------- skip1 (skip attention) ---------------> 24x24 2f
        12x12 4f -> [encoder attention] -> skip2 --------> 12x12 4f -> [decoder attention]
          6x6 8f (bottleneck)  ------------------------------^

The paper (Fig. 3) places one module on a skip connection, one on the encoding path and one
on the decoding path, the last one on the quarter-resolution decoder features (56x56 for
its 224 input, 12x12 here) that it visualises in Fig. 6. ``use_attention=False`` builds the
identical network without them (the paper's ablation). The output is a sigmoid image in
``[0, 1]``, the same range as the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from keras_fer.layers.attention import SelfAttention2D

ATTENTION_LAYERS = ("skip_attention", "encoder_attention", "decoder_attention")


@dataclass(frozen=True)
class UNetConfig:
    """U-Net generator configuration.

    Attributes:
        input_size: square input side; must be divisible by 8.
        channels: image channels (1 for the project's grayscale faces).
        base_filters: filters of the full-resolution level (doubled per level).
        use_attention: add the three self-attention modules.
        attention_reduction: query/key channel reduction (SAGAN: 8).
        dropout: dropout rate on the two deepest decoder blocks (pix2pix uses 0.5).
    """

    input_size: int = 48
    channels: int = 1
    base_filters: int = 32
    use_attention: bool = True
    attention_reduction: int = 8
    dropout: float = 0.0


def _down(x, filters: int, name: str, norm: bool = True):
    x = keras.layers.Conv2D(
        filters, 4, strides=2, padding="same", use_bias=not norm, name=f"{name}_conv"
    )(x)
    if norm:
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.LeakyReLU(0.2, name=f"{name}_lrelu")(x)


def _up(x, skip, filters: int, name: str, dropout: float = 0.0):
    x = keras.layers.Conv2DTranspose(
        filters, 4, strides=2, padding="same", use_bias=False, name=f"{name}_upconv"
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_up_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_up_relu")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
    x = keras.layers.Concatenate(name=f"{name}_concat")([x, skip])
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def build_unet_generator(
    config: UNetConfig = UNetConfig(), name: str = "generator"
) -> keras.Model:
    """Builds the generator ``(B, S, S, C)`` in ``[0, 1]`` -> ``(B, S, S, C)`` in ``[0, 1]``.

    Args:
        config: architecture configuration.
        name: model name and prefix of every layer name.

    Returns:
        A functional ``keras.Model``; attention layers are named
        ``f"{name}_{kind}"`` for ``kind`` in :data:`ATTENTION_LAYERS`.
    """
    if config.input_size % 8:
        raise ValueError(
            f"input_size must be divisible by 8. Received: input_size={config.input_size}"
        )
    f = config.base_filters

    def attend(x, kind):
        if not config.use_attention:
            return x
        return SelfAttention2D(config.attention_reduction, name=f"{name}_{kind}")(x)

    shape = (config.input_size, config.input_size, config.channels)
    inputs = keras.Input(shape, name=f"{name}_input")
    x = keras.layers.Conv2D(f, 3, padding="same", name=f"{name}_stem_conv")(inputs)
    skip0 = keras.layers.LeakyReLU(0.2, name=f"{name}_stem_lrelu")(x)
    skip1 = _down(skip0, 2 * f, f"{name}_down1")
    x = _down(skip1, 4 * f, f"{name}_down2")
    skip2 = attend(x, "encoder_attention")
    bottleneck = _down(skip2, 8 * f, f"{name}_down3")

    x = _up(bottleneck, skip2, 4 * f, f"{name}_up3", config.dropout)
    x = attend(x, "decoder_attention")
    x = _up(x, attend(skip1, "skip_attention"), 2 * f, f"{name}_up2", config.dropout)
    x = _up(x, skip0, f, f"{name}_up1")
    outputs = keras.layers.Conv2D(
        config.channels, 3, padding="same", activation="sigmoid", name=f"{name}_output"
    )(x)
    return keras.Model(inputs, outputs, name=name)
