"""IF-GAN trainer: CLI runs of the three variants (ifgan with export, noattention, baseline).

Runs are tiny (synthetic faces, one fold, one epoch, 8-filter networks, no XLA) and check
what the trainer writes, not accuracy: the results.json schema, subject-disjoint folds, the
stage folders, the figures, the training-fold average faces and the exported SavedModel.
The three CLI runs start together (one module fixture) so their start-up overlaps.
"""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_fer.data.preprocess import to_model_input
from keras_fer.models.ifgan import average_identity_targets
from keras_fer.training import runner
from keras_fer.training.config import TrainConfig
from keras_fer.data.experiments import fold_indices, load_experiment, make_fold
from keras_fer.training.batchnorm import recalibrate_batchnorm
from keras_fer.training.ifgan import IFGANMethod, one_face_per_subject, recalibrate
from trainers import ifgan as trainer
from flag_helpers import parsed_flags

REPO = Path(__file__).resolve().parents[1]
FLAGFILES = REPO / "trainers" / "flagfiles"
RESULT_KEYS = {"method", "variant", "dataset", "protocol", "classes", "folds", "mean_accuracy",
               "std_accuracy"}
FOLD_KEYS = {"fold", "accuracy", "train_subjects", "test_subjects", "confusion_matrix"}
TINY_EXTRA = {"generator_filters": 8, "discriminator_filters": 8, "classifier_filters": 8,
              "feature_dim": 16, "jit_compile": False}
VARIANTS = ("ifgan", "noattention", "baseline")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Starts the three CLI runs at once; yields ``{variant: (model_dir, process)}``."""
    root = tmp_path_factory.mktemp("ifgan_runs")
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    procs = {}
    for variant in VARIANTS:
        model_dir = root / variant
        args = [sys.executable, "-m", "trainers.ifgan", f"--variant={variant}",
                "--dataset=synthetic", "--folds=5", "--fold=0", "--epochs=1",
                "--batch_size=128", f"--extra={json.dumps(TINY_EXTRA)}",
                f"--model_dir={model_dir}"]
        if variant == "ifgan":
            args.append("--export=savedmodel")
        procs[variant] = (model_dir, subprocess.Popen(args, cwd=REPO, env=env, text=True,
                                                      stdout=subprocess.PIPE,
                                                      stderr=subprocess.PIPE))
    yield procs
    for _, proc in procs.values():
        if proc.poll() is None:
            proc.kill()


def _finished(runs, variant: str) -> Path:
    model_dir, proc = runs[variant]
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    return model_dir


def _check_results(model_dir: Path, variant: str, dataset: str = "synthetic") -> dict:
    results = json.loads((model_dir / "results.json").read_text())
    assert RESULT_KEYS <= set(results)
    assert (results["method"], results["variant"]) == ("ifgan", variant)
    assert (results["dataset"], results["protocol"]) == (dataset, "ck7")
    assert len(results["classes"]) == 7
    assert len(results["folds"]) == 1
    fold = results["folds"][0]
    assert FOLD_KEYS <= set(fold)
    assert fold["test_subjects"] and fold["train_subjects"]
    assert not set(fold["test_subjects"]) & set(fold["train_subjects"])
    cm = np.array(fold["confusion_matrix"])
    assert cm.shape == (7, 7)
    assert fold["accuracy"] == pytest.approx(100.0 * np.trace(cm) / cm.sum())
    assert results["mean_accuracy"] == pytest.approx(fold["accuracy"])
    config = json.loads((model_dir / "config.json").read_text())
    assert config["lr"] == 1e-4 and config["extra"] == TINY_EXTRA
    assert config["variant"] == variant
    inference = keras.saving.load_model(model_dir / "fold_0" / "inference.keras")
    assert inference.input_shape == (None, 48, 48, 1)
    assert inference.output_shape == (None, 7)
    return results


def _training_fold(model_dir: Path):
    config = TrainConfig(**json.loads((model_dir / "config.json").read_text()))
    exp = load_experiment("synthetic", model_dir, "ck7", seed=config.seed)
    idx = fold_indices(exp, config.folds, config.seed, config.val_fraction)[0]
    return make_fold(exp, 0, idx, seed=config.seed)


def _training_faces(model_dir: Path) -> np.ndarray:
    return to_model_input(_training_fold(model_dir).x_train)


def _training_fold_average(model_dir: Path) -> np.ndarray:
    data = _training_fold(model_dir)
    return average_identity_targets(to_model_input(data.x_train), data.y_train, 7)


@pytest.mark.parametrize("variant", ["ifgan", "noattention"])
@pytest.mark.slow
def test_cli_gan_variants(runs, variant):
    model_dir = _finished(runs, variant)
    _check_results(model_dir, variant)
    fold_dir = model_dir / "fold_0"
    assert (fold_dir / "gan" / "final.weights.h5").exists()
    # TensorBoard ran (it reads the GAN's optimizers as a list) and logged the rates.
    assert any((fold_dir / "gan" / "tensorboard").rglob("*.v2"))
    assert (fold_dir / "generation.png").stat().st_size > 0
    assert (fold_dir / "attention.png").exists() == (variant == "ifgan")
    # The targets are the class means of the training fold's faces, nothing else.
    average = np.load(fold_dir / "average_faces.npy")
    np.testing.assert_allclose(average, _training_fold_average(model_dir), atol=1e-6)
    model = keras.saving.load_model(fold_dir / "inference.keras")
    attention = [layer for layer in model.get_layer("generator").layers
                 if "attention" in type(layer).__name__.lower()]
    assert bool(attention) == (variant == "ifgan")
    # G's batch norm holds the population statistics of the training fold's faces (all of
    # them: fewer than RECALIBRATION_FACES), and E's those of the pairs (x, G(x)):
    # recalibrating the exported G and E again changes nothing.
    report = json.loads((fold_dir / "recalibration.json").read_text())
    faces = _training_faces(model_dir)
    assert report["faces"] == len(faces)
    assert (report["after"]["generator"]["inference_vs_training"]
            <= report["before"]["generator"]["inference_vs_training"])
    assert 0 <= report["after"]["train_accuracy"] <= 100
    results = json.loads((model_dir / "results.json").read_text())
    assert results["folds"][0]["recalibration"] == report
    generator, classifier = model.get_layer("generator"), model.get_layer("classifier")
    saved = [np.array(v.numpy()) for m in (generator, classifier)
             for v in m.non_trainable_variables]
    recalibrate_batchnorm(generator, faces)
    recalibrate_batchnorm(classifier, [faces, np.asarray(generator.predict(faces, verbose=0))])
    again = [v.numpy() for m in (generator, classifier) for v in m.non_trainable_variables]
    for value, before in zip(again, saved):
        np.testing.assert_allclose(value, before, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_cli_ifgan_exports_savedmodel(runs):
    model_dir = _finished(runs, "ifgan")
    saved = model_dir / "export" / "savedmodel"
    assert (saved / "saved_model.pb").exists()
    report = json.loads((model_dir / "export" / "export_report.json").read_text())
    assert "savedmodel" in json.dumps(report)


@pytest.mark.slow
def test_cli_baseline_is_the_plain_classifier(runs):
    model_dir = _finished(runs, "baseline")
    _check_results(model_dir, "baseline")
    fold_dir = model_dir / "fold_0"
    assert sorted(p.name for p in fold_dir.iterdir() if p.is_dir()) == ["classifier"]
    model = keras.saving.load_model(fold_dir / "inference.keras")
    assert model.get_layer("classifier_features").output.shape == (None, 16)
    assert not any(layer.name.startswith(("generator", "discriminator"))
                   for layer in model.layers)


def test_unknown_variant_is_rejected(tmp_path):
    config = TrainConfig(method="ifgan", variant="attention", model_dir=str(tmp_path / "x"),
                         folds=5, fold=0, epochs=1)
    with pytest.raises(ValueError, match="variant='attention'"):
        runner.train_and_evaluate(IFGANMethod(), config)


def test_recalibration_off_leaves_both_networks_and_on_sets_e_to_the_pairs():
    from keras_fer.models.ifgan import build_expression_classifier
    from keras_fer.models.unet import UNetConfig, build_unet_generator

    keras.utils.set_random_seed(0)
    generator = build_unet_generator(UNetConfig(base_filters=4, use_attention=False))
    classifier = build_expression_classifier(7, filters=4, feature_dim=8)
    rng = np.random.default_rng(0)
    faces = rng.uniform(size=(40, 48, 48, 1)).astype("float32")
    labels = rng.integers(0, 7, size=40)
    variables = generator.non_trainable_variables + classifier.non_trainable_variables
    saved = [np.array(v.numpy()) for v in variables]
    report = recalibrate(generator, classifier, faces, faces, labels, enabled=False,
                         batch_size=8)
    assert report["after"] is None and report["faces"] == 0
    assert report["before"]["generator"]["inference_vs_training"] > 0
    for variable, value in zip(variables, saved):
        np.testing.assert_array_equal(variable.numpy(), value)
    report = recalibrate(generator, classifier, faces, faces, labels, enabled=True,
                         batch_size=8)
    assert report["faces"] == 40
    assert (report["after"]["generator"]["inference_vs_training"]
            < report["before"]["generator"]["inference_vs_training"])
    # E's first batch norm now has the statistics of its first convolution on the pairs
    # (x, G(x)) the exported path feeds it.
    pairs = [faces, np.asarray(generator.predict(faces, verbose=0))]
    bn = next(l for l in classifier.layers if isinstance(l, keras.layers.BatchNormalization))
    pre = np.asarray(keras.Model(classifier.inputs, bn.input)(pairs))
    np.testing.assert_allclose(bn.moving_mean.numpy(), pre.mean(axis=(0, 1, 2)), rtol=1e-3,
                               atol=1e-5)


def test_recalibration_is_kept_for_a_resumed_run_and_redone_after_a_new_stage(tmp_path,
                                                                              monkeypatch):
    from keras_fer.models import ifgan as ifgan_models
    from keras_fer.training import ifgan as ifgan_training

    def tiny():
        keras.utils.set_random_seed(0)
        return ifgan_models.build_ifgan(ifgan_models.IFGANConfig(
            num_classes=7, generator_filters=4, discriminator_filters=4, classifier_filters=4,
            feature_dim=8))

    rng = np.random.default_rng(0)
    faces = rng.uniform(size=(24, 48, 48, 1)).astype("float32")
    args = (faces, faces, rng.integers(0, 7, size=24), True, 0, 8)
    stage, report_path = tmp_path / "gan", tmp_path / "recalibration.json"
    stage.mkdir()

    def stats(gan):
        return [np.array(v.numpy()) for v in gan.non_trainable_variables]

    gan = tiny()
    first = ifgan_training.recalibrate_once(gan, stage, report_path, False, *args)
    assert (stage / ifgan_training.RECALIBRATED_WEIGHTS).exists()
    assert json.loads(report_path.read_text()) == first
    recalibrated = stats(gan)
    # Killed after it (e.g. in the test pass): the next run's complete stage loads the same
    # weights and report, without recalibrating.
    monkeypatch.setattr(ifgan_training, "recalibrate", lambda *a, **k: pytest.fail("again"))
    fresh = tiny()
    assert any(not np.array_equal(a, b) for a, b in zip(stats(fresh), recalibrated))
    assert ifgan_training.recalibrate_once(fresh, stage, report_path, True, *args) == first
    for value, expected in zip(stats(fresh), recalibrated):
        np.testing.assert_array_equal(value, expected)
    # A stage trained in this run (not resumed): its own recalibration, the old one discarded.
    calls = []
    monkeypatch.setattr(ifgan_training, "recalibrate",
                        lambda *a, **k: calls.append(1) or {"before": {}, "after": None,
                                                            "faces": 0})
    assert ifgan_training.recalibrate_once(tiny(), stage, report_path, False, *args)["faces"] == 0
    assert calls == [1] and not (stage / ifgan_training.RECALIBRATED_WEIGHTS).exists()


def test_one_face_per_subject_keeps_the_first_of_each_class_and_subject():
    labels = np.array([0, 0, 0, 1, 0, 1, 0])
    subjects = np.array(["a", "a", "b", "a", "b", "a", "c"])
    np.testing.assert_array_equal(one_face_per_subject(labels, subjects), [0, 2, 3, 6])
    np.testing.assert_array_equal(one_face_per_subject(labels, None), np.arange(7))


@pytest.mark.parametrize("name, dataset, epochs, batch_size",
                         [("ifgan_ckplus", "ckplus48", 100, 32),
                          ("ifgan_quickstart", "synthetic", 4, 32)])
def test_flagfiles_give_the_protocols(tmp_path, name, dataset, epochs, batch_size):
    with parsed_flags("ifgan", f"--flagfile={FLAGFILES / name}.flags", f"--model_dir={tmp_path}"):
        config = trainer.config_from_flags()
    assert (config.method, config.variant, config.dataset) == ("ifgan", "ifgan", dataset)
    assert (config.epochs, config.batch_size, config.lr) == (epochs, batch_size, 1e-4)
    assert config.protocol == ("ck7" if dataset == "ckplus48" else "")


@pytest.fixture(scope="module")
def ckplus_subset(ckplus48_dir):
    """CK+48 (7 classes) restricted to its first 12 subjects, and the data root."""
    root = ckplus48_dir.parents[1]
    exp = load_experiment("ckplus48", root, "ck7", use_orl=False)
    keep = np.isin(exp.subjects, np.unique(exp.subjects)[:12])
    return root, dataclasses.replace(exp, faces=exp.faces[keep], labels=exp.labels[keep],
                                     subjects=exp.subjects[keep])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.slow
def test_ckplus_flagfile_runs_from_the_trainer(ckplus_subset, tmp_path, variant):
    root, exp = ckplus_subset
    with parsed_flags("ifgan", f"--flagfile={FLAGFILES / 'ifgan_ckplus'}.flags", f"--data_dir={root}",
                       f"--model_dir={tmp_path}", f"--variant={variant}", "--fold=0",
                       "--epochs=1", f"--extra={json.dumps(TINY_EXTRA)}"):
        config = trainer.config_from_flags()
    # The flagfile's protocol (10 folds) on 12 subjects, so that it stays a tiny run.
    results = trainer.run(config, experiment=exp)
    assert results["folds"] == _check_results(tmp_path, variant, "ckplus48")["folds"]
    fold_dir = tmp_path / "fold_0"
    gan = variant != "baseline"
    assert (fold_dir / "generation.png").exists() == gan
    assert (fold_dir / "attention.png").exists() == (variant == "ifgan")
    assert (fold_dir / ("gan" if gan else "classifier") / "final.weights.h5").exists()


def test_r18_flagfile_gives_e_and_the_baseline_the_ferplus_resnet18(tmp_path):
    with parsed_flags("ifgan", f"--flagfile={FLAGFILES / 'ifgan_ckplus7_r18_face'}.flags",
                      f"--model_dir={tmp_path}"):
        config = trainer.config_from_flags()
    assert (config.dataset, config.protocol, config.variant) == ("ckplus48", "ck7", "ifgan")
    assert (config.folds, config.fold_seed, config.epochs, config.lr) == (10, 0, 100, 1e-4)
    assert config.extra == {"classifier_backbone": "resnet18_std",
                            "classifier_weights": ".devdata/ferplus_resnet18_std.keras"}


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["ifgan", "baseline"])
def test_resnet18_classifier_starts_from_the_ferplus_resnet18(tmp_path, capsys, monkeypatch,
                                                              variant):
    """``classifier_backbone=resnet18_std`` with ``classifier_weights`` = a ResNet-18
    expression model: E (first convolution split onto the pair) and the baseline start with
    its trunk; the run writes its usual results."""
    from keras_fer.models import ifgan as ifgan_models
    from resnet18_source import make_source, trunk_weights

    source = make_source(tmp_path / "ferplus_resnet18_std.keras")
    started = {}
    transfer = ifgan_models.transfer_classifier_weights

    def recording(src, target):
        copied = transfer(src, target)
        started.update(trunk_weights(target))
        return copied

    monkeypatch.setattr(ifgan_models, "transfer_classifier_weights", recording)
    exp = load_experiment("synthetic", tmp_path / "data", "ck7")
    keep = np.isin(exp.subjects, np.unique(exp.subjects)[:10])
    exp = dataclasses.replace(exp, faces=exp.faces[keep], labels=exp.labels[keep],
                              subjects=exp.subjects[keep])
    extra = {**TINY_EXTRA, "classifier_backbone": "resnet18_std",
             "classifier_weights": str(tmp_path / "ferplus_resnet18_std.keras")}
    config = TrainConfig(method="ifgan", variant=variant, model_dir=str(tmp_path / "run"),
                         folds=5, fold=0, epochs=1, batch_size=32, lr=1e-4, extra=extra)
    results = runner.train_and_evaluate(IFGANMethod(), config, experiment=exp)
    assert "classifier initialised from" in capsys.readouterr().out
    want = trunk_weights(source)
    assert sorted(started) == sorted(want)
    for name, values in want.items():
        got = started[name]
        if variant == "ifgan" and name == "resnet18_std_stem_conv":
            got = [got[0].sum(axis=2, keepdims=True)]
            np.testing.assert_allclose(got[0], values[0], rtol=1e-6)
            continue
        for a, b in zip(got, values):
            np.testing.assert_array_equal(a, b)
    (fold,) = results["folds"]
    assert not set(fold["test_subjects"]) & set(fold["train_subjects"])
    assert np.array(fold["confusion_matrix"]).shape == (7, 7)
    fold_dir = tmp_path / "run" / "fold_0"
    assert (fold_dir / ("gan" if variant == "ifgan" else "classifier") /
            "final.weights.h5").exists()
    model = keras.saving.load_model(fold_dir / "inference.keras")
    assert model.output_shape == (None, 7)
    classifier = model.get_layer("classifier") if variant == "ifgan" else model
    assert classifier.get_layer("resnet18_std_pool").output.shape == (None, 512)
    assert classifier.get_layer("classifier_features").output.shape == (None, 16)
