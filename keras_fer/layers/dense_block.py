"""DenseNet-BC building blocks (Huang et al., 2017) as keras-hub style free functions.

Every layer gets a stable name derived from ``name`` (``f"{name}_layer{i}_conv1"``), because
weights move between training stages (pretraining -> fine-tuning -> export) by layer name.

``reuse_from`` lets a block be applied a second time with the *same* layer objects (hence the
same variables) found by name in an existing model: this is how IDEnNet's Fusion Dense Block
shares weights with the pretrained Emotion Dense Block 3.
"""

from __future__ import annotations

from typing import Any

import keras

_BN_KWARGS = {"momentum": 0.9, "epsilon": 1.001e-5}
_CONV_KWARGS = {"padding": "same", "use_bias": False, "kernel_initializer": "he_normal"}


def _layer(
    reuse_from: keras.Model | None, cls: type, name: str, **kwargs: Any
) -> keras.layers.Layer:
    """Creates ``cls(name=name, **kwargs)``, or fetches the layer called ``name`` to share it."""
    if reuse_from is None:
        return cls(name=name, **kwargs)
    try:
        layer = reuse_from.get_layer(name)
    except ValueError as error:
        raise ValueError(
            f"Cannot share layer {name!r}: model {reuse_from.name!r} has no layer of that name."
        ) from error
    if not isinstance(layer, cls):
        raise ValueError(
            f"Cannot share layer {name!r}: expected a {cls.__name__}, found "
            f"{type(layer).__name__} in model {reuse_from.name!r}."
        )
    return layer


def _check_positive(**values: int) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer. Received: {key}={value!r}")


def apply_dense_layer(
    x: Any, growth_rate: int, name: str, reuse_from: keras.Model | None = None
) -> Any:
    """One bottleneck layer: BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k), concatenated to its input.

    Args:
        x: Channels-last feature map ``(B, H, W, C)``.
        growth_rate: ``k``, the number of channels this layer adds.
        name: Prefix of the layer names.
        reuse_from: Model whose identically named layers are reused instead of created.

    Returns:
        The feature map ``(B, H, W, C + k)``.
    """
    _check_positive(growth_rate=growth_rate)
    y = _layer(reuse_from, keras.layers.BatchNormalization, f"{name}_bn1", **_BN_KWARGS)(x)
    y = _layer(reuse_from, keras.layers.ReLU, f"{name}_relu1")(y)
    y = _layer(
        reuse_from, keras.layers.Conv2D, f"{name}_conv1", filters=4 * growth_rate,
        kernel_size=1, **_CONV_KWARGS,
    )(y)
    y = _layer(reuse_from, keras.layers.BatchNormalization, f"{name}_bn2", **_BN_KWARGS)(y)
    y = _layer(reuse_from, keras.layers.ReLU, f"{name}_relu2")(y)
    y = _layer(
        reuse_from, keras.layers.Conv2D, f"{name}_conv2", filters=growth_rate, kernel_size=3,
        **_CONV_KWARGS,
    )(y)
    return _layer(reuse_from, keras.layers.Concatenate, f"{name}_concat", axis=-1)([x, y])


def apply_dense_block(
    x: Any,
    num_layers: int,
    growth_rate: int,
    name: str,
    reuse_from: keras.Model | None = None,
) -> Any:
    """A dense block: ``num_layers`` bottleneck layers named ``f"{name}_layer{i}"`` (i from 1).

    Args:
        x: Channels-last feature map ``(B, H, W, C)``.
        num_layers: Number of bottleneck layers.
        growth_rate: Channels added by each layer.
        name: Prefix of the layer names, e.g. ``"emo_block3"``.
        reuse_from: Model whose identically named layers are reused instead of created.

    Returns:
        The feature map ``(B, H, W, C + num_layers * growth_rate)``.
    """
    _check_positive(num_layers=num_layers, growth_rate=growth_rate)
    for i in range(1, num_layers + 1):
        x = apply_dense_layer(x, growth_rate, f"{name}_layer{i}", reuse_from=reuse_from)
    return x


def apply_transition(
    x: Any, filters: int, name: str, reuse_from: keras.Model | None = None
) -> Any:
    """Transition: BN-ReLU-Conv1x1(filters)-AvgPool 2x2 stride 2.

    Args:
        x: Channels-last feature map ``(B, H, W, C)``.
        filters: Output channels (DenseNet-BC compresses, ``filters = C * compression``).
        name: Prefix of the layer names.
        reuse_from: Model whose identically named layers are reused instead of created.

    Returns:
        The feature map ``(B, H // 2, W // 2, filters)``.
    """
    _check_positive(filters=filters)
    x = _layer(reuse_from, keras.layers.BatchNormalization, f"{name}_bn", **_BN_KWARGS)(x)
    x = _layer(reuse_from, keras.layers.ReLU, f"{name}_relu")(x)
    x = _layer(
        reuse_from, keras.layers.Conv2D, f"{name}_conv", filters=filters, kernel_size=1,
        **_CONV_KWARGS,
    )(x)
    return _layer(
        reuse_from, keras.layers.AveragePooling2D, f"{name}_pool", pool_size=2, strides=2
    )(x)
