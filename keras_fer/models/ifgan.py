"""IF-GAN: identity-free FER with a conditional GAN (Cai et al.; METHODS.md section 4).

A U-Net generator ``G`` maps any face to the class-average ("average identity") face of the
same expression; a PatchGAN ``D`` judges (input, output) pairs; an expression classifier
``E`` reads the pair {input, average-identity face} and carries an island loss on its
feature layer. ``G``, ``D`` and ``E`` train jointly with

    L_G = 1 * cGAN_G + 20 * L1(G(x), target) + L_E        (generator)
    L_D = 1 * cGAN_D                                       (discriminator)
    L_E = 10 * (CE(E(x, target)) + CE(E(x, G(x)))) + 1 * island(features of both pairs)

so ``G`` is also pushed to keep the expression ``E`` reads (the paper's reason for ``E``).

Test time (the paper's Fig. 2: "only G and E are employed"): ``E`` on the pair
{input, G(input)}, as in its Eq. 4 - :func:`build_inference_model` returns that as one
functional model, image in, probabilities out. The plain classifier baseline
(:func:`build_classifier`) is ``E``'s backbone on the image alone.

Offline substitution (said aloud): the paper's ``E`` is an ImageNet ResNet-101 on 224x224
colour crops. Here ``E`` is a compact CNN on 48x48 grayscale, pretrained by the project on
FER+ as the 1-channel baseline and moved into the pair classifier with
:func:`transfer_classifier_weights`, or (``IFGANConfig.classifier_backbone="resnet18_std"``,
issue 20) the standard ResNet-18 of :mod:`keras_fer.models.expression`, whose layers keep
their ``resnet18_std_*`` names so that the shipped FER+ model's trunk moves in the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from keras_fer.losses.gan import discriminator_loss, generator_adversarial_loss, l1_loss
from keras_fer.losses.island import IslandLoss
from keras_fer.models.patchgan import PatchGANConfig, build_patchgan
from keras_fer.models.unet import UNetConfig, build_unet_generator
from keras_fer.models.gan_steps import MultiOptimizerModel

CLASSIFIER_BACKBONES = ("compact", "resnet18_std")
LOG_NAMES = (
    "g_loss", "d_loss", "e_loss", "adv_loss", "l1_loss", "ce_loss", "island_loss", "accuracy"
)


@dataclass(frozen=True)
class IFGANConfig:
    """IF-GAN configuration; the loss weights default to the paper's.

    Attributes:
        num_classes: expression classes of the protocol.
        input_size: square face side (the project's model input is 48).
        generator_filters / discriminator_filters / classifier_filters: base widths.
        feature_dim: width of ``E``'s feature layer (the island loss space).
        use_attention: the three self-attention modules in ``G`` (False: the ablation).
        spectral_norm: spectral normalisation in ``D``.
        generator_dropout: dropout in ``G``'s two deepest decoder blocks.
        adversarial: ``"bce"`` (the paper's cGAN) or ``"lsgan"``.
        cgan_weight, l1_weight, softmax_weight, island_weight: lambda_1..lambda_4.
        island_alpha: island loss centre-separation weight.
        centre_rate: island centre moving-rule step.
        classifier_backbone: ``E``'s (and the baseline's) trunk: ``"compact"`` (uses
            ``classifier_filters``) or ``"resnet18_std"`` (see :func:`apply_expression_backbone`).
    """

    num_classes: int
    input_size: int = 48
    generator_filters: int = 32
    discriminator_filters: int = 32
    classifier_filters: int = 32
    feature_dim: int = 128
    use_attention: bool = True
    spectral_norm: bool = False
    generator_dropout: float = 0.0
    adversarial: str = "bce"
    cgan_weight: float = 1.0
    l1_weight: float = 20.0
    softmax_weight: float = 10.0
    island_weight: float = 1.0
    island_alpha: float = 0.03
    centre_rate: float = 0.5
    classifier_backbone: str = "compact"

    def __post_init__(self):
        _check_backbone(self.classifier_backbone)


def _check_backbone(backbone: str) -> None:
    if backbone not in CLASSIFIER_BACKBONES:
        raise ValueError(f"classifier_backbone must be one of {CLASSIFIER_BACKBONES}. "
                         f"Received: classifier_backbone={backbone!r}")


def apply_expression_backbone(x, num_classes: int, filters: int, feature_dim: int, name: str,
                              backbone: str = "compact"):
    """Trunk, global pooling, features, logits.

    ``backbone="compact"``: 3 x (2 conv-BN-ReLU + max-pool) of ``filters``, 2x, 4x channels,
    layers ``f"{name}_block*"``. ``"resnet18_std"``: the standard ResNet-18 (CIFAR stem, 512-d
    pooled feature; ``filters`` unused), layers ``resnet18_std_*`` as in the FER+ model.

    Returns:
        ``(features, logits)``: ``features`` are the pre-activation outputs of the Dense
        layer ``f"{name}_features"`` (the island loss space: pre-ReLU, so class centres can
        point in opposite directions), ``logits`` come from ``f"{name}_logits"``.
    """
    _check_backbone(backbone)
    if backbone == "resnet18_std":
        from keras_fer.models.expression import apply_resnet18_std

        x = apply_resnet18_std(x)
    else:
        for stage in range(3):
            width = filters * 2**stage
            for conv in range(2):
                prefix = f"{name}_block{stage + 1}_conv{conv + 1}"
                x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=prefix)(x)
                x = keras.layers.BatchNormalization(name=f"{prefix}_bn")(x)
                x = keras.layers.ReLU(name=f"{prefix}_relu")(x)
            x = keras.layers.MaxPooling2D(2, name=f"{name}_block{stage + 1}_pool")(x)
        x = keras.layers.GlobalAveragePooling2D(name=f"{name}_gap")(x)
    features = keras.layers.Dense(feature_dim, name=f"{name}_features")(x)
    x = keras.layers.ReLU(name=f"{name}_features_relu")(features)
    logits = keras.layers.Dense(num_classes, name=f"{name}_logits")(x)
    return features, logits


def build_expression_classifier(
    num_classes: int,
    input_size: int = 48,
    filters: int = 32,
    feature_dim: int = 128,
    name: str = "classifier",
    backbone: str = "compact",
) -> keras.Model:
    """IF-GAN's ``E``: ``E([condition, candidate]) -> {"features", "logits"}``.

    The pair is concatenated on the channel axis (layer ``f"{name}_pair"``) before the
    ``backbone`` of :func:`apply_expression_backbone`.
    """
    shape = (input_size, input_size, 1)
    condition = keras.Input(shape, name=f"{name}_condition")
    candidate = keras.Input(shape, name=f"{name}_candidate")
    pair = keras.layers.Concatenate(name=f"{name}_pair")([condition, candidate])
    features, logits = apply_expression_backbone(pair, num_classes, filters, feature_dim, name,
                                                 backbone)
    return keras.Model([condition, candidate], {"features": features, "logits": logits}, name=name)


def build_classifier(
    num_classes: int,
    input_size: int = 48,
    filters: int = 32,
    feature_dim: int = 128,
    name: str = "classifier",
    backbone: str = "compact",
) -> keras.Model:
    """Baseline: ``E``'s backbone on the face alone; input ``"image"``, output probabilities.

    The feature layer is ``model.get_layer(f"{name}_features")`` (for an island loss), the
    softmax layer is named ``"probabilities"``.
    """
    image = keras.Input((input_size, input_size, 1), name="image")
    _, logits = apply_expression_backbone(image, num_classes, filters, feature_dim, name,
                                          backbone)
    probabilities = keras.layers.Softmax(name="probabilities")(logits)
    return keras.Model(image, probabilities, name=name)


def transfer_classifier_weights(source: keras.Model, target: keras.Model) -> list[str]:
    """Copies a (FER+-pretrained) :func:`build_classifier` into a pair classifier ``E``.

    Layers are matched by name (both must use the same ``name`` prefix). The first
    convolution sees 1 channel in ``source`` and 2 in ``target``: its kernel is halved onto
    both channels, so ``E([x, x])`` starts equal to ``source(x)``. A dense layer of another
    shape (the logits of a source trained on another number of classes, e.g. FER+'s 8) is
    left as it is. With the ``resnet18_std`` backbone the source may also be the FER+
    expression model of that backbone (``keras_fer.models.expression``): its trunk
    (``resnet18_std_*``, first convolution split the same way) is copied, its ``logits`` head
    matches no layer here, so ``E``'s feature and logits layers stay as built.

    Returns:
        The names of the layers copied.
    """
    copied = []
    for layer in target.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        try:
            source_weights = source.get_layer(layer.name).get_weights()
        except ValueError:
            continue
        if source_weights[0].shape != weights[0].shape:
            if weights[0].ndim != 4:
                continue
            repeats = weights[0].shape[2] // source_weights[0].shape[2]
            kernel = np.repeat(source_weights[0], repeats, axis=2) / repeats
            if kernel.shape != weights[0].shape:
                raise ValueError(
                    f"Cannot map {layer.name} kernel {source_weights[0].shape} "
                    f"onto {weights[0].shape}."
                )
            source_weights = [kernel] + source_weights[1:]
        layer.set_weights(source_weights)
        copied.append(layer.name)
    return copied


def average_identity_targets(
    faces: np.ndarray, labels: np.ndarray, num_classes: int, fill_missing: bool = False
) -> np.ndarray:
    """Mean face per expression class: the "average identity" targets.

    Call it with the *training fold* only, so no test subject leaks into the targets.

    Args:
        faces: ``(N, H, W, C)`` float faces (model input range ``[0, 1]``).
        labels: ``(N,)`` int class indices.
        num_classes: number of classes ``K``.
        fill_missing: give a class without training images the mean of all faces instead
            of raising.

    Returns:
        ``(K, H, W, C)`` float32 average faces.
    """
    faces = np.asarray(faces, dtype=np.float32)
    labels = np.asarray(labels).reshape(-1)
    if faces.ndim != 4 or len(faces) != len(labels):
        raise ValueError(
            "Expected faces (N, H, W, C) and N labels. "
            f"Received: faces.shape={faces.shape}, labels.shape={labels.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"Labels must be in [0, {num_classes}). "
            f"Received range [{labels.min()}, {labels.max()}]"
        )
    targets = np.empty((num_classes,) + faces.shape[1:], dtype=np.float32)
    missing = []
    for k in range(num_classes):
        members = faces[labels == k]
        if len(members):
            targets[k] = members.mean(axis=0)
        else:
            missing.append(k)
    if missing:
        if not fill_missing or not len(faces):
            raise ValueError(
                f"No training faces for classes {missing} (fill_missing={fill_missing})."
            )
        targets[missing] = faces.mean(axis=0)
    return targets


def ifgan_targets(labels: np.ndarray, average_faces: np.ndarray) -> dict:
    """``y`` for :meth:`IFGAN.fit`: ``{"expression": (N,) int32, "target": (N, H, W, C)}``."""
    labels = np.asarray(labels).reshape(-1).astype(np.int32)
    return {"expression": labels, "target": np.asarray(average_faces, np.float32)[labels]}


def ifgan_optimizer(
    steps_per_epoch: int | None = None, learning_rate: float = 1e-4
) -> keras.optimizers.Optimizer:
    """The paper's optimizer: Adam(1e-4, betas 0.9/0.99), weight decay 1e-4, lr x0.9 / 10 epochs.

    Keras applies ``weight_decay`` decoupled (AdamW style) where the paper's PyTorch Adam
    adds it to the gradient; at 1e-4 the difference is small. Without ``steps_per_epoch``
    the learning rate stays constant. Each of G, D, E needs its own instance.
    """
    lr = learning_rate
    if steps_per_epoch:
        lr = keras.optimizers.schedules.ExponentialDecay(
            learning_rate, decay_steps=10 * int(steps_per_epoch), decay_rate=0.9, staircase=True
        )
    return keras.optimizers.Adam(learning_rate=lr, beta_1=0.9, beta_2=0.99, weight_decay=1e-4)


class IFGAN(MultiOptimizerModel):
    """Joint G / D / E trainer (keras-io GAN pattern); never exported itself.

    ``fit(x, y)`` takes faces ``x (B, S, S, 1)`` in ``[0, 1]`` and
    ``y = {"expression": (B,) int, "target": (B, S, S, 1) average face of that class}``
    (see :func:`ifgan_targets`). Calling the model gives the inference path's probabilities.

    Args:
        generator: ``G``, image -> image.
        discriminator: ``D([condition, candidate])`` -> patch logits.
        classifier: ``E([condition, candidate])`` -> ``{"features", "logits"}``.
        num_classes: expression classes.
        cgan_weight, l1_weight, softmax_weight, island_weight: loss weights.
        island_alpha, centre_rate: island loss parameters.
        adversarial: ``"bce"`` or ``"lsgan"``.
        **kwargs: ``keras.Model`` arguments.
    """

    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        classifier: keras.Model,
        num_classes: int,
        cgan_weight: float = 1.0,
        l1_weight: float = 20.0,
        softmax_weight: float = 10.0,
        island_weight: float = 1.0,
        island_alpha: float = 0.03,
        centre_rate: float = 0.5,
        adversarial: str = "bce",
        **kwargs,
    ):
        kwargs.setdefault("name", "ifgan")
        super().__init__(log_names=LOG_NAMES, **kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.classifier = classifier
        self.num_classes = int(num_classes)
        self.cgan_weight = float(cgan_weight)
        self.l1_weight = float(l1_weight)
        self.softmax_weight = float(softmax_weight)
        self.island_weight = float(island_weight)
        self.adversarial = adversarial
        feature_dim = classifier.output["features"].shape[-1]
        self.island = IslandLoss(num_classes, island_alpha, centre_rate, name=f"{self.name}_island")
        self.island.build((None, feature_dim))
        # G, D and E arrive built, so the wrapper is complete (needed by save_weights).
        self.built = True

    def compile(self, g_optimizer=None, d_optimizer=None, e_optimizer=None, **kwargs) -> None:
        """Compiles with one optimizer each for G, D and E (default: :func:`ifgan_optimizer`)."""
        super().compile(
            optimizers={
                "generator": g_optimizer or ifgan_optimizer(),
                "discriminator": d_optimizer or ifgan_optimizer(),
                "classifier": e_optimizer or ifgan_optimizer(),
            },
            **kwargs,
        )

    def variable_groups(self) -> dict[str, list]:
        return {
            "generator": self.generator.trainable_variables,
            "discriminator": self.discriminator.trainable_variables,
            "classifier": self.classifier.trainable_variables,
        }

    def call(self, inputs, training=False):
        generated = self.generator(inputs, training=training)
        logits = self.classifier([inputs, generated], training=training)["logits"]
        return ops.softmax(logits, axis=-1)

    def compute_losses(self, x, y, training: bool = True) -> tuple[dict, dict]:
        labels = ops.reshape(ops.cast(y["expression"], "int32"), (-1,))
        target = y["target"]
        generated = self.generator(x, training=training)
        real_logits_d = self.discriminator([x, target], training=training)
        fake_logits_d = self.discriminator([x, generated], training=training)
        real = self.classifier([x, target], training=training)
        fake = self.classifier([x, generated], training=training)

        ce = ops.mean(
            ops.sparse_categorical_crossentropy(labels, real["logits"], from_logits=True)
        ) + ops.mean(ops.sparse_categorical_crossentropy(labels, fake["logits"], from_logits=True))
        island = self.island(
            ops.concatenate([real["features"], fake["features"]], axis=0),
            ops.concatenate([labels, labels], axis=0),
            training=training,
        )
        adversarial = generator_adversarial_loss(fake_logits_d, self.adversarial)
        reconstruction = l1_loss(target, generated)
        e_loss = self.softmax_weight * ce + self.island_weight * island
        g_loss = self.cgan_weight * adversarial + self.l1_weight * reconstruction + e_loss
        d_loss = self.cgan_weight * discriminator_loss(
            real_logits_d, fake_logits_d, self.adversarial
        )
        predicted = ops.cast(ops.argmax(fake["logits"], axis=-1), "int32")
        accuracy = ops.mean(ops.cast(ops.equal(predicted, labels), "float32"))
        losses = {"generator": g_loss, "discriminator": d_loss, "classifier": e_loss}
        logs = {
            "g_loss": g_loss,
            "d_loss": d_loss,
            "e_loss": e_loss,
            "adv_loss": adversarial,
            "l1_loss": reconstruction,
            "ce_loss": ce,
            "island_loss": island,
            "accuracy": accuracy,
        }
        return losses, logs


def build_ifgan(config: IFGANConfig) -> IFGAN:
    """Builds G, D, E from ``config`` and wraps them in an (uncompiled) :class:`IFGAN`."""
    generator = build_unet_generator(
        UNetConfig(
            input_size=config.input_size,
            base_filters=config.generator_filters,
            use_attention=config.use_attention,
            dropout=config.generator_dropout,
        )
    )
    discriminator = build_patchgan(
        PatchGANConfig(
            input_size=config.input_size,
            base_filters=config.discriminator_filters,
            spectral_norm=config.spectral_norm,
        )
    )
    classifier = build_expression_classifier(
        config.num_classes, config.input_size, config.classifier_filters, config.feature_dim,
        backbone=config.classifier_backbone,
    )
    return IFGAN(
        generator,
        discriminator,
        classifier,
        config.num_classes,
        cgan_weight=config.cgan_weight,
        l1_weight=config.l1_weight,
        softmax_weight=config.softmax_weight,
        island_weight=config.island_weight,
        island_alpha=config.island_alpha,
        centre_rate=config.centre_rate,
        adversarial=config.adversarial,
    )


def build_inference_model(
    generator: keras.Model, classifier: keras.Model, name: str = "ifgan_inference"
) -> keras.Model:
    """The exported IF-GAN: input ``"image"`` -> G -> E(image, G(image)) -> probabilities.

    Args:
        generator: trained ``G`` (e.g. ``ifgan.generator``).
        classifier: trained pair classifier ``E`` (e.g. ``ifgan.classifier``).
        name: model name.

    Returns:
        Functional model, ``(B, S, S, 1)`` in ``[0, 1]`` -> ``(B, K)`` softmax
        probabilities (layer ``"probabilities"``).
    """
    image = keras.Input(generator.input_shape[1:], name="image")
    generated = generator(image)
    logits = classifier([image, generated])["logits"]
    probabilities = keras.layers.Softmax(name="probabilities")(logits)
    return keras.Model(image, probabilities, name=name)
