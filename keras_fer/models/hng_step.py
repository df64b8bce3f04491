"""Training wrapper of IDFERM's hard negative generation (HNG) network.

:class:`HNGModel` holds the encoder, decoder and discriminator of ``models.idferm`` plus the
two frozen auxiliary networks, and trains them with three optimizers following the paper's
Algorithm 1::

    Enc <- L_feat + w1 L_id + w2 L_pixel
    Dec <- L_feat + w1 L_id + w2 L_pixel + w3 L_sym + w4 L_GAN_Dec
    Dis <- L_GAN_Dis

Each optimizer gets the gradient of its own loss only (``models.gan_steps`` takes one
forward pass and pulls back one loss per variable group), so the symmetry and adversarial
terms never reach the encoder while the decoder sees everything. The per-backend
``train_step`` (TensorFlow ``GradientTape``, JAX stateless) comes from
``gan_steps.MultiOptimizerModel``; this module only writes the shared loss code.

Data: ``x`` are expressive faces ``(B, 64, 64, 1)`` and ``y`` the real neutral faces of the
same subjects ``(B, 64, 64, 1)``, both in ``[0, 1]``; the neutral faces also serve as the
discriminator's guiding set of real neutral faces. Only the encoder + decoder (the
``generator`` property) are used after training, never this wrapper.
"""

from __future__ import annotations

import keras

from keras_fer.losses.gan import discriminator_loss, generator_adversarial_loss, l1_loss
from keras_fer.losses.hng import identity_loss, perceptual_loss, symmetry_loss
from keras_fer.models.hng import ResidualImage, build_hng_generator, hng_to_model_input
from keras_fer.models.gan_steps import MultiOptimizerModel

LOG_NAMES = (
    "encoder_loss",
    "decoder_loss",
    "discriminator_loss",
    "perceptual_loss",
    "identity_loss",
    "pixel_loss",
    "symmetry_loss",
    "adversarial_loss",
)


def _fit_input(model: keras.Model, images):
    """Brings 64x64 HNG faces to ``model``'s input size (the project's 48x48 crop frame)."""
    size = model.input_shape[1]
    if size is None or size == images.shape[1]:
        return images
    return hng_to_model_input(images, size)


class HNGModel(MultiOptimizerModel):
    """Encoder-decoder GAN that turns an expressive face into its subject's neutral face.

    Default weights follow the paper's reported trade-offs (Sec. 5.3: 0.1, 3e-2, 1e-2, 0.3,
    with the perceptual loss given the largest weight); read as w1 (identity) = 0.03,
    w2 (pixel) = 0.01, w3 (symmetry) = 0.3, w4 (adversarial) = 0.1.

    Args:
        encoder: ``models.idferm.build_hng_encoder`` output.
        decoder: ``models.idferm.build_hng_decoder`` output.
        discriminator: ``models.idferm.build_hng_discriminator`` output (logits).
        perceptual_model: Expression-backbone feature extractor (stands in for VGG-Face
            conv5). Set to non-trainable here.
        identity_model: Identity network returning its last two layers' activations
            (stands in for Light-CNN). Set to non-trainable here.
        perceptual_weight: Weight of the perceptual loss.
        identity_weight: ``w1``.
        pixel_weight: ``w2``.
        symmetry_weight: ``w3`` (decoder only).
        adversarial_weight: ``w4`` (decoder only).
        laplacian_symmetry: Compute the symmetry loss in Laplacian space.
        adversarial_mode: ``"bce"`` (the paper's Eqs. 4-5) or ``"lsgan"``.
        residual: The generated face is the input plus the decoder's change
            (``HNGConfig.residual``, :class:`~keras_fer.models.hng.ResidualImage`).
        **kwargs: ``keras.Model`` arguments (``name``).
    """

    def __init__(
        self,
        encoder: keras.Model,
        decoder: keras.Model,
        discriminator: keras.Model,
        perceptual_model: keras.Model,
        identity_model: keras.Model,
        perceptual_weight: float = 1.0,
        identity_weight: float = 0.03,
        pixel_weight: float = 0.01,
        symmetry_weight: float = 0.3,
        adversarial_weight: float = 0.1,
        laplacian_symmetry: bool = False,
        adversarial_mode: str = "bce",
        residual: bool = False,
        **kwargs,
    ):
        kwargs.setdefault("name", "hng")
        super().__init__(log_names=LOG_NAMES, **kwargs)
        weights = {
            "perceptual_weight": perceptual_weight,
            "identity_weight": identity_weight,
            "pixel_weight": pixel_weight,
            "symmetry_weight": symmetry_weight,
            "adversarial_weight": adversarial_weight,
        }
        negative = {k: v for k, v in weights.items() if v < 0}
        if negative:
            raise ValueError(f"Loss weights must be >= 0. Received: {negative}")
        perceptual_model.trainable = False
        identity_model.trainable = False
        self.encoder = encoder
        self.decoder = decoder
        self.discriminator = discriminator
        self.perceptual_model = perceptual_model
        self.identity_model = identity_model
        self.perceptual_weight = float(perceptual_weight)
        self.identity_weight = float(identity_weight)
        self.pixel_weight = float(pixel_weight)
        self.symmetry_weight = float(symmetry_weight)
        self.adversarial_weight = float(adversarial_weight)
        self.laplacian_symmetry = laplacian_symmetry
        self.adversarial_mode = adversarial_mode
        self._residual_image = ResidualImage(name="hng_residual") if residual else None

    @property
    def residual(self) -> bool:
        """Whether the generated face is the input plus the decoder's change."""
        return self._residual_image is not None

    @property
    def generator(self) -> keras.Model:
        """Encoder + decoder as one functional model: expressive face -> neutral face."""
        return build_hng_generator(self.encoder, self.decoder, self.residual)

    def call(self, inputs, training=False):
        return self._generate(inputs, training)

    def _generate(self, faces, training: bool):
        decoded = self.decoder(self.encoder(faces, training=training), training=training)
        if self._residual_image is None:
            return decoded
        return self._residual_image([faces, decoded])

    def variable_groups(self) -> dict[str, list]:
        return {
            "encoder": self.encoder.trainable_variables,
            "decoder": self.decoder.trainable_variables,
            "discriminator": self.discriminator.trainable_variables,
        }

    def compile(
        self,
        encoder_optimizer: keras.optimizers.Optimizer,
        decoder_optimizer: keras.optimizers.Optimizer,
        discriminator_optimizer: keras.optimizers.Optimizer,
        **kwargs,
    ) -> None:
        """Compiles with one optimizer each for the encoder, decoder and discriminator.

        Args:
            encoder_optimizer: Minimises the encoder loss.
            decoder_optimizer: Minimises the decoder loss.
            discriminator_optimizer: Minimises the discriminator loss.
            **kwargs: Other ``keras.Model.compile`` arguments (``jit_compile``, ...).
        """
        super().compile(
            optimizers={
                "encoder": encoder_optimizer,
                "decoder": decoder_optimizer,
                "discriminator": discriminator_optimizer,
            },
            **kwargs,
        )

    def compute_losses(self, x, y, training: bool = True) -> tuple[dict, dict]:
        """One forward pass: the encoder, decoder and discriminator losses and their parts."""
        generated = self._generate(x, training)
        feat = perceptual_loss(
            self.perceptual_model,
            _fit_input(self.perceptual_model, generated),
            _fit_input(self.perceptual_model, y),
        )
        ident = identity_loss(
            self.identity_model,
            _fit_input(self.identity_model, generated),
            _fit_input(self.identity_model, x),
        )
        pixel = l1_loss(generated, y)
        sym = symmetry_loss(generated, use_laplacian=self.laplacian_symmetry)
        fake_logits = self.discriminator(generated, training=training)
        real_logits = self.discriminator(y, training=training)
        adversarial = generator_adversarial_loss(fake_logits, mode=self.adversarial_mode)

        encoder_loss = (
            self.perceptual_weight * feat + self.identity_weight * ident + self.pixel_weight * pixel
        )
        decoder_loss = (
            encoder_loss + self.symmetry_weight * sym + self.adversarial_weight * adversarial
        )
        disc_loss = discriminator_loss(real_logits, fake_logits, mode=self.adversarial_mode)
        losses = {"encoder": encoder_loss, "decoder": decoder_loss, "discriminator": disc_loss}
        logs = {
            "encoder_loss": encoder_loss,
            "decoder_loss": decoder_loss,
            "discriminator_loss": disc_loss,
            "perceptual_loss": feat,
            "identity_loss": ident,
            "pixel_loss": pixel,
            "symmetry_loss": sym,
            "adversarial_loss": adversarial,
        }
        return losses, logs
