"""IDEnNet: identity-enhanced network for FER (Li et al., 2018), its four variants.

Stages and models (all functional, layers named so weights move by name):

1. Pretraining. :func:`build_emotion_pretrain_model` = emotion feature group (``emo_stem``,
   ``emo_block1``, ``emo_transition1``, ``emo_block2``, ``emo_transition2``) + Emotion Dense
   Block 3 (``emo_block3``) + BN-ReLU-GAP (``emo_head``) + dropout + ``fc_emo``.
   :func:`build_identity_pretrain_model` is the same with prefix ``id`` and an identity
   classifier ``id_pretrain_fc`` (softmax cross-entropy; compile it yourself).
2. Fine-tuning. :func:`build_idennet` returns an :class:`IDEnNetTrainer`, then
   :func:`transfer_weights` copies both pretrained streams in by layer name and
   :func:`freeze_feature_groups` freezes the two groups.

   - ``original``: emotion group -> Fusion Dense Block -> BN-ReLU-GAP -> FC_emo.
   - ``i``: original + FC_id (linear + softmax over the fold's identities, focal loss).
   - ``f``: both groups; concat (2D channels) -> 1x1 conv with bias (``fusion_conv``, D^c = D)
     -> Fusion Dense Block -> BN-ReLU-GAP -> FC_emo.
   - ``if``: f + FC_id.
3. Inference. :func:`inference_model`: "image" -> expression probabilities only.

``emotion_backbone="resnet18_std"`` (issue 20: start from the shipped FER+ ResNet-18) makes
the emotion group the standard ResNet-18's stem and stages 1-3 (12x12x256 at 48 px, the
DenseNet group's grid) and "Emotion Dense Block 3" its stage 4 followed by its global pool
(layer names ``resnet18_std_*`` as in :mod:`keras_fer.models.expression`, so ``emotion_init``
copies the FER+ trunk by name). The identity stream stays the DenseNet group; the 1x1 fusion
conv maps the 256 + D concatenated channels to 256, the input width of stage 4, which is the
fusion block as block 3 is above.

How the Fusion Dense Block "is initialised from and shares weights with Emotion Dense
Block 3": in the fine-tuning model the fusion block *is* Emotion Dense Block 3 - the same
layers, named ``emo_block3_*`` - applied to the fused map instead of the emotion group's map.
Block 3 has no other use after pretraining (the paper's Fig. 2 drops it), so there is one set
of weights: it starts from the pretrained block 3 and is trained in fine-tuning (the paper
fine-tunes the layers after the concatenation and freezes the groups). Consequences: D^c must
equal D (block 3's input width), and ``original`` is exactly the emotion pretraining
architecture. By default :func:`build_idennet` creates fresh ``emo_block3`` layers and
:func:`transfer_weights` copies the pretrained values; passing ``emotion_model=`` instead
reuses that model's block-3 layer objects, so both models hold the very same variables
(sharing in the strict sense).

Reading choice: the paper's Fig. 2 lists "Concatenate, Conv, Pooling" for the fusion, which
could mean the groups end at Dense Block 2 and the fusion conv replaces the last transition
conv. Here each group ends with its full transition (as METHODS.md's "dense block 1 + dense
block 2 (with transitions)"), so the two maps are concatenated at 12x12 and the 1x1 fusion conv
works on already-compressed features. Both readings give the same channel counts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
from keras import ops

from keras_fer.layers.dense_block import apply_dense_block
from keras_fer.losses.focal_identity import identity_label_mask, self_constrained_focal
from keras_fer.models.expression import RESNET18_WIDTHS, apply_resnet18_std_stages
from keras_fer.models.densenet import (
    apply_feature_group,
    apply_pooled_head,
    feature_group_channels,
    is_feature_group_layer,
    layers_per_block,
)

# Re-exported: the trainer and tests call ``idennet.transfer_weights`` (it skips, and
# reports, heads whose class count differs, e.g. ``fc_emo`` after FER+ pretraining).
from keras_fer.models.transfer import TransferReport, transfer_weights  # noqa: F401

VARIANTS = ("original", "i", "f", "if")
EMOTION_BACKBONES = ("densenet", "resnet18_std")
RESNET = "resnet18_std"
# The ResNet-18 emotion group: its stem and stages 1-3 (frozen with the DenseNet groups).
RESNET_GROUP = tuple(f"{RESNET}_{part}" for part in ("stem", "s1", "s2", "s3"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class IDEnNetConfig:
    """Architecture and loss settings of one IDEnNet variant.

    Attributes:
        variant: "original", "i" (identity head), "f" (fusion) or "if" (both).
        depth: DenseNet-BC depth, ``6 * n + 4`` (16, 22, 40 in the paper).
        growth_rate: Channels per conv ``k`` (paper: 12).
        num_classes: Expression classes.
        num_identities: Identities of the training fold (FC_id width); "i"/"if" only.
        input_shape: Model input, channels last.
        dropout: Dropout before FC_emo.
        fusion_channels: D^c; None means D. Must equal D, because the fusion block is the
            pretrained Emotion Dense Block 3 and takes D channels.
        alpha: Focal identity loss weight.
        gamma: Focal identity loss exponent.
        layers_per_block: Overrides the layers per dense block that ``depth`` implies
            (tiny test models).
        compression: DenseNet-BC transition compression (0.5; the paper does not say).
        emotion_backbone: ``"densenet"`` (the paper's) or ``"resnet18_std"`` (module
            docstring).
    """

    variant: str
    depth: int
    growth_rate: int = 12
    num_classes: int
    num_identities: int | None = None
    input_shape: tuple[int, int, int] = (48, 48, 1)
    dropout: float = 0.5
    fusion_channels: int | None = None
    alpha: float = 0.1
    gamma: float = 15.0
    layers_per_block: int | None = None
    compression: float = 0.5
    emotion_backbone: str = "densenet"

    def __post_init__(self) -> None:
        if self.emotion_backbone not in EMOTION_BACKBONES:
            raise ValueError(f"emotion_backbone must be one of {EMOTION_BACKBONES}. "
                             f"Received: emotion_backbone={self.emotion_backbone!r}")
        if self.variant not in VARIANTS:
            raise ValueError(
                f"variant must be one of {VARIANTS}. Received: variant={self.variant!r}"
            )
        if self.layers_per_block is None:
            layers_per_block(self.depth)
        elif not isinstance(self.layers_per_block, int) or self.layers_per_block < 1:
            raise ValueError(
                f"layers_per_block must be a positive integer or None. "
                f"Received: layers_per_block={self.layers_per_block!r}"
            )
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2. Received: num_classes={self.num_classes}")
        if self.has_identity_head and (self.num_identities is None or self.num_identities < 2):
            raise ValueError(
                f"variant {self.variant!r} has an identity head and needs num_identities >= 2. "
                f"Received: num_identities={self.num_identities}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1). Received: dropout={self.dropout}")
        if self.fusion_channels is not None and self.fusion_channels != self.emotion_channels:
            raise ValueError(
                "fusion_channels must equal the emotion group's output channels "
                f"D={self.emotion_channels}: the Fusion Dense Block is Emotion Dense Block 3 "
                f"and takes D channels. Received: fusion_channels={self.fusion_channels}"
            )

    @property
    def num_layers(self) -> int:
        """Bottleneck layers per dense block."""
        return self.layers_per_block or layers_per_block(self.depth)

    @property
    def group_channels(self) -> int:
        """D: channels of each feature group's output map (= D^c)."""
        return feature_group_channels(self.num_layers, self.growth_rate, self.compression)

    @property
    def emotion_channels(self) -> int:
        """Channels of the emotion group's map (= D^c, the fusion conv's output)."""
        return RESNET18_WIDTHS[2] if self.emotion_backbone == RESNET else self.group_channels

    @property
    def has_identity_head(self) -> bool:
        return self.variant in ("i", "if")

    @property
    def has_fusion(self) -> bool:
        return self.variant in ("f", "if")


def _image_input(config: IDEnNetConfig) -> Any:
    return keras.Input(shape=config.input_shape, name="image", dtype="float32")


def _expression_head(pooled: Any, config: IDEnNetConfig) -> Any:
    x = keras.layers.Dropout(config.dropout, name="emo_dropout")(pooled)
    x = keras.layers.Dense(config.num_classes, name="fc_emo")(x)
    # float32 softmax keeps the probabilities exact under mixed precision.
    return keras.layers.Activation("softmax", dtype="float32", name="expression")(x)


def _stream(image: Any, prefix: str, config: IDEnNetConfig) -> Any:
    if prefix == "emo" and config.emotion_backbone == RESNET:
        return apply_resnet18_std_stages(image, range(4), name=RESNET)
    return apply_feature_group(
        image, prefix, config.num_layers, config.growth_rate, config.compression
    )


def _emotion_block3(x: Any, config: IDEnNetConfig, reuse_from=None) -> Any:
    """Emotion Dense Block 3 (the fusion block) and the pooling after it."""
    if config.emotion_backbone == RESNET:
        if reuse_from is not None:
            raise ValueError("emotion_model= (shared block-3 variables) is only for the "
                             "DenseNet emotion stream; use transfer_weights with resnet18_std.")
        x = apply_resnet18_std_stages(x, (4,), name=RESNET)
        return keras.layers.GlobalAveragePooling2D(name=f"{RESNET}_pool")(x)
    x = apply_dense_block(x, config.num_layers, config.growth_rate, name="emo_block3",
                          reuse_from=reuse_from)
    return apply_pooled_head(x, "emo_head")


def build_emotion_pretrain_model(config: IDEnNetConfig) -> keras.Model:
    """Emotion group + Emotion Dense Block 3 + BN-ReLU-GAP + FC_emo (softmax), for stage 1.

    Args:
        config: Any variant's config (only depth, growth, classes, input and dropout are used).

    Returns:
        A functional model "image" -> "expression" probabilities ``(B, num_classes)``.
    """
    image = _image_input(config)
    x = _stream(image, "emo", config)
    probs = _expression_head(_emotion_block3(x, config), config)
    return keras.Model(image, probs, name="idennet_emotion_pretrain")


def build_identity_pretrain_model(config: IDEnNetConfig, num_identities: int) -> keras.Model:
    """Identity group + Identity Dense Block 3 + BN-ReLU-GAP + identity softmax, for stage 1.

    Args:
        config: Any variant's config (depth, growth and input are used).
        num_identities: Identities of the pretraining set.

    Returns:
        A functional model "image" -> "identity" probabilities ``(B, num_identities)``.
    """
    if num_identities < 2:
        raise ValueError(f"num_identities must be >= 2. Received: num_identities={num_identities}")
    image = _image_input(config)
    x = _stream(image, "id", config)
    x = apply_dense_block(x, config.num_layers, config.growth_rate, name="id_block3")
    x = apply_pooled_head(x, "id_head")
    x = keras.layers.Dense(num_identities, name="id_pretrain_fc")(x)
    probs = keras.layers.Activation("softmax", dtype="float32", name="identity")(x)
    return keras.Model(image, probs, name="idennet_identity_pretrain")


def build_idennet(
    config: IDEnNetConfig, emotion_model: keras.Model | None = None
) -> "IDEnNetTrainer":
    """The fine-tuning model of ``config.variant``.

    Args:
        config: The variant's config.
        emotion_model: Optional stage-1 emotion model whose ``emo_block3`` layer objects become
            the Fusion Dense Block (shared variables). Without it the block is created fresh
            under the same names, ready for :func:`transfer_weights`.

    Returns:
        An :class:`IDEnNetTrainer` with dict outputs ``{"expression": (B, num_classes)}`` plus
        ``"identity": (B, num_identities)`` for variants "i" and "if".
    """
    image = _image_input(config)
    x = _stream(image, "emo", config)
    if config.has_fusion:
        identity_map = _stream(image, "id", config)
        x = keras.layers.Concatenate(axis=-1, name="fusion_concat")([x, identity_map])
        x = keras.layers.Conv2D(
            config.emotion_channels, 1, use_bias=True, kernel_initializer="he_normal",
            name="fusion_conv",
        )(x)
    pooled = _emotion_block3(x, config, reuse_from=emotion_model)
    outputs = {"expression": _expression_head(pooled, config)}
    if config.has_identity_head:
        logits = keras.layers.Dense(config.num_identities, name="fc_id")(pooled)
        outputs["identity"] = keras.layers.Activation(
            "softmax", dtype="float32", name="identity"
        )(logits)
    return IDEnNetTrainer(
        inputs=image, outputs=outputs, alpha=config.alpha, gamma=config.gamma,
        name=f"idennet_{config.variant}",
    )


def _split_labels(y: Any) -> tuple[Any, Any]:
    """``y`` as dict, (expression, identity) pair or bare expression labels."""
    if isinstance(y, Mapping):
        if "expression" not in y:
            raise ValueError(f"Label dict needs an 'expression' key. Received keys: {list(y)}")
        return y["expression"], y.get("identity")
    if isinstance(y, (tuple, list)):
        if len(y) != 2:
            raise ValueError(f"Expected (expression, identity) labels. Received {len(y)} items.")
        return y[0], y[1]
    return y, None


def _weighted_mean(values: Any, weights: Any) -> Any:
    """Sum(w * v) / sum(w), 0 when every weight is 0."""
    weights = ops.cast(weights, values.dtype)
    return ops.sum(values * weights) / ops.maximum(ops.sum(weights), 1e-12)


def _per_head(sample_weight: Any, key: str) -> Any:
    if isinstance(sample_weight, Mapping):
        return sample_weight.get(key)
    return sample_weight


@keras.saving.register_keras_serializable(package="keras_fer")
class IDEnNetTrainer(keras.Model):
    """Functional IDEnNet whose ``compute_loss`` is ``L_emo + L_id`` (Eq. 5).

    Built like a functional model (``IDEnNetTrainer(inputs=..., outputs={...})``, see
    :func:`build_idennet`); compile with an optimizer only (a compiled ``loss`` is not
    used). Labels ``y`` are a dict ``{"expression": (B,), "identity": (B,)}``, an
    ``(expression, identity)`` pair, or bare expression labels for variants without identity
    head. Identity label -1 means "no identity
    label": that sample is left out of L_id, which averages over labelled samples only (0 when
    a batch has none), so its scale does not depend on the fraction of labelled samples.
    Metrics: ``loss``, ``emo_loss``, ``id_loss`` (0 without identity head), ``accuracy``.

    Args:
        alpha: Focal identity loss weight.
        gamma: Focal identity loss exponent.
        *args: Functional ``Model`` arguments (inputs, outputs).
        **kwargs: Functional ``Model`` keyword arguments (name, ...).
    """

    def __init__(self, *args: Any, alpha: float = 0.1, gamma: float = 15.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        self.emo_loss_tracker = keras.metrics.Mean(name="emo_loss")
        self.id_loss_tracker = keras.metrics.Mean(name="id_loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        if not isinstance(y_pred, Mapping) or "expression" not in y_pred:
            raise ValueError(
                "IDEnNetTrainer needs dict outputs with an 'expression' key. "
                f"Received: {type(y_pred).__name__}"
            )
        expression, identity = _split_labels(y)
        expression = ops.reshape(ops.cast(expression, "int32"), (-1,))
        probs = y_pred["expression"]
        weights = _per_head(sample_weight, "expression")
        if weights is None:
            weights = ops.ones_like(expression, dtype=probs.dtype)
        weights = ops.reshape(ops.cast(weights, probs.dtype), (-1,))
        emo_loss = _weighted_mean(
            keras.losses.sparse_categorical_crossentropy(expression, probs), weights
        )
        total = emo_loss
        id_loss = ops.zeros((), dtype=emo_loss.dtype)
        if "identity" in y_pred:
            if identity is None:
                raise ValueError(
                    f"Model {self.name!r} has an identity head: give labels as "
                    "{'expression': ..., 'identity': ...} (identity -1 when unknown)."
                )
            id_probs = y_pred["identity"]
            id_weights = _per_head(sample_weight, "identity")
            if id_weights is None:
                id_weights = weights
            id_weights = ops.reshape(ops.cast(id_weights, id_probs.dtype), (-1,))
            mask = identity_label_mask(identity, id_probs) * id_weights
            per_sample = self_constrained_focal(identity, id_probs, self.alpha, self.gamma)
            id_loss = _weighted_mean(per_sample, mask)
            total = total + id_loss
        for extra in self.losses:
            total = total + ops.sum(extra)
        self.emo_loss_tracker.update_state(emo_loss)
        self.id_loss_tracker.update_state(id_loss)
        self.accuracy_tracker.update_state(expression, probs, sample_weight=weights)
        return total

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"alpha": self.alpha, "gamma": self.gamma})
        return config


def passthrough_fusion_conv(model: keras.Model) -> None:
    """Sets ``fusion_conv`` to pass the emotion map through and ignore the identity map.

    The Fusion Dense Block is Emotion Dense Block 3, pretrained on the emotion group's map;
    a randomly initialised 1x1 conv in front of it feeds it features it has never seen, and
    fine-tuning with frozen groups must first undo that. With the kernel ``[I; 0]`` and a
    zero bias, variants F/IF start exactly where Original starts and learn from there how
    much of the identity map to mix in.

    Args:
        model: a fine-tuning model of a fusing variant (``f``/``if``).
    """
    conv = model.get_layer("fusion_conv")
    kernel, bias = conv.get_weights()
    if kernel.shape[2] <= kernel.shape[3]:
        raise ValueError("fusion_conv must map the D emotion channels + the identity "
                         f"channels to D. Received kernel shape {kernel.shape}")
    channels = kernel.shape[3]
    passthrough = np.zeros_like(kernel)
    passthrough[0, 0, :channels, :] = np.eye(channels, dtype=kernel.dtype)
    conv.set_weights([passthrough, np.zeros_like(bias)])


def freeze_feature_groups(model: keras.Model) -> list[str]:
    """Freezes the emotion and identity feature groups (stem, blocks 1-2, transitions; with
    the ResNet-18 emotion stream its stem and stages 1-3).

    Frozen BatchNormalization layers also run in inference mode (moving statistics), so the
    pretrained features are untouched. Compile (again) after freezing.

    Args:
        model: A model built by this module.

    Returns:
        The names of the frozen layers.
    """
    frozen = []
    for layer in model.layers:
        if is_feature_group_layer(layer.name) or layer.name.startswith(RESNET_GROUP):
            layer.trainable = False
            frozen.append(layer.name)
    return frozen


def inference_model(model: keras.Model) -> keras.Model:
    """"image" ``(B, 48, 48, 1)`` -> expression probabilities ``(B, K)`` (no identity head).

    Args:
        model: An IDEnNet (or emotion pretraining) model.

    Returns:
        A functional model sharing ``model``'s layers.
    """
    image = model.get_layer("image").output
    probs = model.get_layer("expression").output
    return keras.Model(image, probs, name=f"{model.name}_inference")

