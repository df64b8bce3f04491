"""Progress figures of IDFERM's neutral-face generator (HNG).

:func:`plot_hng_grid` draws three rows (input faces, the generated neutral faces, the
subjects' real neutral faces) and :class:`HNGGridCallback` writes one such grid per epoch of
``HNGModel.fit``, so a run shows how the generator converges. Matplotlib runs on the Agg
backend (CI and headless machines).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from keras_fer.evaluation.figures import pyplot, save_figure

ROW_TITLES = ("input", "generated", "real neutral")


def plot_hng_grid(
    inputs: np.ndarray,
    generated: np.ndarray,
    neutrals: np.ndarray,
    path: str | Path,
    title: str = "",
) -> Path:
    """Saves a 3-row grid: inputs, generated neutral faces, real neutral faces.

    Args:
        inputs: ``(N, H, W[, 1])`` expressive faces in ``[0, 1]``.
        generated: ``(N, H, W[, 1])`` generator outputs for ``inputs``.
        neutrals: ``(N, H, W[, 1])`` real neutral faces of the same subjects.
        path: output PNG file (parent folders are created).
        title: figure title (e.g. the epoch).

    Returns:
        The written path.
    """
    rows = [np.asarray(a, dtype=np.float32) for a in (inputs, generated, neutrals)]
    if len({len(r) for r in rows}) != 1 or len(rows[0]) == 0:
        raise ValueError(
            "inputs, generated and neutrals must be non-empty with one face each per column. "
            f"Received lengths {[len(r) for r in rows]}"
        )
    plt = pyplot()

    cols = len(rows[0])
    fig, axes = plt.subplots(3, cols, figsize=(1.1 * cols + 0.6, 3.6), squeeze=False)
    for r, (faces, name) in enumerate(zip(rows, ROW_TITLES)):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(np.squeeze(faces[c]), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, dpi=80)


class HNGGridCallback(keras.callbacks.Callback):
    """Writes ``<out_dir>/epoch_<k>.png`` (:func:`plot_hng_grid`) after every epoch.

    The model being fitted must map a batch of faces to generated faces when called
    (``models.hng_step.HNGModel`` does).

    Args:
        inputs: ``(N, S, S, 1)`` float faces in ``[0, 1]`` at the generator's input size.
        neutrals: ``(N, S, S, 1)`` their subjects' real neutral faces.
        out_dir: folder of the PNGs.
    """

    def __init__(self, inputs: np.ndarray, neutrals: np.ndarray, out_dir: str | Path):
        super().__init__()
        if len(inputs) != len(neutrals) or len(inputs) == 0:
            raise ValueError(
                "inputs and neutrals must be non-empty and of equal length. "
                f"Received: {len(inputs)} and {len(neutrals)}"
            )
        self.inputs = np.asarray(inputs, dtype=np.float32)
        self.neutrals = np.asarray(neutrals, dtype=np.float32)
        self.out_dir = Path(out_dir)

    def on_epoch_end(self, epoch, logs=None):
        generated = keras.ops.convert_to_numpy(self.model(self.inputs, training=False))
        plot_hng_grid(self.inputs, generated, self.neutrals,
                      self.out_dir / f"epoch_{epoch + 1:03d}.png", title=f"epoch {epoch + 1}")
