"""DenseNet-BC backbone pieces for 48x48 faces: stem, feature group, pooled head.

A *feature group* is IDEnNet's "stem conv + Dense Block 1 + transition + Dense Block 2 +
transition"; IDEnNet has one per stream, told apart by a name prefix (``"emo"``, ``"id"``), so
a stream's weights move between models by layer name.

Depth follows the DenseNet-BC count for three blocks of bottleneck layers (two convs each)
plus the stem conv, two transition convs and the classifier: ``depth = 6 * n + 4``, so
16 -> 2, 22 -> 3 and 40 -> 6 layers per block (the IDEnNet paper's six).
"""

from __future__ import annotations

from typing import Any

import keras

from keras_fer.layers.dense_block import apply_dense_block, apply_transition

FEATURE_GROUP_PARTS = ("stem", "block1", "transition1", "block2", "transition2")


def layers_per_block(depth: int) -> int:
    """Bottleneck layers per dense block for a three-block DenseNet-BC of ``depth`` layers."""
    if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(
            f"depth must be 6 * n + 4 with n >= 1 (e.g. 16, 22, 40). Received: depth={depth!r}"
        )
    return (depth - 4) // 6


def compressed_channels(channels: int, compression: float) -> int:
    """Channels after a DenseNet-BC transition: ``floor(channels * compression)``."""
    if not 0.0 < compression <= 1.0:
        raise ValueError(f"compression must be in (0, 1]. Received: compression={compression}")
    return max(1, int(channels * compression))


def feature_group_channels(
    num_layers: int, growth_rate: int = 12, compression: float = 0.5
) -> int:
    """``D``: channels of a feature group's output map (and Dense Block 3's input)."""
    channels = 2 * growth_rate
    for _ in range(2):
        channels = compressed_channels(channels + num_layers * growth_rate, compression)
    return channels


def apply_feature_group(
    x: Any,
    prefix: str,
    num_layers: int,
    growth_rate: int = 12,
    compression: float = 0.5,
) -> Any:
    """Stem conv 3x3 (2k) + Dense Block 1 + transition + Dense Block 2 + transition.

    Args:
        x: Input images ``(B, H, W, C)``.
        prefix: Stream prefix of every layer name, e.g. ``"emo"`` gives ``"emo_block1_..."``.
        num_layers: Bottleneck layers per dense block.
        growth_rate: ``k``.
        compression: DenseNet-BC transition compression.

    Returns:
        The ``(B, H / 4, W / 4, D)`` map, ``D = feature_group_channels(...)``.
    """
    x = keras.layers.Conv2D(
        2 * growth_rate, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
        name=f"{prefix}_stem_conv",
    )(x)
    for block in (1, 2):
        x = apply_dense_block(x, num_layers, growth_rate, name=f"{prefix}_block{block}")
        filters = compressed_channels(x.shape[-1], compression)
        x = apply_transition(x, filters, name=f"{prefix}_transition{block}")
    return x


def apply_pooled_head(x: Any, name: str) -> Any:
    """BN-ReLU-GAP, named ``f"{name}_bn"``, ``f"{name}_relu"``, ``f"{name}_gap"``."""
    x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1.001e-5, name=f"{name}_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return keras.layers.GlobalAveragePooling2D(name=f"{name}_gap")(x)


def is_feature_group_layer(layer_name: str) -> bool:
    """Whether ``layer_name`` belongs to a feature group (any prefix), e.g. ``emo_block2_...``."""
    parts = layer_name.split("_")
    return len(parts) >= 2 and parts[1] in FEATURE_GROUP_PARTS
