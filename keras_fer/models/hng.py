"""IDFERM's hard negative generation (HNG) networks (Liu et al., "Hard negative generation for
identity-disentangled FER"): an encoder to a 256-d latent, a decoder of transposed
("fractional-stride") convolutions back to a 64x64 gray face, and a discriminator against
real neutral faces; LeakyReLU slope 0.1 throughout. The paper works on 64x64 faces while the
project's aligned crops are 60x60, so HNG inputs are the aligned crops resized to 64
(:func:`to_hng_input`) and generated faces go back to the project's model input by resizing
to 60 and taking the usual 48x48 centre crop (:func:`hng_to_model_input`).

:func:`build_hng_generator` joins encoder and decoder into the generator; with
``HNGConfig.residual`` the decoder's output is read as a change to the input face
(:class:`ResidualImage`) rather than the face itself. The training wrapper (losses,
optimizers, train steps) is ``models.hng_step.HNGModel``. ``models.idferm`` re-exports these
names.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import layers, ops

from keras_fer.data.preprocess import ALIGNED_SIZE, INPUT_SIZE

HNG_SIZE = 64
NEGATIVE_SLOPE = 0.1


def check_positive(value, what: str) -> None:
    """Raises ``ValueError`` unless ``value`` is an int >= 1 (``bool`` is not)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{what}` must be a positive int. Received: {what}={value!r}")


# --------------------------------------------------------------------------------------------
# Hard negative generation
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HNGConfig:
    """Sizes of the HNG encoder, decoder and discriminator.

    Attributes:
        image_size: Side of the square gray faces (the paper's 64).
        latent_dim: Size of the encoder's latent vector (the paper's 256).
        encoder_filters: Channels of the stride-2 encoder convolutions.
        decoder_filters: Channels of the decoder's seed map followed by those of its
            stride-2 transposed convolutions; a last transposed convolution makes the image.
        discriminator_filters: Channels of the stride-2 discriminator convolutions.
        negative_slope: LeakyReLU slope.
        upsample: The decoder's 2x steps: ``"deconv"`` (the paper's 4x4 stride-2 transposed
            convolutions) or ``"resize"`` (bilinear 2x resize then a 3x3 convolution, which
            cannot make the checkerboard artefacts of uneven transposed-convolution overlap).
        residual: The generator outputs the input face plus a change the decoder draws
            (:class:`ResidualImage`) instead of a face the decoder draws whole from the
            256-d latent, which cannot carry a face's fine detail to people it never saw.
            The paper's whole-face decoder (``False``) stays the default.
    """

    image_size: int = HNG_SIZE
    latent_dim: int = 256
    encoder_filters: tuple[int, ...] = (32, 64, 128, 256)
    decoder_filters: tuple[int, ...] = (256, 128, 64, 32)
    discriminator_filters: tuple[int, ...] = (32, 64, 128)
    negative_slope: float = NEGATIVE_SLOPE
    upsample: str = "deconv"
    residual: bool = False

    def __post_init__(self):
        if not isinstance(self.residual, bool):
            raise ValueError(f"`residual` must be true or false. Received: {self.residual!r}")
        if self.upsample not in ("deconv", "resize"):
            raise ValueError("`upsample` must be 'deconv' or 'resize'. "
                             f"Received: {self.upsample!r}")
        check_positive(self.image_size, "image_size")
        check_positive(self.latent_dim, "latent_dim")
        for field in ("encoder_filters", "decoder_filters", "discriminator_filters"):
            filters = getattr(self, field)
            if not filters:
                raise ValueError(f"`{field}` must not be empty. Received: {field}={filters!r}")
            for f in filters:
                check_positive(f, field)
        scale = 2 ** len(self.decoder_filters)
        if self.image_size % scale:
            raise ValueError(
                f"`image_size` must be divisible by 2**len(decoder_filters)={scale}. "
                f"Received: image_size={self.image_size}"
            )


def _conv_lrelu(x, filters: int, slope: float, name: str):
    x = layers.Conv2D(filters, 4, strides=2, padding="same", name=f"{name}_conv")(x)
    return layers.LeakyReLU(slope, name=f"{name}_lrelu")(x)


def build_hng_encoder(config: HNGConfig = HNGConfig(), name: str = "hng_encoder") -> keras.Model:
    """Encoder: ``(B, S, S, 1)`` face -> ``(B, latent_dim)`` latent (stride-2 convs)."""
    inputs = keras.Input((config.image_size, config.image_size, 1), name="image")
    x = inputs
    for i, filters in enumerate(config.encoder_filters):
        x = _conv_lrelu(x, filters, config.negative_slope, f"{name}_block{i + 1}")
    x = layers.Flatten(name=f"{name}_flatten")(x)
    latent = layers.Dense(config.latent_dim, name=f"{name}_latent")(x)
    return keras.Model(inputs, latent, name=name)


def build_hng_decoder(config: HNGConfig = HNGConfig(), name: str = "hng_decoder") -> keras.Model:
    """Decoder: ``(B, latent_dim)`` -> ``(B, S, S, 1)`` face in ``[0, 1]`` (sigmoid)."""
    seed = config.image_size // 2 ** len(config.decoder_filters)
    inputs = keras.Input((config.latent_dim,), name="latent")
    x = layers.Dense(seed * seed * config.decoder_filters[0], name=f"{name}_project")(inputs)
    x = layers.Reshape((seed, seed, config.decoder_filters[0]), name=f"{name}_reshape")(x)
    x = layers.LeakyReLU(config.negative_slope, name=f"{name}_project_lrelu")(x)
    def up(x, filters, layer_name, activation=None):
        if config.upsample == "deconv":
            return layers.Conv2DTranspose(filters, 4, strides=2, padding="same",
                                          activation=activation, name=layer_name)(x)
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{layer_name}_resize")(x)
        return layers.Conv2D(filters, 3, padding="same", activation=activation,
                             name=layer_name)(x)

    for i, filters in enumerate(config.decoder_filters[1:]):
        x = up(x, filters, f"{name}_block{i + 1}_deconv")
        x = layers.LeakyReLU(config.negative_slope, name=f"{name}_block{i + 1}_lrelu")(x)
    image = up(x, 1, f"{name}_image", activation="sigmoid")
    return keras.Model(inputs, image, name=name)


def build_hng_discriminator(
    config: HNGConfig = HNGConfig(), name: str = "hng_discriminator"
) -> keras.Model:
    """Discriminator: ``(B, S, S, 1)`` face -> ``(B, 1)`` real/fake logit (no sigmoid)."""
    inputs = keras.Input((config.image_size, config.image_size, 1), name="image")
    x = inputs
    for i, filters in enumerate(config.discriminator_filters):
        x = _conv_lrelu(x, filters, config.negative_slope, f"{name}_block{i + 1}")
    x = layers.Flatten(name=f"{name}_flatten")(x)
    logits = layers.Dense(1, name=f"{name}_logit")(x)
    return keras.Model(inputs, logits, name=name)


@keras.saving.register_keras_serializable(package="keras_fer")
class ResidualImage(layers.Layer):
    """``[face, decoded]`` -> ``clip(face + 2 * decoded - 1, 0, 1)``.

    Reads the decoder's sigmoid output (in ``(0, 1)``, 0.5 = no change) as a change of
    ``(-1, 1)`` to each pixel of the input face, both ``(B, S, S, 1)`` in ``[0, 1]``.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.built = True  # no weights: nothing to build (an HNGModel holding it builds clean)

    def call(self, inputs):
        face, decoded = inputs
        return ops.clip(face + 2.0 * decoded - 1.0, 0.0, 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


def build_hng_generator(encoder: keras.Model, decoder: keras.Model, residual: bool = False,
                        name: str = "hng_generator") -> keras.Model:
    """Encoder + decoder as one functional model: expressive face -> neutral face (with
    ``residual``, the input face plus the decoder's change: :class:`ResidualImage`)."""
    inputs = keras.Input(encoder.input_shape[1:], name="image")
    decoded = decoder(encoder(inputs))
    outputs = ResidualImage(name="hng_residual")([inputs, decoded]) if residual else decoded
    return keras.Model(inputs, outputs, name=name)


def to_hng_input(images, size: int = HNG_SIZE):
    """Aligned float faces ``(B, 60, 60, 1)`` in [0, 1] -> ``(B, size, size, 1)`` (bilinear)."""
    return ops.image.resize(images, (size, size), interpolation="bilinear")


def hng_to_model_input(images, size: int = INPUT_SIZE):
    """HNG faces ``(B, 64, 64, 1)`` -> the project's model input ``(B, size, size, 1)``.

    Undoes :func:`to_hng_input` (resize back to the aligned 60x60 frame) and takes the same
    centre crop as ``data.preprocess.to_model_input``, so generated references line up with
    the real query faces the RML network sees.
    """
    if size > ALIGNED_SIZE:
        raise ValueError(f"`size` must be <= {ALIGNED_SIZE}. Received: size={size}")
    x = ops.image.resize(images, (ALIGNED_SIZE, ALIGNED_SIZE), interpolation="bilinear")
    offset = (ALIGNED_SIZE - size) // 2
    return x[:, offset : offset + size, offset : offset + size, :]

