"""keras_fer.training.batchnorm: population statistics for batch-norm layers, and the gap
between a model's inference and training modes."""

import keras
import numpy as np

from keras_fer.training import batchnorm


def _model():
    keras.utils.set_random_seed(0)
    x = keras.Input((4, 4, 2))
    y = keras.layers.Conv2D(3, 1, use_bias=False, name="conv")(x)
    y = keras.layers.BatchNormalization(name="bn1")(y)
    y = keras.layers.ReLU()(y)
    y = keras.layers.Conv2D(2, 1, name="conv2")(y)
    y = keras.layers.BatchNormalization(name="bn2")(y)
    return keras.Model(x, y)


def test_recalibration_sets_population_statistics_layer_by_layer():
    rng = np.random.default_rng(0)
    model = _model()
    # Inputs whose per-channel mean and scale are far from the layers' initial 0 / 1.
    faces = (rng.normal(size=(50, 4, 4, 2)) * [3.0, 0.5] + [5.0, -2.0]).astype("float32")
    names = batchnorm.recalibrate_batchnorm(model, faces, batch_size=16)
    assert names == ["bn1", "bn2"]
    pre1 = np.asarray(keras.Model(model.input, model.get_layer("bn1").input)(faces))
    bn1 = model.get_layer("bn1")
    np.testing.assert_allclose(bn1.moving_mean.numpy(), pre1.mean(axis=(0, 1, 2)), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(bn1.moving_variance.numpy(), pre1.var(axis=(0, 1, 2)),
                               rtol=1e-4, atol=1e-4)
    # bn2's statistics are those of its input with bn1 already recalibrated: the output of
    # the whole model in inference mode is then standardised per channel.
    out = np.asarray(model(faces, training=False))
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0.0, atol=1e-3)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1.0, atol=1e-2)


def test_recalibration_variance_is_exact_when_the_mean_dwarfs_the_spread():
    # Per-batch sums of squares less the squared mean lose every digit here in float32; the
    # batches' centred moments combined in float64 keep them.
    x = keras.Input((3, 3, 2))
    model = keras.Model(x, keras.layers.BatchNormalization(name="bn")(x))
    rng = np.random.default_rng(2)
    faces = (rng.normal(size=(70, 3, 3, 2)) * [0.1, 2.0] + [1000.0, -50.0]).astype("float32")
    batchnorm.recalibrate_batchnorm(model, faces, batch_size=16)
    rows = faces.astype(np.float64).reshape(-1, 2)
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), rows.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), rows.var(axis=0), rtol=1e-3)


def test_mode_gap_leaves_the_moving_statistics_and_closes_after_recalibration():
    rng = np.random.default_rng(1)
    model = _model()
    faces = (rng.normal(size=(64, 4, 4, 2)) * 4.0 + 3.0).astype("float32")
    before = [v.numpy().copy() for v in model.non_trainable_variables]
    gap = batchnorm.mode_gap(model, faces, targets=np.zeros((64, 4, 4, 2)), batch_size=64)
    for variable, value in zip(model.non_trainable_variables, before):
        np.testing.assert_array_equal(variable.numpy(), value)
    assert gap["inference_vs_training"] > 0.3  # fresh layers: moving stats 0 / 1
    batchnorm.recalibrate_batchnorm(model, faces, batch_size=64)
    # One batch of all the faces: training mode's batch statistics are the population's.
    after = batchnorm.mode_gap(model, faces, batch_size=64)
    assert after["inference_vs_training"] < 1e-4
    assert after["inference_to_target"] is None


def _gap_report() -> dict:
    """Mode gap before and after recalibration, and whether the gap pass restored the moving
    statistics, on the backend this process runs (for :func:`test_the_same_on_jax`)."""
    model = _model()
    faces = (np.random.default_rng(1).normal(size=(64, 4, 4, 2)) * 4.0 + 3.0).astype("float32")
    saved = [v.numpy().copy() for v in model.non_trainable_variables]
    before = batchnorm.mode_gap(model, faces, batch_size=64)["inference_vs_training"]
    restored = all(np.array_equal(v.numpy(), s)
                   for v, s in zip(model.non_trainable_variables, saved))
    batchnorm.recalibrate_batchnorm(model, faces, batch_size=16)
    after = batchnorm.mode_gap(model, faces, batch_size=64)["inference_vs_training"]
    return {"backend": keras.backend.backend(), "before": before, "after": after,
            "restored": restored}


def test_the_same_on_jax():
    # The GPU runs IF-GAN on JAX: its variables, eager training-mode calls and assign.
    from jax_subprocess import jax_report

    report = jax_report("test_batchnorm", "_gap_report")
    assert report["backend"] == "jax" and report["restored"]
    assert report["before"] > 0.3 and report["after"] < 1e-4
