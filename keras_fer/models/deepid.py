"""DeepID-style identity network of TFE-JL (Sun et al.'s DeepID, adapted to 48x48 faces).

Layout (all convolutions ``valid``, ReLU, 2x2 max pooling with stride 2):

=========  ==========  =========  ======================
layer      kernel      filters    48x48 input -> output
=========  ==========  =========  ======================
conv1      4x4         20         45x45, pool1 -> 22x22
conv2      3x3         40         20x20, pool2 -> 10x10
conv3      3x3         60         8x8,   pool3 -> 4x4
conv4      2x2         80         3x3
feature    dense       160        from concat(flatten(pool3), flatten(conv4)) = 960 + 720
=========  ==========  =========  ======================

The filter counts and kernel sizes are DeepID's own; they were set for 39x31 patches and
give a sensible pyramid on 48x48 as they are (the last maps stay 4x4 and 3x3, so the
"multi-scale" feature still sees both levels). Two deliberate differences from DeepID,
both simplifications: conv4 is an ordinary (weight-shared) convolution instead of a
locally connected layer, and there is one network on the whole face instead of an ensemble
of patches (the TFE-JL paper also uses a single network and a single patch). The 160-d
feature (ReLU, as DeepID) is followed by dropout 0.4 and the identity softmax.
"""

from __future__ import annotations

import keras
from keras import layers

IDENTITY_FEATURE_DIM = 160
IDENTITY_DROPOUT = 0.4

# (filters, kernel) of conv1..conv4; max pooling follows the first three.
DEEPID_CONVS: tuple[tuple[int, int], ...] = ((20, 4), (40, 3), (60, 3), (80, 2))


def _check_spatial_size(input_shape: tuple[int, ...]) -> None:
    for size in input_shape[:2]:
        for index, (_, kernel) in enumerate(DEEPID_CONVS):
            size = size - kernel + 1
            if index < 3:
                size //= 2
            if size < 1:
                raise ValueError(
                    "The input is too small for DeepID's four valid convolutions and three "
                    f"poolings (needs at least 22x22). Received: input_shape={input_shape}"
                )


def apply_deepid_backbone(x: keras.KerasTensor, *, name: str) -> keras.KerasTensor:
    """Four convolutions and the multi-scale dense layer: image -> 160-d identity feature.

    Args:
        x: Input tensor ``(B, H, W, C)`` with ``H, W >= 22``.
        name: Prefix of every layer name; the feature is the layer ``f"{name}_feature"``.

    Returns:
        The identity feature ``(B, 160)`` (before the dropout).
    """
    _check_spatial_size(tuple(x.shape[1:]))
    pooled3 = None
    for index, (filters, kernel) in enumerate(DEEPID_CONVS, start=1):
        x = layers.Conv2D(
            filters,
            kernel,
            activation="relu",
            kernel_initializer="he_normal",
            name=f"{name}_conv{index}",
        )(x)
        if index < 4:
            x = layers.MaxPooling2D(2, name=f"{name}_pool{index}")(x)
        if index == 3:
            pooled3 = x
    merged = layers.Concatenate(name=f"{name}_concat")(
        [
            layers.Flatten(name=f"{name}_flatten3")(pooled3),
            layers.Flatten(name=f"{name}_flatten4")(x),
        ]
    )
    return layers.Dense(
        IDENTITY_FEATURE_DIM,
        activation="relu",
        kernel_initializer="he_normal",
        name=f"{name}_feature",
    )(merged)


def build_deepid(
    num_identities: int,
    input_shape: tuple[int, int, int] = (48, 48, 1),
    name: str = "deepid",
) -> keras.Model:
    """Builds the DeepID identity classifier used to pretrain the identity feature.

    Args:
        num_identities: Number of subjects of the identity softmax.
        input_shape: ``(H, W, C)`` of the float32 input named ``"image"``.
        name: Model name and prefix of every layer name. Keep the default ``"deepid"`` when
            the weights are to be transferred into the tandem model.

    Returns:
        A functional model ``image -> softmax (B, num_identities)``; the 160-d feature is the
        output of layer ``f"{name}_feature"`` (see :func:`deepid_feature_model`).
    """
    if not isinstance(num_identities, int) or num_identities < 2:
        raise ValueError(
            f"`num_identities` must be an int >= 2. Received: num_identities={num_identities}"
        )
    image = keras.Input(shape=input_shape, name="image")
    feature = apply_deepid_backbone(image, name=name)
    x = layers.Dropout(IDENTITY_DROPOUT, name=f"{name}_dropout")(feature)
    probs = layers.Dense(num_identities, activation="softmax", name=f"{name}_predictions")(x)
    return keras.Model(image, probs, name=name)


def deepid_feature_model(model: keras.Model, name: str = "deepid") -> keras.Model:
    """The sub-model ``image -> 160-d identity feature`` of a DeepID (or tandem) model.

    It shares the layers (and weights) of ``model``; use it to embed faces for verification.

    Args:
        model: A model containing the layer ``f"{name}_feature"``.
        name: The DeepID layer prefix used when ``model`` was built.

    Returns:
        A functional model with the same inputs as ``model``.
    """
    layer_name = f"{name}_feature"
    try:
        feature = model.get_layer(layer_name).output
    except ValueError as err:
        raise ValueError(
            f"Model '{model.name}' has no layer '{layer_name}'. Received: name={name!r}"
        ) from err
    return keras.Model(model.inputs, feature, name=f"{model.name}_identity_feature")
