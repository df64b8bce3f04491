"""The expression recipe's pieces: on-device augmentation, targets, schedule, losses, TTA and
the backbones (shapes, softmax, golden parameter counts, dlib's weights in face_resnet)."""

import json
import math

import keras
import numpy as np
import pytest

from keras_fer.data import device_augment as da
from keras_fer.losses import distillation
from keras_fer.models.expression import BACKBONES, build_expression_model
from keras_fer.models.expression_step import RecipeModel
from keras_fer.training import recipe as recipe_lib
from keras_fer.data.experiments import FoldData
from keras_fer.training.expression import training_targets


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _constant_images(values, side=8):
    return np.stack([np.full((side, side, 1), v, np.float32) for v in values])


def test_mixup_mixes_targets_like_pixels():
    x = _constant_images([0.0, 1.0])
    y = np.eye(2, dtype=np.float32)
    weight = np.full((2, 8, 8, 1), 0.7, np.float32)
    mx, my = map(_np, da.mix(x, y, weight))
    # Image 0 keeps 70% of itself (0) and takes 30% of its partner (1), and vice versa.
    np.testing.assert_allclose(mx[0], 0.3, atol=1e-6)
    np.testing.assert_allclose(mx[1], 0.7, atol=1e-6)
    np.testing.assert_allclose(my, [[0.7, 0.3], [0.3, 0.7]], atol=1e-6)


def test_cutmix_box_golden_and_targets_follow_area():
    # lam = 0.75: a box of half the side, centred at (0.5, 0.5) of an 8x8 image: rows/cols 2..5.
    top, bottom, left, right = map(_np, da.cutmix_box(8, 8, np.array([0.75], np.float32),
                                                      np.array([0.5], np.float32),
                                                      np.array([0.5], np.float32)))
    assert (top[0], bottom[0], left[0], right[0]) == (2, 6, 2, 6)
    mask = _np(da.box_mask(8, 8, top, bottom, left, right))
    assert mask.sum() == 16 and mask[0, 2:6, 2:6].all()
    x = _constant_images([0.0, 1.0])
    y = np.eye(2, dtype=np.float32)
    weight = np.concatenate([1.0 - mask, np.ones_like(mask)])
    mx, my = map(_np, da.mix(x, y, weight))
    np.testing.assert_allclose(my[0], [0.75, 0.25], atol=1e-6)
    assert mx[0].mean() == pytest.approx(my[0][1])  # pixels of the partner = its target share
    np.testing.assert_allclose(mx[1], 1.0)


def test_random_mix_pixel_share_equals_target_share():
    b = 16
    x = _constant_images(np.arange(b) / b, side=12)
    y = np.eye(b, dtype=np.float32)
    seed = keras.random.SeedGenerator(3)
    for mixup, cutmix in ((0.4, 0.0), (0.0, 1.0), (0.4, 1.0)):
        mx, my = map(_np, da.random_mix(x, y, seed, mixup_alpha=mixup, cutmix_alpha=cutmix,
                                        prob=1.0))
        np.testing.assert_allclose(my.sum(-1), 1.0, atol=1e-5)
        for i in range(b):
            j = b - 1 - i
            if i == j:
                continue
            # Pixel mean = w_i * v_i + (1 - w_i) * v_j with the target weights.
            expected = my[i, i] * x[i].mean() + my[i, j] * x[j].mean()
            assert mx[i].mean() == pytest.approx(expected, abs=1e-5), (mixup, cutmix, i)
    unchanged = da.random_mix(x, y, seed, mixup_alpha=0.4, cutmix_alpha=1.0, prob=0.0)
    np.testing.assert_array_equal(_np(unchanged[0]), x)


def test_random_erasing_changes_only_one_rectangle():
    x = np.full((32, 20, 20, 1), 0.5, np.float32)
    seed = keras.random.SeedGenerator(1)
    out = _np(da.random_erasing(x, seed, prob=1.0))
    for img in out[..., 0]:
        rows, cols = np.nonzero(img != 0.5)
        assert len(rows), "every image has a rectangle at prob 1"
        box = img[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert (box != 0.5).all(), "the changed pixels fill their bounding box"
        area = box.size / img.size
        assert 0.01 <= area <= 0.4
    np.testing.assert_array_equal(_np(da.random_erasing(x, seed, prob=0.0)), x)


def test_geometry_is_an_exact_shifted_maybe_flipped_crop():
    rng = np.random.default_rng(0)
    x = rng.random((24, 60, 60, 1)).astype(np.float32)
    seed = keras.random.SeedGenerator(2)
    centre = _np(da.random_geometry(x, seed, crop=48, max_shift=0, flip=False))
    np.testing.assert_array_equal(centre, x[:, 6:54, 6:54])
    out = _np(da.random_geometry(x, seed, crop=48, max_shift=6, flip=True))
    flips = 0
    for img, src in zip(out, x):
        found = None
        for top in range(13):
            for left in range(13):
                window = src[top:top + 48, left:left + 48]
                if np.allclose(img, window, atol=1e-5):
                    found = "plain"
                elif np.allclose(img, window[:, ::-1], atol=1e-5):
                    found = "flipped"
        assert found is not None
        flips += found == "flipped"
    assert 0 < flips < len(x)


def test_warmup_cosine_schedule_values():
    s = recipe_lib.cosine_schedule(0.1, total_steps=110, warmup_steps=10, min_fraction=0.0)
    value = lambda step: float(_np(s(step)))  # noqa: E731
    assert value(0) == pytest.approx(0.0, abs=1e-7)
    assert value(5) == pytest.approx(0.05)
    assert value(10) == pytest.approx(0.1)
    assert value(60) == pytest.approx(0.05, abs=1e-6)  # half-way through the cosine
    assert value(35) == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.25)), abs=1e-6)
    assert value(110) == pytest.approx(0.0, abs=1e-7)
    plain = recipe_lib.cosine_schedule(0.2, total_steps=100)
    assert float(_np(plain(0))) == pytest.approx(0.2)
    recipe = recipe_lib.Recipe(warmup_epochs=1)
    opt = recipe_lib.make_optimizer(recipe.for_backbone("resnet18_std"), 0.1, 10, 10)
    assert isinstance(opt, keras.optimizers.SGD) and opt.nesterov and opt.use_ema
    assert float(_np(opt.learning_rate)) == 0.0  # step 0 of the warm-up
    adamw = recipe_lib.make_optimizer(recipe.for_backbone("face_resnet"), 1e-3, 10, 10)
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == 0.05
    with pytest.raises(ValueError, match="for_backbone"):
        recipe_lib.make_optimizer(recipe, 0.1, 10, 10)


def test_distillation_loss_golden_value():
    targets = np.array([[0.0, 1.0, 0.0]], np.float32)
    student = np.array([[1.0, 2.0, 0.5]], np.float32)
    teacher = np.array([[0.2, 3.0, -1.0]], np.float32)
    w, t = 0.7, 4.0

    def log_softmax(z):
        z = z - z.max()
        return z - np.log(np.exp(z).sum())

    ce = -log_softmax(student[0])[1]
    pt = np.exp(log_softmax(teacher[0] / t))
    kl = np.sum(pt * (np.log(pt) - log_softmax(student[0] / t)))
    expected = (1 - w) * ce + w * t * t * kl
    got = float(_np(distillation.distillation_loss(targets, student, teacher, w, t)))
    assert got == pytest.approx(expected, rel=1e-5)
    assert float(_np(distillation.soft_cross_entropy(targets, student))) == pytest.approx(ce)


def test_tta_averages_flipped_predictions():
    model = build_expression_model("resnet12", 7)
    faces = np.random.default_rng(0).integers(0, 256, (5, 60, 60), dtype=np.uint8)
    x = recipe_lib.tta_views(faces, "none")[0]
    p, p_flip = model.predict(x, verbose=0), model.predict(x[:, :, ::-1].copy(), verbose=0)
    np.testing.assert_allclose(recipe_lib.predict_tta(model, faces, "flip"), (p + p_flip) / 2,
                               atol=1e-6)
    views = recipe_lib.tta_views(faces, "flip_crops")
    assert len(views) == 10
    np.testing.assert_array_equal(views[2], faces[:, :48, :48, None] * np.float32(1 / 255))
    np.testing.assert_array_equal(views[3], views[2][:, :, ::-1])
    with pytest.raises(ValueError, match="TTA mode"):
        recipe_lib.tta_views(faces, "rot")


@pytest.mark.parametrize("backbone,params", [("resnet18_std", 11_181_384), ("edge", 674_296),
                                             ("resnet12", 88_728)])
def test_backbones_output_probabilities(backbone, params):
    model = build_expression_model(backbone, 8)
    assert model.count_params() == params
    assert model.input_shape == (None, 48, 48, 1) and model.output_shape == (None, 8)
    p = _np(model(np.random.default_rng(0).random((2, 48, 48, 1)).astype(np.float32)))
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    assert {"logits", "predictions", "dropout"} <= {layer.name for layer in model.layers}


def test_face_resnet_trunk_is_dlibs_at_other_input_sizes_too():
    pytest.importorskip("face_recognition_models")
    from keras_fer.models.face_identity import dlib_resnet

    dlib = {layer.name: layer for layer in dlib_resnet().layers}
    for size in (150, 112):
        model = build_expression_model("face_resnet", 7, input_size=size)
        trunk = model.get_layer("face_resnet")
        named = [layer for layer in trunk.layers if layer.weights]
        assert len(named) > 30
        for layer in named:
            for mine, theirs in zip(layer.get_weights(), dlib[layer.name].get_weights()):
                np.testing.assert_array_equal(mine, theirs)
        p = _np(model(np.random.default_rng(0).random((2, 48, 48, 1)).astype(np.float32)))
        assert p.shape == (2, 7)
        np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    assert "dlib_resnet_embedding" not in {layer.name for layer in trunk.layers}


def test_face_resnet_small_input_ends_after_block13():
    model = build_expression_model("face_resnet", 7, input_size=64, weights=None)
    trunk = model.get_layer("face_resnet")
    assert trunk.output_shape == (None, 256)
    assert "face_resnet_pool13" in {layer.name for layer in trunk.layers}
    with pytest.raises(ValueError, match="input_size"):
        build_expression_model("face_resnet", 7, input_size=48, weights=None)


def test_recipe_rejects_unknown_keys_listing_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown --extra key\(s\) \['mixupp'\]; valid keys: "
                                         r"input_size, .*cutmix_alpha"):
        recipe_lib.Recipe.from_extra({"mixupp": 0.2})
    with pytest.raises(ValueError, match="optimizer"):
        recipe_lib.Recipe.from_extra({"optimizer": "lamb"})


def test_training_targets_soft_in_protocol_order_and_smoothing():
    # ck7's classes are a reordered subset of the canonical eight.
    classes = ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")
    soft = np.zeros((2, 8), np.float32)
    soft[0, [1, 4]] = [0.6, 0.4]  # happiness 0.6, anger 0.4 (canonical order)
    soft[1, 0] = 1.0  # all neutral: no mass on ck7's classes -> one-hot label
    data = FoldData(fold=0, class_names=classes, x_train=np.zeros((2, 60, 60), np.uint8),
                    y_train=np.array([4, 2]), id_train=np.zeros(2, int), x_val=None,
                    y_val=None, id_val=None, x_test=None, y_test=None, train_subjects=[],
                    test_subjects=[], num_identities=1, soft_train=soft)
    t = training_targets(data, recipe_lib.Recipe())
    np.testing.assert_allclose(t[0], [0.4, 0, 0, 0, 0.6, 0, 0], atol=1e-6)
    np.testing.assert_allclose(t[1], np.eye(7)[2])
    hard = training_targets(data, recipe_lib.Recipe(soft_targets=False, label_smoothing=0.1))
    np.testing.assert_allclose(hard[0], 0.9 * np.eye(7)[4] + 0.1 / 7, atol=1e-6)


@pytest.mark.slow
def test_edge_int8_tflite_is_under_one_megabyte(tmp_path):
    from keras_fer.export import tflite

    faces = np.random.default_rng(0).integers(0, 256, (16, 60, 60), dtype=np.uint8)
    path = tflite.convert(build_expression_model("edge", 8), "int8", tmp_path / "edge.tflite",
                          representative_faces=faces)
    assert path.stat().st_size <= 1_000_000


def test_face_resnet_feature_is_normalised_and_reachable():
    model = build_expression_model("face_resnet", 7, weights=None)
    feature = keras.Model(model.input, model.get_layer("dropout").input)
    assert isinstance(model.get_layer("feature_bn"), keras.layers.BatchNormalization)
    assert feature.output_shape == (None, 256)


def test_refresh_batch_norm_sets_moving_stats_to_clean_average():
    from keras_fer.training.expression import refresh_batch_norm

    model = build_expression_model("face_resnet", 7, input_size=104, weights=None)
    faces = np.random.default_rng(0).integers(0, 256, (10, 60, 60), dtype=np.uint8)
    features = keras.Model(model.input, model.get_layer("feature_bn").input)
    f = _np(features(recipe_lib.tta_views(faces, "none")[0]))
    bn = model.get_layer("feature_bn")
    refresh_batch_norm(model, faces, batch_size=5)
    # Two batches of five: the plain average of the two batch means.
    np.testing.assert_allclose(_np(bn.moving_mean), f.mean(0), rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.9


def test_trunk_lr_multiplier_gives_dlib_layers_their_own_optimizer():
    recipe = recipe_lib.Recipe(optimizer="adamw", trunk_lr_multiplier=0.1, warmup_epochs=0)
    opt = recipe_lib.make_optimizer(recipe, 1e-3, 1, 10)
    assert isinstance(opt, keras.optimizers.MultiOptimizer)
    rates = {o.name: float(_np(o.learning_rate)) for o in opt.optimizers}
    assert rates == pytest.approx({"head": 1e-3, "trunk": 1e-4})


@pytest.mark.slow
def test_training_with_trunk_lr_multiplier_logs_the_head_rate(tmp_path):
    from keras_fer.training.expression import SelectOnValidation

    recipe = recipe_lib.Recipe(optimizer="sgd", trunk_lr_multiplier=0.1, warmup_epochs=0,
                               precise_bn_faces=0)
    net = build_expression_model("resnet12", 7)
    faces = np.random.default_rng(0).integers(0, 256, (8, 60, 60), dtype=np.uint8)
    batches = recipe_lib.RecipeBatches(faces, np.eye(7, dtype=np.float32)[np.arange(8) % 7], 4)
    trainer = RecipeModel(net, recipe)
    trainer.compile(optimizer=recipe_lib.make_optimizer(recipe, 0.05, 2, len(batches)),
                    jit_compile=False)
    select = SelectOnValidation(net, faces, np.arange(8) % 7, tmp_path, 8)
    history = trainer.fit(batches, epochs=1, callbacks=[select], verbose=0)
    assert history.history["learning_rate"][0] == pytest.approx(0.025, rel=1e-5)
    assert (tmp_path / "best.json").exists()


def test_select_on_validation_breaks_accuracy_ties_on_the_loss(tmp_path, monkeypatch):
    """All four epochs tie at 100% but the last: the epoch kept is the one whose true-class
    probabilities are highest (lowest validation loss), with its weights."""
    import types

    from keras_fer.training import expression as expression_training

    net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    outputs = iter(np.array(p, np.float32) for p in (
        [[0.6, 0.4], [0.4, 0.6]], [[0.9, 0.1], [0.1, 0.9]], [[0.7, 0.3], [0.3, 0.7]],
        [[0.4, 0.6], [0.01, 0.99]]))
    monkeypatch.setattr(expression_training.recipe_lib, "predict_tta",
                        lambda *args: next(outputs))
    select = expression_training.SelectOnValidation(
        net, np.zeros((2, 2), np.float32), np.array([0, 1]), tmp_path, 2)
    select.set_model(types.SimpleNamespace(optimizer=keras.optimizers.SGD(0.1)))
    logs = []
    for epoch in range(4):
        net.set_weights([np.full((2, 1), epoch + 1.0, np.float32), np.zeros(1, np.float32)])
        logs.append({})
        select.on_epoch_end(epoch, logs[-1])
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["epoch"] == 2 and best["valid_accuracy"] == 100.0
    assert best["valid_loss"] == pytest.approx(-np.log(0.9), rel=1e-5)
    assert [round(log["val_loss"], 3) for log in logs] == [0.511, 0.105, 0.357, 0.463]
    net.load_weights(str(tmp_path / "best.weights.h5"))
    assert float(net.get_weights()[0][0, 0]) == 2.0
    # A best.json from before the loss was kept: ties keep its epoch.
    (tmp_path / "best.json").write_text(json.dumps({"epoch": 3, "valid_accuracy": 100.0}))
    again = expression_training.SelectOnValidation(
        net, np.zeros((2, 2), np.float32), np.array([0, 1]), tmp_path, 2)
    assert not again._better(100.0, 0.01) and again._better(100.0 + 1e-9, 9.0)
