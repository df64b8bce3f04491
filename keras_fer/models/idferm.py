"""IDFERM networks (Liu et al., "Hard negative generation for identity-disentangled FER").

Two parts:

- **HNG** (hard negative generation): encoder, decoder and discriminator, built by
  :mod:`keras_fer.models.hng` and re-exported here; the training wrapper (losses, optimizers,
  train steps) is ``models.hng_step.HNGModel``.
- **RML** (radial metric learning) network: inception-style conv groups (1x1, 3x3, 5x5 in
  parallel), an expression-classification (EC) branch with softmax and a metric-learning (ML)
  branch joined to it by a connecting layer (``concat([FC2-2, FC2-3]) -> linear``, paper
  Eq. 17). :class:`RMLModel` trains it with softmax + lambda * RML loss by overriding
  ``compute_loss``; :func:`inference_model` keeps only the conv groups and the EC branch.
  ``RMLConfig.trunk="resnet18_std"`` replaces the stem and conv groups by the standard
  ResNet-18 of :mod:`keras_fer.models.expression` (layers ``resnet18_std_*``, as in the
  shipped FER+ model, so ``transfer.init_from`` copies its trunk by name; issue 20).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import keras
import numpy as np
from keras import layers, ops

from keras_fer.data.preprocess import INPUT_SIZE
from keras_fer.losses.rml import RadialMetric, batch_class_centres, radial_metric_loss
from keras_fer.models.hng import (  # noqa: F401  (re-exported: models.idferm's HNG names)
    HNG_SIZE,
    NEGATIVE_SLOPE,
    HNGConfig,
    ResidualImage,
    build_hng_decoder,
    build_hng_discriminator,
    build_hng_encoder,
    build_hng_generator,
    check_positive,
    hng_to_model_input,
    to_hng_input,
)

RML_TRUNKS = ("inception", "resnet18_std")


# --------------------------------------------------------------------------------------------
# Radial metric learning network
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RMLConfig:
    """Sizes and loss settings of the RML network.

    Attributes:
        num_classes: Expression classes ``K``.
        input_size: Side of the square gray input (the project's 48).
        stem_filters: Channels of the 3x3 stem convolution (followed by 2x2 max pooling).
        group_filters: Channels of each parallel convolution in each inception group; every
            group outputs ``3 * filters`` channels and is followed by 2x2 max pooling.
        fc_units: Width ``D_input`` of the first FC layer of both branches (FC2-2, FC2-3).
        connect_units: Width ``D_output`` of the connecting layer (FC4).
        embedding_dim: Width of the ML branch's embedding (its second layer).
        metric_units: Rows of the RML metric ``W``.
        dropout: Dropout rate before the classifier and the embedding.
        negative_slope: LeakyReLU slope.
        rml_weight: ``lambda`` of the joint loss ``softmax + lambda * RML`` (paper: 1).
        use_rml: ``False`` builds the softmax-only baseline (EC branch only, no ML branch).
        trunk: ``"inception"`` (the stem and conv groups above) or ``"resnet18_std"`` (the
            standard ResNet-18, whose 512-d pooled feature feeds both branches;
            ``stem_filters`` and ``group_filters`` are then unused).
    """

    num_classes: int = 7
    input_size: int = INPUT_SIZE
    stem_filters: int = 32
    group_filters: tuple[int, ...] = (32, 48, 64)
    fc_units: int = 256
    connect_units: int = 256
    embedding_dim: int = 128
    metric_units: int = 128
    dropout: float = 0.5
    negative_slope: float = NEGATIVE_SLOPE
    rml_weight: float = 1.0
    use_rml: bool = True
    trunk: str = "inception"

    def __post_init__(self):
        if self.trunk not in RML_TRUNKS:
            raise ValueError(f"`trunk` must be one of {RML_TRUNKS}. Received: trunk={self.trunk!r}")
        for field in (
            "num_classes",
            "input_size",
            "stem_filters",
            "fc_units",
            "connect_units",
            "embedding_dim",
            "metric_units",
        ):
            check_positive(getattr(self, field), field)
        if self.num_classes < 2:
            raise ValueError(f"`num_classes` must be >= 2. Received: {self.num_classes}")
        if not self.group_filters:
            raise ValueError(f"`group_filters` must not be empty. Received: {self.group_filters}")
        for f in self.group_filters:
            check_positive(f, "group_filters")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={self.dropout}")


def apply_inception_group(x, filters: int, negative_slope: float = NEGATIVE_SLOPE, *, name: str):
    """1x1, 3x3 and 5x5 convolutions in parallel, concatenated, then 2x2 max pooling.

    Args:
        x: Input tensor ``(B, H, W, C)``.
        filters: Channels of each of the three convolutions.
        negative_slope: LeakyReLU slope.
        name: Prefix of every layer name.

    Returns:
        Tensor ``(B, H // 2, W // 2, 3 * filters)``.
    """
    branches = []
    for k in (1, 3, 5):
        b = layers.Conv2D(filters, k, padding="same", name=f"{name}_conv{k}x{k}")(x)
        branches.append(layers.LeakyReLU(negative_slope, name=f"{name}_conv{k}x{k}_lrelu")(b))
    x = layers.Concatenate(name=f"{name}_concat")(branches)
    return layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def _dense_lrelu(x, units: int, slope: float, name: str):
    x = layers.Dense(units, name=name)(x)
    return layers.LeakyReLU(slope, name=f"{name}_lrelu")(x)


def build_rml_network(config: RMLConfig = RMLConfig(), name: str = "rml") -> keras.Model:
    """The shared RML network: ``"image"`` -> ``{"probabilities", "embedding"}``.

    With ``config.use_rml=False`` the ML branch and connecting layer are left out and the
    output dict only has ``"probabilities"``. The classifier layer is ``f"{name}_probabilities"``.
    With ``config.trunk="resnet18_std"`` the trunk's layers are named ``resnet18_std_*``
    (not ``name``-prefixed), those of the shipped FER+ model.
    """
    slope = config.negative_slope
    inputs = keras.Input((config.input_size, config.input_size, 1), name="image")
    if config.trunk == "resnet18_std":
        from keras_fer.models.expression import apply_resnet18_std

        features = apply_resnet18_std(inputs)
    else:
        x = layers.Conv2D(config.stem_filters, 3, padding="same", name=f"{name}_stem_conv")(inputs)
        x = layers.LeakyReLU(slope, name=f"{name}_stem_lrelu")(x)
        x = layers.MaxPooling2D(2, name=f"{name}_stem_pool")(x)
        for i, filters in enumerate(config.group_filters):
            x = apply_inception_group(x, filters, slope, name=f"{name}_group{i + 1}")
        features = layers.Flatten(name=f"{name}_flatten")(x)

    ec = _dense_lrelu(features, config.fc_units, slope, f"{name}_ec_fc1")
    ec_drop = layers.Dropout(config.dropout, name=f"{name}_ec_dropout")(ec)
    probabilities = layers.Dense(
        config.num_classes, activation="softmax", name=f"{name}_probabilities"
    )(ec_drop)
    outputs = {"probabilities": probabilities}

    if config.use_rml:
        ml = _dense_lrelu(features, config.fc_units, slope, f"{name}_ml_fc1")
        joined = layers.Concatenate(name=f"{name}_connect_concat")([ec, ml])
        # Linear on purpose: paper Eq. 17 is FC4 = P^T [FC2-2; FC2-3].
        connected = layers.Dense(config.connect_units, name=f"{name}_connect")(joined)
        connected = layers.Dropout(config.dropout, name=f"{name}_ml_dropout")(connected)
        outputs["embedding"] = layers.Dense(config.embedding_dim, name=f"{name}_ml_embedding")(
            connected
        )
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="keras_fer")
class RMLModel(keras.Model):
    """Trains an RML network with the joint loss ``softmax + rml_weight * RML``.

    ``x`` is a dict ``{"image": queries (B, S, S, 1), "reference": their generated neutral
    faces (B, S, S, 1)}`` and ``y`` the integer labels ``(B,)``. Queries and references go
    through the same network in one pass. Class centres are the per-batch class means of the
    query embeddings (see ``losses.rml``), so batches should hold several images per class
    (:func:`per_class_batches`). Without the ML branch (``use_rml=False`` network) ``x`` may
    be the image tensor alone and the loss is softmax only. Sample weights are not used.

    Args:
        network: Output of :func:`build_rml_network`.
        num_classes: Classes ``K`` (for the per-batch class centres).
        rml_weight: ``lambda`` of the joint loss.
        metric_units: Rows of the learned metric ``W`` of the RML loss.
        **kwargs: Standard model arguments (``name``).
    """

    def __init__(
        self,
        network: keras.Model,
        num_classes: int,
        rml_weight: float = 1.0,
        metric_units: int = 128,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.network = network
        self.num_classes = num_classes
        self.rml_weight = float(rml_weight)
        self.metric_units = metric_units
        self.use_rml = "embedding" in network.output
        if self.use_rml:
            self.radial_metric = RadialMetric(metric_units, name="radial_metric")
            self.rml_tracker = keras.metrics.Mean(name="rml_loss")
        self.softmax_tracker = keras.metrics.Mean(name="softmax_loss")

    def build(self, input_shape):
        if self.use_rml:
            self.radial_metric.build(self.network.output["embedding"].shape)
        self.built = True

    def call(self, inputs, training=False):
        if not isinstance(inputs, dict):
            return self.network(inputs, training=training)
        images = inputs["image"]
        if not self.use_rml or "reference" not in inputs:
            return self.network(images, training=training)
        batch = ops.shape(images)[0]
        both = ops.concatenate([images, inputs["reference"]], axis=0)
        out = self.network(both, training=training)
        return {
            "probabilities": out["probabilities"][:batch],
            "embedding": out["embedding"][:batch],
            "reference_embedding": out["embedding"][batch:],
        }

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        labels = ops.reshape(y, (-1,))
        softmax = ops.mean(
            keras.losses.sparse_categorical_crossentropy(labels, y_pred["probabilities"])
        )
        self.softmax_tracker.update_state(softmax)
        if "reference_embedding" not in y_pred:
            if self.use_rml and training:
                raise ValueError(
                    "RML training needs x = {'image': ..., 'reference': ...}. "
                    f"Received x keys: {sorted(x) if isinstance(x, dict) else type(x)}"
                )
            return softmax
        centres = batch_class_centres(y_pred["embedding"], labels, self.num_classes)
        rml = radial_metric_loss(
            self.radial_metric(y_pred["embedding"], centres),
            self.radial_metric(y_pred["reference_embedding"], centres),
        )
        self.rml_tracker.update_state(rml)
        return softmax + self.rml_weight * rml

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "network": keras.saving.serialize_keras_object(self.network),
                "num_classes": self.num_classes,
                "rml_weight": self.rml_weight,
                "metric_units": self.metric_units,
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(
            config["network"], custom_objects=custom_objects
        )
        return cls(**config)


def build_rml(config: RMLConfig = RMLConfig(), name: str = "rml") -> RMLModel:
    """Builds the RML network and wraps it in an :class:`RMLModel` ready to compile.

    ``config.use_rml=False`` gives the softmax-only baseline: the same conv groups and EC
    branch, trained on softmax alone.
    """
    network = build_rml_network(config, name=name)
    model = RMLModel(
        network,
        num_classes=config.num_classes,
        rml_weight=config.rml_weight if config.use_rml else 0.0,
        metric_units=config.metric_units,
        name=f"{name}_trainer",
    )
    model.build(None)
    return model


def inference_model(rml_model: RMLModel, name: str = "idferm") -> keras.Model:
    """Conv groups + EC branch only: ``"image"`` ``(B, 48, 48, 1)`` -> probabilities ``(B, K)``."""
    network = rml_model.network
    return keras.Model(network.inputs[0], network.output["probabilities"], name=name)


def per_class_batches(
    labels: np.ndarray, per_class: int = 2, seed: int = 0
) -> Iterator[np.ndarray]:
    """Index batches holding ``per_class`` samples of every class present (one epoch).

    Each class's indices are visited in a shuffled order, restarting with a new shuffle when
    exhausted, so that over the epoch every sample is used as a query at least once and
    smaller classes are revisited (the paper's "2 images from each expression class").

    Args:
        labels: ``(N,)`` integer labels.
        per_class: Samples of each class per batch (paper: 2).
        seed: Seed of the shuffles.

    Yields:
        ``(per_class * n_classes_present,)`` int64 index arrays, grouped by class.
    """
    check_positive(per_class, "per_class")
    labels = np.asarray(labels).reshape(-1)
    if labels.size == 0:
        raise ValueError("`labels` is empty.")
    rng = np.random.default_rng(seed)
    pools = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    n_batches = -(-max(len(p) for p in pools) // per_class)
    orders = []
    for pool in pools:
        repeats = -(-n_batches * per_class // len(pool))
        orders.append(np.concatenate([rng.permutation(pool) for _ in range(repeats)]))
    for b in range(n_batches):
        yield np.concatenate([o[b * per_class : (b + 1) * per_class] for o in orders]).astype(
            np.int64
        )
