"""Figures for the GAN methods: generated average-identity faces and attention maps.

- :func:`plot_generation_grid`: one row per expression class, the class's average face
  (the target) followed by input / generated pairs (the paper's Fig. 5).
- :func:`plot_attention_maps`: input, generated face and the attention map of a few query
  positions from a generator's self-attention module (the paper's Fig. 6).

Matplotlib runs on the Agg backend: these run in CI and on headless machines.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from keras_fer.evaluation.figures import pyplot, save_figure
from keras_fer.layers.attention import SelfAttention2D


def _show(ax, image, title=None):
    ax.imshow(np.squeeze(image), cmap="gray", vmin=0.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def plot_generation_grid(
    inputs: np.ndarray,
    generated: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    targets: np.ndarray | None = None,
    per_class: int = 3,
) -> Path:
    """Saves a grid: per class, [average face,] then ``per_class`` input/generated pairs.

    Args:
        inputs: ``(N, H, W, 1)`` faces in ``[0, 1]``.
        generated: ``(N, H, W, 1)`` generator outputs for ``inputs``.
        labels: ``(N,)`` class indices.
        class_names: names of the ``K`` classes (row titles).
        path: output image file (PNG).
        targets: optional ``(K, H, W, 1)`` average-identity faces shown first in each row.
        per_class: input/generated pairs per row (fewer when a class has fewer faces).

    Returns:
        The written path.
    """
    inputs, generated = np.asarray(inputs), np.asarray(generated)
    labels = np.asarray(labels).reshape(-1)
    if not (len(inputs) == len(generated) == len(labels)):
        raise ValueError(
            f"inputs, generated and labels must have one entry per face. Received lengths "
            f"{len(inputs)}, {len(generated)}, {len(labels)}"
        )
    plt = pyplot()
    offset = 0 if targets is None else 1
    cols = offset + 2 * per_class
    rows = len(class_names)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.3 * rows), squeeze=False)
    for k, name in enumerate(class_names):
        for ax in axes[k]:
            ax.axis("off")
        if targets is not None:
            axes[k, 0].axis("on")
            _show(axes[k, 0], targets[k], f"{name}: target")
        for j, i in enumerate(np.flatnonzero(labels == k)[:per_class]):
            for c, (image, what) in enumerate(((inputs[i], "input"), (generated[i], "generated"))):
                ax = axes[k, offset + 2 * j + c]
                ax.axis("on")
                _show(ax, image, what)
    return save_figure(fig, path, dpi=100)


def _find_attention_layer(generator: keras.Model, layer_name: str | None) -> SelfAttention2D:
    if layer_name is not None:
        return generator.get_layer(layer_name)
    layers = [layer for layer in generator.layers if isinstance(layer, SelfAttention2D)]
    if not layers:
        raise ValueError(
            f"Model {generator.name!r} has no SelfAttention2D layer (ablation model?)."
        )
    decoder = [layer for layer in layers if "decoder" in layer.name]
    return (decoder or layers)[-1]


def attention_maps(generator: keras.Model, images: np.ndarray, layer_name: str | None = None):
    """Attention weights of one self-attention module of ``generator`` for ``images``.

    Args:
        generator: functional model containing :class:`SelfAttention2D` layers.
        images: ``(B, H, W, C)`` generator inputs.
        layer_name: the module; default the decoder-path one (the paper's Fig. 6 choice:
            the module closest to the generated image), else the last one.

    Returns:
        ``(maps, (h, w))``: ``maps`` is ``(B, h*w, h*w)`` NumPy, row = query position.
    """
    layer = _find_attention_layer(generator, layer_name)
    features = keras.Model(generator.input, layer.input)(np.asarray(images, np.float32))
    maps = keras.ops.convert_to_numpy(layer.attention_map(features))
    return maps, tuple(int(d) for d in features.shape[1:3])


def plot_attention_maps(
    generator: keras.Model,
    images: np.ndarray,
    query_points: Sequence[tuple[int, int]],
    path: str | Path,
    layer_name: str | None = None,
) -> Path:
    """Saves, per image: input (query dots), generated face, one attention map per query.

    Args:
        generator: the trained generator.
        images: ``(B, H, W, 1)`` faces in ``[0, 1]``.
        query_points: ``(row, col)`` query positions in input-pixel coordinates.
        path: output image file (PNG).
        layer_name: attention module (see :func:`attention_maps`).

    Returns:
        The written path.
    """
    images = np.asarray(images, np.float32)
    generated = keras.ops.convert_to_numpy(generator(images, training=False))
    maps, (h, w) = attention_maps(generator, images, layer_name)
    height, width = images.shape[1:3]
    plt = pyplot()
    cols = 2 + len(query_points)
    figsize = (1.4 * cols, 1.5 * len(images))
    fig, axes = plt.subplots(len(images), cols, figsize=figsize, squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for b in range(len(images)):
        _show(axes[b, 0], images[b], "input")
        _show(axes[b, 1], generated[b], "generated")
        for q, (row, col) in enumerate(query_points):
            if not (0 <= row < height and 0 <= col < width):
                raise ValueError(f"Query point {(row, col)} outside the {height}x{width} image.")
            fy, fx = row * h // height, col * w // width
            colour = colours[q % len(colours)]
            attention = maps[b, fy * w + fx].reshape(h, w)
            ax = axes[b, 2 + q]
            ax.imshow(attention, cmap="jet", extent=(0, width, height, 0))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"query {q + 1}", fontsize=7)
            for target in (axes[b, 0], ax):
                target.plot(col, row, "o", color=colour, markersize=4, markeredgecolor="white")
    return save_figure(fig, path, dpi=100)
