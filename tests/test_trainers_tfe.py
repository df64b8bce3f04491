"""TFE-JL trainer: CLI run with export, resume, baseline, CK+ 7 and 8 classes from their
flagfiles, verification.

Runs are tiny (one fold, one epoch per stage, few subjects) and check what the trainer
writes, not accuracy: the results.json schema, subject-disjoint folds, the stage folders,
the DeepID verification report and the exported files.
"""

import dataclasses
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_fer.training import runner
from keras_fer.training.config import TrainConfig
from keras_fer.data.experiments import Experiment, FoldData, load_experiment
from keras_fer.training.tfe import TFEMethod, split_identities, verification_rate
from trainers import tfe as trainer
from flag_helpers import parsed_flags

REPO = Path(__file__).resolve().parents[1]
FLAGFILES = REPO / "trainers" / "flagfiles"
RESULT_KEYS = {"method", "variant", "dataset", "protocol", "classes", "folds", "mean_accuracy",
               "std_accuracy"}
FOLD_KEYS = {"fold", "accuracy", "train_subjects", "test_subjects", "confusion_matrix"}
TINY = dict(folds=3, fold=0, epochs=1, pretrain_epochs=1, batch_size=128, depth=12)


def _check_results(model_dir: Path, variant: str, dataset: str, protocol: str, n_classes: int):
    results = json.loads((model_dir / "results.json").read_text())
    assert RESULT_KEYS <= set(results)
    assert (results["method"], results["variant"]) == ("tfe", variant)
    assert (results["dataset"], results["protocol"]) == (dataset, protocol)
    assert len(results["classes"]) == n_classes
    assert len(results["folds"]) == 1
    fold = results["folds"][0]
    assert FOLD_KEYS <= set(fold)
    assert not set(fold["test_subjects"]) & set(fold["train_subjects"])
    cm = np.array(fold["confusion_matrix"])
    assert cm.shape == (n_classes, n_classes)
    assert fold["accuracy"] == pytest.approx(100.0 * np.trace(cm) / cm.sum())
    assert results["mean_accuracy"] == pytest.approx(fold["accuracy"])
    assert results["std_accuracy"] == 0.0
    assert (model_dir / "config.json").exists()
    return results


def _subjects_subset(exp: Experiment, n_subjects: int) -> Experiment:
    """The experiment restricted to its first ``n_subjects`` subjects (ORL kept whole)."""
    keep = np.isin(exp.subjects, np.unique(exp.subjects)[:n_subjects])
    return dataclasses.replace(exp, faces=exp.faces[keep], labels=exp.labels[keep],
                               subjects=exp.subjects[keep])


def _check_verification(fold_dir: Path, source: str):
    report = json.loads((fold_dir / "verification.json").read_text())
    assert report["source"] == source
    assert 0.0 <= report["verification_rate"] <= 100.0
    assert not set(report["threshold_identities"]) & set(report["test_identities"])
    return report


@pytest.mark.slow
def test_cli_synthetic_tfe_exports_and_resumes(tmp_path):
    model_dir = tmp_path / "tfe"
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               XLA_FLAGS="--xla_backend_optimization_level=0 "
                         "--xla_llvm_disable_expensive_passes=true")
    args = [sys.executable, "-m", "trainers.tfe", "--dataset=synthetic", "--folds=5", "--fold=0",
            "--pretrain_epochs=1", "--epochs=1", "--batch_size=128",
            "--export=savedmodel,tflite_float32", f"--model_dir={model_dir}",
            '--extra={"identity": "deepid"}']
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "DeepID verification rate" in proc.stdout

    _check_results(model_dir, "tfe", "synthetic", "ck7", 7)
    config = json.loads((model_dir / "config.json").read_text())
    assert (config["depth"], config["lr"], config["pretrain_lr"]) == (12, 0.16, 0.16)
    fold_dir = model_dir / "fold_0"
    for stage in ("pretrain_deepid", "pretrain_resnet", "joint"):
        assert (fold_dir / stage / "final.weights.h5").exists(), stage
    # Synthetic data has no ORL: the held-out identities are training subjects.
    _check_verification(fold_dir, "training_subjects")
    summary = json.loads((model_dir / "verification.json").read_text())
    assert [f["fold"] for f in summary["folds"]] == [0]
    assert (model_dir / "export" / "savedmodel" / "saved_model.pb").exists()
    assert (model_dir / "export" / "tflite" / "model_float32.tflite").stat().st_size > 0

    inference = keras.saving.load_model(fold_dir / "inference.keras")
    assert inference.input_shape == (None, 48, 48, 1)
    assert inference.output_shape == (None, 7)

    class MustNotTrain:
        name = "tfe"

        def fit_fold(self, data, config, fold_dir):
            raise AssertionError(f"fold {data.fold} was trained again")

    config["export"] = []
    before = (fold_dir / "result.json").read_text()
    rerun = runner.train_and_evaluate(MustNotTrain(), TrainConfig(**config))
    assert rerun["folds"][0] == json.loads(before)


def _tiny_synthetic(tmp_path) -> Experiment:
    return _subjects_subset(load_experiment("synthetic", tmp_path, "ck7"), 12)


@pytest.mark.slow
def test_baseline_trains_resnet_only(tmp_path):
    config = TrainConfig(method="tfe", variant="baseline", model_dir=str(tmp_path / "b"), lr=0.16,
                         pretrain_lr=0.16, **TINY)
    runner.train_and_evaluate(TFEMethod(), config, experiment=_tiny_synthetic(tmp_path))
    _check_results(tmp_path / "b", "baseline", "synthetic", "ck7", 7)
    fold_dir = tmp_path / "b" / "fold_0"
    assert sorted(p.name for p in fold_dir.iterdir() if p.is_dir()) == [
        "finetune", "pretrain_resnet"]
    model = keras.saving.load_model(fold_dir / "inference.keras")
    assert model.get_layer("image").output.shape == (None, 48, 48, 1)
    assert not any(layer.name.startswith("deepid") for layer in model.layers)


def test_unknown_variant_is_rejected(tmp_path):
    config = TrainConfig(method="tfe", variant="if", model_dir=str(tmp_path / "x"), **TINY)
    with pytest.raises(ValueError, match="variant='if'"):
        runner.train_and_evaluate(TFEMethod(), config, experiment=_tiny_synthetic(tmp_path))


@pytest.mark.parametrize(
    "name, dataset, protocol, depth",
    [("tfe_ckplus7", "ckplus48", "ck7", 12), ("tfe_ckplus8", "ckplus_neutral", "ck8", 12),
     ("tfe_ferplus", "ferplus", "ferplus8", 18), ("tfe_fer2013", "fer2013", "fer2013", 18),
     ("tfe_quickstart", "synthetic", "", 12)],
)
def test_flagfiles_give_the_protocols(tmp_path, name, dataset, protocol, depth):
    with parsed_flags("tfe", f"--flagfile={FLAGFILES / name}.flags", f"--model_dir={tmp_path}"):
        config = trainer.config_from_flags()
    assert (config.method, config.variant) == ("tfe", "tfe")
    assert (config.dataset, config.protocol, config.depth) == (dataset, protocol, depth)
    if dataset.startswith("ckplus"):
        # The paper's CK+ settings: 10 folds, 200 + 100 epochs, batch 128, lr 0.16 / 0.01.
        assert (config.folds, config.pretrain_epochs, config.epochs) == (10, 200, 100)
        assert (config.batch_size, config.lr, config.pretrain_lr) == (128, 0.16, 0.16)
        assert config.extra == {"deepid_lr": 0.01, "deepid_pretrain_lr": 0.01}


@functools.lru_cache(maxsize=None)
def _ckplus_subset(dataset: str, data_root: Path, protocol: str) -> Experiment:
    """The protocol's experiment on its first 16 subjects (ORL kept), read once per module."""
    exp = load_experiment(dataset, data_root, protocol)
    assert exp.identity_faces is not None, "ORL identities were not loaded"
    return _subjects_subset(exp, 16)


@pytest.mark.parametrize(
    "name, dataset, protocol, n_classes, variant",
    [("tfe_ckplus7", "ckplus48", "ck7", 7, "tfe"),
     ("tfe_ckplus7", "ckplus48", "ck7", 7, "baseline"),
     ("tfe_ckplus8", "ckplus_neutral", "ck8", 8, "tfe"),
     ("tfe_ckplus8", "ckplus_neutral", "ck8", 8, "baseline")],
)
@pytest.mark.slow
def test_ckplus_flagfile_runs_from_the_trainer(request, tmp_path, capsys, name, dataset,
                                               protocol, n_classes, variant):
    data_root = request.getfixturevalue(f"{dataset}_dir").parents[1]
    model_dir = tmp_path / dataset
    export = ["--export=tflite_int8"] if (protocol, variant) == ("ck8", "tfe") else []
    with parsed_flags("tfe", f"--flagfile={FLAGFILES / name}.flags", f"--data_dir={data_root}",
                       f"--model_dir={model_dir}", f"--variant={variant}", "--fold=0",
                       "--pretrain_epochs=1", "--epochs=1", *export):
        config = trainer.config_from_flags()
    # DeepID as the identity network (the flagfile's default is dlib's face network, whose
    # tandem tests/test_identity_switch.py runs): these assertions hold DeepID's stages.
    config = dataclasses.replace(config, extra={**config.extra, "identity": "deepid"})
    # The flagfile's protocol (10 folds) on 16 subjects, so that it stays a tiny run.
    trainer.run(config, experiment=_ckplus_subset(dataset, data_root, protocol))
    _check_results(model_dir, variant, dataset, protocol, n_classes)
    fold_dir = model_dir / "fold_0"
    stages = sorted(p.name for p in fold_dir.iterdir() if p.is_dir())
    if variant == "baseline":
        assert stages == ["finetune", "pretrain_resnet"]
        assert not (fold_dir / "verification.json").exists()
        return
    assert stages == ["joint", "pretrain_deepid", "pretrain_resnet"]
    assert "DeepID verification rate" in capsys.readouterr().out
    report = _check_verification(fold_dir, "orl")
    # 20% of ORL's 40 subjects are held out, 4 per half.
    assert len(report["threshold_identities"]) == len(report["test_identities"]) == 4
    if export:
        assert (model_dir / "export" / "tflite" / "model_int8.tflite").stat().st_size > 0
        exported = json.loads((model_dir / "export" / "export_report.json").read_text())
        # Measured on the fold's test faces: int8 probabilities stay close to the Keras ones.
        assert exported["variants"]["tflite_int8"]["max_abs_diff"] < 0.15


def _fold(id_train, identity_y=None) -> FoldData:
    n = len(id_train)
    faces = np.zeros((n, 60, 60), np.uint8)
    return FoldData(
        fold=0, class_names=("a", "b"), x_train=faces, y_train=np.zeros(n, np.int64),
        id_train=np.asarray(id_train, np.int64), x_val=faces[:0], y_val=np.zeros(0, np.int64),
        id_val=np.zeros(0, np.int64), x_test=faces[:0], y_test=np.zeros(0, np.int64),
        train_subjects=[], test_subjects=[], num_identities=0,
        identity_x=None if identity_y is None else np.zeros((len(identity_y), 60, 60), np.uint8),
        identity_y=None if identity_y is None else np.asarray(identity_y, np.int64),
    )


def test_split_identities_holds_out_orl_subjects():
    # Fold subjects 0..2 (one sample withheld: -1), ORL identities 3..12, two faces each.
    orl = np.repeat(np.arange(3, 13), 2)
    x, y, x_held, s_held, source = split_identities(_fold([0, 1, 2, -1], orl), 0.4, seed=0)
    assert source == "orl"
    assert len(np.unique(s_held)) == 4 and set(s_held) <= set(range(3, 13))
    assert len(x_held) == 8
    # 3 fold subjects + 6 kept ORL subjects, relabelled 0..8.
    assert sorted(np.unique(y)) == list(range(9))
    assert len(x) == 3 + 12


def test_split_identities_without_orl_uses_training_subjects():
    ids = np.repeat(np.arange(10), 3)
    _, y, _, s_held, source = split_identities(_fold(ids), 0.4, seed=1)
    assert source == "training_subjects"
    assert len(np.unique(s_held)) == 4
    assert sorted(np.unique(y)) == list(range(6))
    # Too few subjects to hold out two per half: verification is skipped, nothing withheld.
    _, y, x_held, _, _ = split_identities(_fold(np.repeat(np.arange(5), 3)), 0.2, seed=1)
    assert len(x_held) == 0 and len(y) == 15


def test_verification_rate_is_perfect_for_separable_features():
    rng = np.random.default_rng(0)
    patterns = rng.integers(0, 256, size=(6, 60, 60))
    subjects = np.repeat(np.arange(6), 5)
    faces = np.clip(patterns[subjects] + rng.normal(0, 3, (30, 60, 60)), 0, 255).astype(np.uint8)
    image = keras.Input((48, 48, 1), name="image")
    flatten = keras.Model(image, keras.layers.Flatten()(image))
    # Mean-centring makes different subjects' random patterns nearly orthogonal.
    centred = keras.Model(image, keras.layers.Lambda(lambda t: t - 0.5)(flatten(image)))
    report = verification_rate(centred, faces, subjects, n_pairs=40, seed=0)
    assert report["verification_rate"] == 100.0
    assert report["threshold_accuracy"] == 100.0
    assert sorted(report["threshold_identities"] + report["test_identities"]) == list(range(6))


@pytest.mark.slow
def test_resnet18_std_emotion_backbone_starts_from_its_init_over_fixed_folds(tmp_path):
    """``emotion_backbone=resnet18_std`` with ``resnet_init`` (an expression model of that
    backbone, as tools/keras_from_savedmodel.py rebuilds the shipped FER+ one): with no
    pretraining epochs, the tandem model's ResNet-18 layers start with exactly the init's
    weights; two seeds with one ``fold_seed`` test the same subjects, another fold seed not."""
    from keras_fer.models.expression import build_expression_model

    init = build_expression_model("resnet18_std", 8, weights=None)
    init_path = tmp_path / "init.keras"
    init.save(init_path)
    exp = _tiny_synthetic(tmp_path)
    extra = {"identity": "deepid", "emotion_backbone": "resnet18_std",
             "resnet_init": str(init_path), "deepid_epochs": 1}
    seen = {}
    captured = {}

    class Capture(TFEMethod):
        def pretrain_resnet(self, config, data, fold_dir):
            resnet = super().pretrain_resnet(config, data, fold_dir)
            captured[config.seed] = resnet.get_layer("resnet18_std_s4b2_2_conv").get_weights()[0]
            return resnet

    for seed, fold_seed in ((0, 5), (1, 5), (2, -1)):
        config = TrainConfig(method="tfe", variant="tfe", model_dir=str(tmp_path / f"s{seed}"),
                             lr=0.01, pretrain_lr=0.01, seed=seed, fold_seed=fold_seed,
                             extra=extra, **{**TINY, "pretrain_epochs": 0})
        results = runner.train_and_evaluate(Capture(), config, experiment=exp)
        seen[seed] = results["folds"][0]["test_subjects"]
    np.testing.assert_array_equal(
        captured[0], init.get_layer("resnet18_std_s4b2_2_conv").get_weights()[0])
    assert seen[0] == seen[1]
    assert seen[2] != seen[0]
    model = keras.saving.load_model(tmp_path / "s0" / "fold_0" / "inference.keras")
    assert model.get_layer("tandem_concat").output.shape == (None, 160 + 512)
    assert model.output.shape == (None, 7)
