"""TFE-JL: tandem identity + emotion features, learned jointly on expression data.

The tandem model runs an identity network and the ResNet emotion network (64-d GAP feature)
side by side on the same face, batch-normalises each feature (the two come from different
networks and data, so their scales differ), concatenates them to the TFE feature and
classifies it with FC layers and a softmax. The identity network (``TFEConfig.identity``):

- ``face_resnet`` (default): dlib's face ResNet (:mod:`keras_fer.models.face_embedding`), in
  place of the paper's DeepID trained on CASIA-WebFace: our 48x48 [0, 1] face is scaled to
  0..255, resized to 150x150 and repeated to RGB inside the model; its raw 128-d embedding
  (dropout 0.4) gives a 192-d TFE feature. It comes pretrained and needs no stage 1.
- ``deepid``: the project's DeepID (160-d feature, dropout 0.4; 224-d TFE feature),
  pretrained on the fold's subjects plus ORL: the small option.

Either way the identity network is *fine-tuned* in the joint stage, not frozen: the paper
"jointly learn[s] the parameters of the merged network" with its own, smaller learning rate
for the identity network (CK+: 0.01 against 0.16 for the ResNet). dlib's ``affine`` layers
(its frozen batch normalisation) stay fixed, as in dlib.

Training follows the paper in three steps:

1. pretrain :func:`~keras_fer.models.deepid.build_deepid` on identities (``deepid`` only) and
   :func:`~keras_fer.models.resnet.build_resnet` on expressions (the latter, trained on its
   own, is also the ResNet-only baseline); :func:`build_tfe_pretraining_models` builds both
   with the layer names of the tandem model;
2. copy their weights in with :func:`keras_fer.models.transfer.transfer_weights`: layers are
   prefixed ``deepid_*``, ``resnet_*`` (shared with the pretraining models) and ``tandem_*``
   (new, randomly initialised);
3. learn the whole merged network on expression data with :func:`joint_optimizer`, which
   gives the identity network's variables their own, smaller learning rate (CK+: 0.16 for
   ResNet and the tandem head, 0.01 for DeepID or the face network; SGD with momentum 0.9). It is Keras' own
   ``MultiOptimizer``, which dispatches variables to sub-optimizers by variable path, so the
   standard ``fit`` works unchanged on TensorFlow and JAX, and ``LearningRateScheduler``
   steps each sub-optimizer's rate.

The emotion network (``TFEConfig.emotion``) is the paper's ResNet (``resnet``: ResNet12/18 with a
64-d feature) or ``resnet18_std``: the standard ResNet-18 of :mod:`keras_fer.models.expression`
(512-d feature), the backbone of the shipped FER+ model, so that the tandem model can start
from it (issue 20: every method from the new backbones). Its layers are named
``resnet18_std_*``, as in the expression model, so its weights transfer by name.

The tandem FC layers are not specified by the paper; the project uses one hidden ReLU
layer of 256 units with dropout 0.5 by default (``TFEConfig.hidden_units``).
"""

from __future__ import annotations

import dataclasses

import keras
from keras import layers

from keras_fer.models import face_embedding
from keras_fer.models.deepid import IDENTITY_DROPOUT, apply_deepid_backbone, build_deepid
from keras_fer.models.resnet import RESNET_BLOCKS, apply_resnet_backbone, build_resnet

DEEPID_PREFIX = "deepid"
RESNET_PREFIX = "resnet"
TANDEM_PREFIX = "tandem"

IDENTITIES = (face_embedding.FACE_RESNET, face_embedding.DEEPID)
EMOTIONS = ("resnet", "resnet18_std")
# Variables of the identity network, whichever it is: DeepID's or dlib's layers.
IDENTITY_VARIABLES = f"(?:.*/)?(?:{DEEPID_PREFIX}|{face_embedding.FACE_PREFIX})_[^/]*/.*"

LearningRate = float | keras.optimizers.schedules.LearningRateSchedule


@dataclasses.dataclass(frozen=True)
class TFEConfig:
    """Configuration of the tandem model and of its joint-learning optimiser.

    Attributes:
        num_classes: Expression classes of the tandem (and ResNet) softmax.
        num_identities: Subjects of the DeepID pretraining softmax (not part of the tandem
            graph, which only uses the 160-d feature); unused with ``face_resnet``.
        resnet_depth: 12 (CK+) or 18 (FER+).
        hidden_units: Widths of the tandem FC layers between the TFE feature and the softmax.
        dropout: Dropout after each tandem FC layer.
        identity_dropout: Dropout after the DeepID feature (the paper: 0.4).
        input_shape: ``(H, W, C)`` of the ``"image"`` input.
        resnet_lr: Joint-learning rate of the ResNet and tandem variables (CK+: 0.16).
        deepid_lr: Joint-learning rate of the identity network's variables (CK+: 0.01).
        momentum: SGD momentum of both groups.
        name: Name of the tandem model.
        identity: ``"face_resnet"`` (dlib's face network) or ``"deepid"``.
        emotion: ``"resnet"`` (ResNet12/18 of ``resnet_depth``) or ``"resnet18_std"``.
    """

    num_classes: int
    num_identities: int
    resnet_depth: int = 12
    hidden_units: tuple[int, ...] = (256,)
    dropout: float = 0.5
    identity_dropout: float = IDENTITY_DROPOUT
    input_shape: tuple[int, int, int] = (48, 48, 1)
    resnet_lr: float = 0.16
    deepid_lr: float = 0.01
    momentum: float = 0.9
    name: str = "tfe"
    identity: str = face_embedding.FACE_RESNET
    emotion: str = "resnet"

    def __post_init__(self) -> None:
        face_embedding.check_identity(self.identity, IDENTITIES, "TFE-JL")
        if self.emotion not in EMOTIONS:
            raise ValueError(f"TFE-JL's emotion network is one of {EMOTIONS}. Received: "
                             f"emotion={self.emotion!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2. Received: num_classes={self.num_classes}")
        if self.identity == face_embedding.DEEPID and self.num_identities < 2:
            raise ValueError(
                f"num_identities must be >= 2. Received: num_identities={self.num_identities}"
            )
        if self.resnet_depth not in RESNET_BLOCKS:
            raise ValueError(
                f"resnet_depth must be one of {sorted(RESNET_BLOCKS)}. "
                f"Received: resnet_depth={self.resnet_depth}"
            )
        if any(units < 1 for units in self.hidden_units):
            raise ValueError(
                f"hidden_units must be positive. Received: hidden_units={self.hidden_units}"
            )
        for field in ("dropout", "identity_dropout"):
            value = getattr(self, field)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{field} must be in [0, 1). Received: {field}={value}")


def build_tfe_pretraining_models(config: TFEConfig) -> tuple[keras.Model, keras.Model]:
    """The DeepID identity classifier and ResNet expression classifier to pretrain.

    Their layer names match the tandem model's, so :func:`transfer_weights` moves every
    backbone layer; only their softmax layers stay behind.

    Returns:
        ``(deepid, resnet)``.
    """
    deepid = build_deepid(config.num_identities, config.input_shape, name=DEEPID_PREFIX)
    return deepid, build_emotion_classifier(config)


def apply_emotion_backbone(image: keras.KerasTensor, config: TFEConfig) -> keras.KerasTensor:
    """The emotion network's pooled feature (64-d ResNet12/18 or 512-d ResNet-18 std)."""
    if config.emotion == "resnet18_std":
        from keras_fer.models.expression import apply_resnet18_std

        return apply_resnet18_std(image)
    return apply_resnet_backbone(image, config.resnet_depth, name=RESNET_PREFIX)


def build_emotion_classifier(config: TFEConfig) -> keras.Model:
    """The emotion network alone with a softmax: the pretraining model and the baseline.

    Its layer names match the tandem model's (its head excepted).
    """
    if config.emotion == "resnet18_std":
        from keras_fer.models.expression import build_expression_model

        return build_expression_model("resnet18_std", config.num_classes, weights=None,
                                      name=RESNET_PREFIX)
    return build_resnet(config.resnet_depth, config.num_classes, config.input_shape,
                        name=RESNET_PREFIX)


def build_tfe(config: TFEConfig, face_weights: str | None = "dlib") -> keras.Model:
    """Builds the tandem model ``image (B, H, W, C) -> softmax (B, num_classes)``.

    The TFE feature (224-d with DeepID, 192-d with the face network) is the output of layer
    ``"tandem_concat"``; the identity feature before dropout is layer ``"identity_feature"``.

    Args:
        config: The model's settings.
        face_weights: With ``identity="face_resnet"``: ``"dlib"`` (the trained network) or
            ``None`` (random; e.g. when a trained tandem model's weights are loaded next).
    """
    image = keras.Input(shape=config.input_shape, name="image")
    if config.identity == face_embedding.FACE_RESNET:
        if config.input_shape[-1] != 1:
            raise ValueError("The face network takes gray faces (H, W, 1). Received: "
                             f"input_shape={config.input_shape}")
        face = face_embedding.FaceNetInput(name=f"{face_embedding.FACE_PREFIX}_input")(image)
        identity = face_embedding.dlib_resnet(weights=face_weights)(face)
        prefix = face_embedding.FACE_PREFIX
    else:
        identity = apply_deepid_backbone(image, name=DEEPID_PREFIX)
        prefix = DEEPID_PREFIX
    identity = layers.Identity(name="identity_feature")(identity)
    identity = layers.Dropout(config.identity_dropout, name=f"{prefix}_dropout")(identity)
    emotion = apply_emotion_backbone(image, config)
    identity = layers.BatchNormalization(name=f"{TANDEM_PREFIX}_identity_bn")(identity)
    emotion = layers.BatchNormalization(name=f"{TANDEM_PREFIX}_emotion_bn")(emotion)
    x = layers.Concatenate(name=f"{TANDEM_PREFIX}_concat")([identity, emotion])
    for index, units in enumerate(config.hidden_units, start=1):
        x = layers.Dense(
            units,
            activation="relu",
            kernel_initializer="he_normal",
            name=f"{TANDEM_PREFIX}_fc{index}",
        )(x)
        x = layers.Dropout(config.dropout, name=f"{TANDEM_PREFIX}_fc{index}_dropout")(x)
    probs = layers.Dense(
        config.num_classes, activation="softmax", name=f"{TANDEM_PREFIX}_predictions"
    )(x)
    return keras.Model(image, probs, name=config.name)


def joint_optimizer(
    config: TFEConfig,
    resnet_lr: LearningRate | None = None,
    deepid_lr: LearningRate | None = None,
) -> keras.optimizers.MultiOptimizer:
    """SGD with one learning rate for the identity network and another for all the rest.

    Variables whose path has a layer named ``deepid_*`` or ``dlib_resnet_*`` (at any nesting
    depth) go to the identity sub-optimizer; the ResNet and tandem variables go to the
    default one.

    Args:
        config: Supplies ``resnet_lr``, ``deepid_lr`` and ``momentum``.
        resnet_lr: Overrides ``config.resnet_lr``, e.g. with a schedule.
        deepid_lr: Overrides ``config.deepid_lr``, e.g. with a schedule.

    Returns:
        A ``keras.optimizers.MultiOptimizer`` for ``model.compile``.
    """
    resnet_sgd = keras.optimizers.SGD(
        config.resnet_lr if resnet_lr is None else resnet_lr,
        momentum=config.momentum,
        name="resnet_sgd",
    )
    deepid_sgd = keras.optimizers.SGD(
        config.deepid_lr if deepid_lr is None else deepid_lr,
        momentum=config.momentum,
        name="deepid_sgd",
    )
    optimizer_map = keras.optimizers.OptimizerMap(
        default_optimizer=resnet_sgd,
        optimizer_map={IDENTITY_VARIABLES: deepid_sgd},
    )
    return keras.optimizers.MultiOptimizer(optimizer_map, name="tfe_joint_sgd")


def inference_model(tfe_model: keras.Model) -> keras.Model:
    """The export contract: ``"image"`` float32 (B, 48, 48, 1) in [0, 1] -> probabilities.

    Shares layers and weights with ``tfe_model`` (dropout and BN run in inference mode when
    the model is called with ``training=False``, as ``predict`` and export do).
    """
    try:
        image = tfe_model.get_layer("image").output
        probs = tfe_model.get_layer(f"{TANDEM_PREFIX}_predictions").output
    except ValueError as err:
        raise ValueError(
            f"Expected a tandem model with layers 'image' and '{TANDEM_PREFIX}_predictions'. "
            f"Received model '{tfe_model.name}' with layers "
            f"{[layer.name for layer in tfe_model.layers[:5]]}..."
        ) from err
    return keras.Model(image, probs, name=f"{tfe_model.name}_inference")
