"""Grad-CAM heatmaps after IDEnNet's fusion block (the paper's Figs. 4-5), as a PNG grid.

Grad-CAM (Selvaraju et al., 2017) weights the channels of a convolutional feature map by the
spatial mean of the class score's gradient and keeps the positive part of the weighted sum.
The map used here is the last one before pooling: ``emo_head_relu``, the BN-ReLU of the
Fusion Dense Block's (= Emotion Dense Block 3's) concatenated output, which ``emo_head_gap``
pools into the classifier. In variants without fusion it is the same layer after Emotion
Dense Block 3. The class score is the pre-softmax logit (``fc_emo``), as Grad-CAM
recommends, so saturated softmax outputs still give gradients.

The computation is written with ``tf.GradientTape`` on the Keras 3 model (TensorFlow
backend) and follows tf-keras-vis's ``Gradcam`` (positive part, per-map min-max scaling,
linear ``scipy.ndimage.zoom`` upsampling to the input size). tf-keras-vis 0.8.7 itself is not
used: it builds its probe models with ``tf.keras``. Where ``tf.keras`` is Keras 3 it works
(with ``seek_penultimate_conv_layer=False``, else it walks back from ``emo_head_relu`` to the
last 12-channel bottleneck conv, and without its ``ReplaceToLinear`` modifier, which edits the
output layer in place), but keras-fer processes set ``tf.keras`` to tf_keras (Keras 2, needed
by tensorflow-model-optimization for QAT; see ``keras_fer/__init__.py``), which cannot wrap a
Keras 3 model ("'KerasTensor' object has no attribute 'node'"). The heatmaps need the
TensorFlow backend; :func:`heatmap_callback` checks that before training starts.

The runner hands ``after_fold`` the *inference* model (``"image"`` -> probabilities), whose
layers keep their names, so the layers are found by name inside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from keras_fer.data import preprocess
from keras_fer.evaluation.figures import pyplot, save_figure

FUSION_LAYER = "emo_head_relu"
LOGITS_LAYER = "fc_emo"


def _require_tensorflow_backend() -> None:
    import keras

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "Grad-CAM heatmaps use tf-keras-vis and need the TensorFlow backend. Received: "
            f"KERAS_BACKEND={keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow."
        )


def gradcam(
    model,
    faces: np.ndarray,
    class_ids: Sequence[int],
    layer_name: str = FUSION_LAYER,
    logits_layer: str | None = LOGITS_LAYER,
    batch_size: int = 64,
) -> np.ndarray:
    """Grad-CAM heatmaps of ``class_ids`` at ``layer_name``, upsampled to the input size.

    Args:
        model: A Keras 3 functional model taking ``(B, 48, 48, 1)`` float32 in [0, 1], e.g.
            an IDEnNet inference model.
        faces: Model inputs ``(N, 48, 48, 1)`` or ``(N, 48, 48)`` float in [0, 1].
        class_ids: The class explained for each face, ``(N,)``.
        layer_name: The convolutional feature map (``(B, h, w, C)`` output) to explain.
        logits_layer: Layer whose output is the class score (pre-softmax); None scores the
            model's output.
        batch_size: Faces per gradient computation.

    Returns:
        ``(N, H, W)`` float32 heatmaps, each scaled to [0, 1] (all zeros where no location
        raises the class score).
    """
    _require_tensorflow_backend()
    import keras

    x = np.asarray(faces, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    class_ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
    if x.ndim != 4 or len(class_ids) != len(x):
        raise ValueError(
            f"Expected faces (N, H, W[, 1]) and N class ids. Received: faces.shape="
            f"{np.shape(faces)}, {len(class_ids)} class ids"
        )
    names = [layer.name for layer in model.layers]
    for name in (layer_name, logits_layer):
        if name is not None and name not in names:
            raise ValueError(
                f"Layer {name!r} not in model {model.name!r}. Its last layers: {names[-8:]}"
            )
    if len(model.get_layer(layer_name).output.shape) != 4:
        raise ValueError(
            f"Layer {layer_name!r} must output a (B, h, w, C) feature map. Received shape "
            f"{model.get_layer(layer_name).output.shape}"
        )
    scored = model
    if logits_layer is not None:
        scored = keras.Model(model.inputs, model.get_layer(logits_layer).output)
    import tensorflow as tf
    from scipy import ndimage

    probe = keras.Model(model.inputs, [model.get_layer(layer_name).output, scored.output])
    out = np.zeros(x.shape[:3], dtype=np.float32)
    for start in range(0, len(x), batch_size):
        part = slice(start, start + batch_size)
        with tf.GradientTape() as tape:
            fmap, score = probe(tf.constant(x[part]), training=False)
            picked = tf.gather(score, tf.constant(class_ids[part]), batch_dims=1)
        grads = tape.gradient(picked, fmap)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * fmap, axis=-1)).numpy()
        zoom = (1.0, x.shape[1] / cam.shape[1], x.shape[2] / cam.shape[2])
        cam = ndimage.zoom(cam, zoom, order=1)
        low = cam.min(axis=(1, 2), keepdims=True)
        span = cam.max(axis=(1, 2), keepdims=True) - low
        out[part] = np.where(span > 0, (cam - low) / np.where(span > 0, span, 1.0), 0.0)
    return out


def _as_display(faces: np.ndarray, size: int) -> np.ndarray:
    """Faces as ``(N, size, size)`` floats in [0, 1] (centre crop of larger aligned faces)."""
    faces = np.asarray(faces)
    if faces.ndim == 4:
        faces = faces[..., 0]
    if faces.shape[1] > size:
        faces = preprocess.centre_crop(faces, size)
    faces = faces.astype(np.float32)
    return faces / 255.0 if faces.max(initial=0.0) > 1.0 else faces


def save_heatmap_grid(
    faces: np.ndarray,
    heatmaps: np.ndarray,
    labels: Sequence[int],
    preds: Sequence[int],
    class_names: Sequence[str],
    path: str | Path,
    title: str = "",
    alpha: float = 0.45,
) -> Path:
    """Writes a PNG grid: one row per class present in ``labels``, face + heatmap overlay.

    Args:
        faces: ``(N, H, W)`` uint8 aligned faces (centre-cropped to the heatmap size) or model
            inputs ``(N, 48, 48[, 1])`` in [0, 1].
        heatmaps: ``(N, 48, 48)`` in [0, 1], from :func:`gradcam`.
        labels: True class of each face.
        preds: Predicted class of each face.
        class_names: Names of the class indices.
        path: Output PNG.
        title: Figure title.
        alpha: Opacity of the heatmap over the face.

    Returns:
        ``path``.
    """
    plt = pyplot()

    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    labels, preds = np.asarray(labels), np.asarray(preds)
    if heatmaps.ndim != 3 or not len(faces) == len(heatmaps) == len(labels) == len(preds):
        raise ValueError(
            f"Expected N faces, (N, H, W) heatmaps, N labels and N predictions. Received: "
            f"{len(faces)} faces, heatmaps.shape={heatmaps.shape}, {len(labels)} labels, "
            f"{len(preds)} predictions"
        )
    if len(labels) == 0:
        raise ValueError("No faces to draw.")
    images = _as_display(faces, heatmaps.shape[1])
    rows = [c for c in range(len(class_names)) if (labels == c).any()]
    cols = max(int((labels == c).sum()) for c in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.6 * cols + 1.2, 1.75 * len(rows)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, c in enumerate(rows):
        for j, i in enumerate(np.flatnonzero(labels == c)):
            ax = axes[r, j]
            ax.imshow(images[i], cmap="gray", vmin=0.0, vmax=1.0)
            ax.imshow(heatmaps[i], cmap="jet", vmin=0.0, vmax=1.0, alpha=alpha)
            ok = preds[i] == labels[i]
            ax.set_title(f"pred {class_names[preds[i]]}", fontsize=7,
                         color="tab:green" if ok else "tab:red")
        axes[r, 0].text(-0.08, 0.5, class_names[c], transform=axes[r, 0].transAxes,
                        ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path, dpi=110)


def pick_per_class(labels: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Indices of up to ``per_class`` random samples of each class, grouped by class."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        picked.append(np.sort(rng.permutation(idx)[:per_class]))
    return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)


def heatmap_callback(config) -> Callable:
    """The runner's ``after_fold``: writes ``fold_dir/heatmaps.png`` for each trained fold.

    Explains the *predicted* class of ``config.heatmaps`` test faces per class (chosen with
    ``config.seed`` and the fold) at the fusion block's output map.

    Args:
        config: A :class:`~keras_fer.training.config.TrainConfig` with ``heatmaps > 0``.

    Returns:
        ``callback(model, data, fold_dir)`` for :func:`runner.train_and_evaluate`.
    """
    if config.heatmaps < 1:
        raise ValueError(f"heatmaps must be >= 1 face per class. Received: {config.heatmaps}")
    # Fail before hours of training, not after.
    _require_tensorflow_backend()
    from scipy import ndimage  # noqa: F401  (used by gradcam after training)

    def write_heatmaps(model, data, fold_dir) -> Path:
        idx = pick_per_class(data.y_test, config.heatmaps, config.seed + data.fold)
        x = preprocess.to_model_input(data.x_test[idx])
        preds = np.asarray(model.predict(x, verbose=0)).argmax(-1)
        maps = gradcam(model, x, preds)
        title = (f"{config.method}/{config.variant} fold {data.fold}: Grad-CAM at "
                 f"{FUSION_LAYER} for the predicted class (title green = correct)")
        return save_heatmap_grid(x, maps, data.y_test[idx], preds, data.class_names,
                                 Path(fold_dir) / "heatmaps.png", title)

    return write_heatmaps
