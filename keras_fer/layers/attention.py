"""SAGAN-style self-attention over the spatial positions of a feature map.

Zhang et al. (2019) "Self-Attention Generative Adversarial Networks", as used by IF-GAN's
U-Net generator: 1x1 projections to query and key with ``C // reduction`` channels and to
value with ``C`` channels, a softmax over all key positions for every query position, and a
learnable scale ``gamma`` that starts at 0 so that a freshly inserted block is the identity
and the network learns how much non-local evidence to mix in.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_fer")
class SelfAttention2D(keras.layers.Layer):
    """Non-local self-attention block: ``gamma * attention(x) + x``.

    The 1x1 convolutions are written as matrix products over the channel axis (the same
    arithmetic as ``Conv2D(kernel_size=1)``), which keeps the layer a single readable unit
    with named weights ``query_kernel``, ``key_kernel``, ``value_kernel`` and ``gamma``.

    Args:
        reduction: channel reduction of the query/key projections (SAGAN uses 8). The
            projection width is ``max(1, channels // reduction)``.
        **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``, ...).

    Input and output: ``(B, H, W, C)`` channels-last feature maps.
    """

    def __init__(self, reduction: int = 8, **kwargs):
        super().__init__(**kwargs)
        if int(reduction) < 1:
            raise ValueError(
                f"reduction must be a positive integer. Received: reduction={reduction}"
            )
        self.reduction = int(reduction)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "SelfAttention2D expects (B, H, W, C) inputs with a known channel count. "
                f"Received: input_shape={input_shape}"
            )
        channels = int(input_shape[-1])
        inner = max(1, channels // self.reduction)
        init = keras.initializers.GlorotUniform()
        self.query_kernel = self.add_weight(
            shape=(channels, inner), initializer=init, name="query_kernel"
        )
        self.query_bias = self.add_weight(shape=(inner,), initializer="zeros", name="query_bias")
        self.key_kernel = self.add_weight(
            shape=(channels, inner), initializer=init, name="key_kernel"
        )
        self.key_bias = self.add_weight(shape=(inner,), initializer="zeros", name="key_bias")
        self.value_kernel = self.add_weight(
            shape=(channels, channels), initializer=init, name="value_kernel"
        )
        self.value_bias = self.add_weight(shape=(channels,), initializer="zeros", name="value_bias")
        self.gamma = self.add_weight(shape=(), initializer="zeros", name="gamma")

    def _flatten(self, x):
        _, height, width, channels = ops.shape(x)
        return ops.reshape(x, (-1, height * width, channels))

    def _attention(self, flat):
        query = ops.matmul(flat, self.query_kernel) + self.query_bias
        key = ops.matmul(flat, self.key_kernel) + self.key_bias
        energy = ops.matmul(query, ops.transpose(key, (0, 2, 1)))
        return ops.softmax(energy, axis=-1)

    def attention_map(self, x):
        """Attention weights ``(B, H*W, H*W)`` for inputs ``x`` of shape ``(B, H, W, C)``.

        Row ``i`` holds the weights that query position ``i`` (row-major, ``i = y * W + x``)
        gives to every key position; each row sums to 1. Used for the paper's Fig. 6.
        """
        if not self.built:
            self.build(tuple(x.shape))
        return self._attention(self._flatten(x))

    def call(self, x):
        flat = self._flatten(x)
        value = ops.matmul(flat, self.value_kernel) + self.value_bias
        attended = ops.matmul(self._attention(flat), value)
        _, height, width, channels = ops.shape(x)
        return self.gamma * ops.reshape(attended, (-1, height, width, channels)) + x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"reduction": self.reduction})
        return config
