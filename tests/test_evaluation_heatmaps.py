"""Grad-CAM heatmaps: hand-computed CAM of a linear model, IDEnNet shapes, grid and callback."""

import types

import keras
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from keras_fer.evaluation import heatmaps
from keras_fer.models import idennet
from keras_fer.training.config import TrainConfig


def _linear_cam_model() -> keras.Model:
    """image -> 4x4 mean pool p (12x12) -> maps [p, -p] -> GAP -> logits W -> softmax.

    With a GAP + linear head, d logit_c / d A_k(i, j) = W[k, c] / 144 everywhere, so
    Grad-CAM of class c is relu(sum_k W[k, c] A_k) / 144: class 0 (W[:, 0] = [1, 0.5]) gives
    relu(0.5 p), class 1 (W[:, 1] = [0, 2]) gives relu(-2 p) = 0 for non-negative images.
    """
    image = keras.Input((48, 48, 1), name="image")
    pooled = keras.layers.AveragePooling2D(4, name="pool")(image)
    maps = keras.layers.Conv2D(2, 1, use_bias=False, name="emo_head_relu")(pooled)
    x = keras.layers.GlobalAveragePooling2D(name="emo_head_gap")(maps)
    logits = keras.layers.Dense(2, name="fc_emo")(x)
    probs = keras.layers.Activation("softmax", name="expression")(logits)
    model = keras.Model(image, probs)
    model.get_layer("emo_head_relu").set_weights([np.array([[[[1.0, -1.0]]]], "float32")])
    model.get_layer("fc_emo").set_weights(
        [np.array([[1.0, 0.0], [0.5, 2.0]], "float32"), np.zeros(2, "float32")]
    )
    return model


def test_gradcam_matches_hand_computed_cam():
    model = _linear_cam_model()
    x = np.zeros((2, 48, 48, 1), "float32")
    x[:, 4:12, 8:16] = 1.0  # pooled rows 1-2, columns 2-3
    x[:, 32:36, 32:36] = 0.5  # pooled row 8, column 8, half as bright
    maps = heatmaps.gradcam(model, x, [0, 1])
    assert maps.shape == (2, 48, 48) and maps.dtype == np.float32

    pooled = x[0, :, :, 0].reshape(12, 4, 12, 4).mean(axis=(1, 3))
    expected = ndimage.zoom(np.maximum(0.5 * pooled, 0.0), 4, order=1)
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_allclose(maps[0], expected, atol=1e-4)
    # The dimmer square shows up at about half strength (bilinear upsampling blurs it).
    assert 0.3 < maps[0][28:40, 28:40].max() <= 0.5 + 1e-4
    row, col = np.unravel_index(maps[0].argmax(), maps[0].shape)
    assert 4 <= row < 12 and 8 <= col < 16
    # Class 1 is only lowered by bright pixels: no positive evidence anywhere.
    np.testing.assert_allclose(maps[1], 0.0, atol=1e-6)


def test_gradcam_idennet_fusion_layer_leaves_model_intact():
    config = idennet.IDEnNetConfig(
        variant="if", depth=16, num_classes=3, num_identities=4, layers_per_block=1
    )
    model = idennet.inference_model(idennet.build_idennet(config))
    x = np.random.default_rng(0).random((3, 48, 48, 1)).astype("float32")
    before = model.predict(x, verbose=0)
    maps = heatmaps.gradcam(model, x[..., 0], [0, 1, 2])
    assert maps.shape == (3, 48, 48)
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0 + 1e-6
    after = model.predict(x, verbose=0)
    # Still softmax probabilities, unchanged: Grad-CAM must not edit the output layer.
    np.testing.assert_allclose(after.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)


def test_gradcam_rejects_bad_inputs():
    model = _linear_cam_model()
    x = np.zeros((2, 48, 48, 1), "float32")
    with pytest.raises(ValueError, match="emo_block9"):
        heatmaps.gradcam(model, x, [0, 1], layer_name="emo_block9")
    with pytest.raises(ValueError, match="feature map"):
        heatmaps.gradcam(model, x, [0, 1], layer_name="emo_head_gap")
    with pytest.raises(ValueError, match="1 class ids"):
        heatmaps.gradcam(model, x, [0])


def test_pick_per_class_groups_by_class():
    labels = np.array([2, 0, 2, 1, 2, 0, 2])
    idx = heatmaps.pick_per_class(labels, 2, seed=3)
    assert labels[idx].tolist() == [0, 0, 1, 2, 2]
    assert len(set(idx.tolist())) == len(idx)


def test_save_heatmap_grid_writes_png(tmp_path):
    faces = np.full((5, 60, 60), 128, np.uint8)
    maps = np.random.default_rng(1).random((5, 48, 48)).astype("float32")
    path = heatmaps.save_heatmap_grid(
        faces, maps, [0, 0, 1, 2, 2], [0, 1, 1, 2, 0], ["a", "b", "c"], tmp_path / "g.png", "t"
    )
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
    with pytest.raises(ValueError, match="4 labels"):
        heatmaps.save_heatmap_grid(faces, maps, [0, 0, 1, 2], [0] * 5, ["a", "b", "c"],
                                   tmp_path / "x.png")


def test_heatmap_callback_writes_fold_png(tmp_path):
    model = _linear_cam_model()
    rng = np.random.default_rng(0)
    data = types.SimpleNamespace(
        fold=0,
        class_names=("neutral", "happiness"),
        x_test=rng.integers(0, 255, (6, 60, 60), dtype=np.uint8),
        y_test=np.array([0, 1, 0, 1, 1, 0]),
    )
    config = TrainConfig(method="idennet", variant="if", heatmaps=2)
    callback = heatmaps.heatmap_callback(config)
    out = callback(model, data, tmp_path / "fold_0")
    assert out == tmp_path / "fold_0" / "heatmaps.png" and out.stat().st_size > 0
    with pytest.raises(ValueError, match="Received: 0"):
        heatmaps.heatmap_callback(TrainConfig(method="idennet", heatmaps=0))
