"""PatchGAN discriminator on (condition, candidate) image pairs (Isola et al., pix2pix).

The two images are concatenated on the channel axis and mapped to a grid of real/fake
*logits*, one per overlapping patch, so the discriminator only judges local structure and
the L1 term keeps the low frequencies. For a 48x48 pair and ``num_downsamples = 2`` the
output is ``(B, 12, 12, 1)`` with a receptive field of about 34x34 pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras


@dataclass(frozen=True)
class PatchGANConfig:
    """PatchGAN configuration.

    Attributes:
        input_size: square image side.
        channels: channels of each image of the pair.
        base_filters: filters of the first convolution (doubled per downsampling).
        num_downsamples: stride-2 convolutions; the logit map is ``input_size / 2**n``.
        spectral_norm: wrap every convolution in ``keras.layers.SpectralNormalization``
            (and drop batch norm, which fights the Lipschitz constraint).
    """

    input_size: int = 48
    channels: int = 1
    base_filters: int = 32
    num_downsamples: int = 2
    spectral_norm: bool = False


def build_patchgan(
    config: PatchGANConfig = PatchGANConfig(), name: str = "discriminator"
) -> keras.Model:
    """Builds ``D([condition, candidate]) -> (B, h, w, 1)`` patch logits.

    Args:
        config: architecture configuration.
        name: model name and prefix of every layer name.

    Returns:
        A functional ``keras.Model`` with inputs ``[condition, candidate]``.
    """
    if config.num_downsamples < 1:
        raise ValueError(f"num_downsamples must be >= 1. Received: {config.num_downsamples}")

    def conv(x, filters, strides, layer_name, norm):
        layer = keras.layers.Conv2D(
            filters, 4, strides=strides, padding="same", use_bias=not norm, name=layer_name
        )
        if config.spectral_norm:
            return keras.layers.SpectralNormalization(layer, name=f"{layer_name}_sn")(x)
        x = layer(x)
        if norm:
            x = keras.layers.BatchNormalization(name=f"{layer_name}_bn")(x)
        return x

    shape = (config.input_size, config.input_size, config.channels)
    condition = keras.Input(shape, name=f"{name}_condition")
    candidate = keras.Input(shape, name=f"{name}_candidate")
    x = keras.layers.Concatenate(name=f"{name}_pair")([condition, candidate])
    filters = config.base_filters
    for i in range(config.num_downsamples):
        # No normalisation on the first layer, as in pix2pix: it sees raw pixels.
        x = conv(x, filters, 2, f"{name}_down{i + 1}", norm=i > 0 and not config.spectral_norm)
        x = keras.layers.LeakyReLU(0.2, name=f"{name}_down{i + 1}_lrelu")(x)
        filters *= 2
    x = conv(x, filters, 1, f"{name}_conv", norm=not config.spectral_norm)
    x = keras.layers.LeakyReLU(0.2, name=f"{name}_conv_lrelu")(x)
    logits = conv(x, 1, 1, f"{name}_logits", norm=False)
    return keras.Model([condition, candidate], logits, name=name)
