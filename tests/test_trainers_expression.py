"""trainers.expression: tiny runs on both backends, checking what the trainer writes (the
results schema with the recipe's fields, the epoch chosen on validation per history.csv),
distillation, init from another run, and the flagfiles."""

import csv
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from absl import app

from keras_fer.training.config import TrainConfig
from keras_fer.data.experiments import Experiment, load_experiment
from trainers import expression as trainer
from flag_helpers import parsed_flags
from script_loader import load_script

REPO = Path(__file__).resolve().parents[1]
gpu_run = load_script("tools/gpu_run.py")
FLAGFILES = REPO / "trainers" / "flagfiles"
RECIPE_KEYS = {"valid_accuracy", "valid_accuracy_tta_flip", "valid_accuracy_tta_flip_crops",
               "test_accuracy_tta_flip", "test_accuracy_tta_flip_crops", "best_epochs"}
SCHEMA_KEYS = {"method", "variant", "dataset", "protocol", "classes", "folds", "mean_accuracy",
               "std_accuracy", "folds_expected"}


def _history(model_dir: Path, fold: int = 0):
    with open(model_dir / f"fold_{fold}" / "train" / "history.csv") as f:
        return list(csv.DictReader(f))


def check_run(model_dir: Path, variant: str, epochs: int, n_classes: int = 7,
              valid_tolerance: float = 1e-6) -> dict:
    """results.json has the schema and recipe fields; the chosen epoch is the best on Valid.

    ``valid_tolerance``: a bfloat16 run selects with bfloat16 predictions and reports those
    of the float32 model it returns, which may differ on a face.
    """
    results = json.loads((model_dir / "results.json").read_text())
    assert SCHEMA_KEYS | RECIPE_KEYS <= set(results)
    assert (results["method"], results["variant"]) == ("expression", variant)
    fold = results["folds"][0]
    assert fold["selected_on"] == "valid"
    rows = _history(model_dir)
    assert len(rows) == epochs
    valid = [float(r["val_accuracy"]) for r in rows]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    # The epoch kept has the best validation accuracy and, of the epochs tied there, the
    # lowest validation loss (the first of equal losses).
    loss = [float(r["val_loss"]) for r in rows]
    tied = [i for i, v in enumerate(valid) if v == max(valid)]
    expected = min(tied, key=lambda i: (loss[i], i)) + 1
    assert fold["best_epoch"] == expected == results["best_epochs"][0]
    assert fold["valid_accuracy"] == pytest.approx(max(valid), abs=valid_tolerance)
    for key in RECIPE_KEYS - {"best_epochs"}:
        assert 0.0 <= results[key] <= 100.0
    model = keras.saving.load_model(model_dir / "fold_0" / "inference.keras")
    assert model.input_shape == (None, 48, 48, 1) and model.output_shape == (None, n_classes)
    assert all(w.dtype == "float32" for w in model.weights)
    return results


def _tiny(tmp_path, n_subjects: int = 12) -> Experiment:
    exp = load_experiment("synthetic", tmp_path, "ck7")
    keep = np.isin(exp.subjects, np.unique(exp.subjects)[:n_subjects])
    return dataclasses.replace(exp, faces=exp.faces[keep], labels=exp.labels[keep],
                               subjects=exp.subjects[keep])


def _config(tmp_path, name, **kw) -> TrainConfig:
    values = dict(method="expression", variant="resnet12", model_dir=str(tmp_path / name),
                  folds=4, fold=0, epochs=3, batch_size=32, lr=0.05, val_fraction=0.25,
                  extra={"warmup_epochs": 1})
    values.update(kw)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def tf_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("expression")
    config = _config(tmp_path, "resnet12")
    trainer.run(config, experiment=_tiny(tmp_path))
    return Path(config.model_dir), tmp_path


@pytest.mark.slow
def test_tf_run_writes_recipe_results_and_selects_on_valid(tf_run):
    model_dir, _ = tf_run
    check_run(model_dir, "resnet12", epochs=3)
    best = json.loads((model_dir / "fold_0" / "train" / "best.json").read_text())
    assert best["epoch"] == json.loads((model_dir / "results.json").read_text())["best_epochs"][0]
    timing = json.loads((model_dir / "fold_0" / "train" / "timing.json").read_text())
    assert timing["backend"] == "tensorflow" and timing["epochs"] == 3


@pytest.mark.slow
def test_tf_distillation_into_edge_and_init_by_name(tf_run):
    model_dir, tmp_path = tf_run
    teacher = str(model_dir / "fold_0" / "inference.keras")
    config = _config(tmp_path, "edge", variant="edge", epochs=1,
                     extra={"teacher": teacher, "warmup_epochs": 0, "ema": False})
    trainer.run(config, experiment=_tiny(tmp_path, 8))
    check_run(Path(config.model_dir), "edge", epochs=1)

    # init from the teacher run: every layer but the head (always left as built) is copied.
    from keras_fer.models.expression import build_expression_model
    from keras_fer.models.transfer import init_from

    student = build_expression_model("resnet12", 8)
    report = init_from(student, teacher, "test")
    assert report.skipped == ["logits"] and not report.shape_mismatch
    assert not report.not_in_source[1:]


@pytest.mark.slow
def test_tf_run_resumes_finished_training(tf_run):
    model_dir, tmp_path = tf_run
    from keras_fer.training.expression import ExpressionMethod
    from keras_fer.training import runner

    (model_dir / "fold_0" / "result.json").rename(model_dir / "fold_0" / "result.old")
    try:
        before = json.loads((model_dir / "fold_0" / "result.old").read_text())
        rerun = runner.train_and_evaluate(ExpressionMethod(), _config(tmp_path, "resnet12"),
                                          experiment=_tiny(tmp_path))
        # Training was complete: the same chosen weights are evaluated again, nothing trains.
        assert len(_history(model_dir)) == 3
        assert rerun["folds"][0]["accuracy"] == pytest.approx(before["accuracy"])
    finally:
        (model_dir / "fold_0" / "result.old").replace(model_dir / "fold_0" / "result.json")


@pytest.mark.slow
def test_jax_cli_with_teacher_and_mixed_precision(tf_run, tmp_path):
    teacher_dir, _ = tf_run
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    model_dir = tmp_path / "jax"
    args = [sys.executable, "-m", "trainers.expression", "--dataset=synthetic", "--folds=5",
            "--fold=0", "--epochs=2", "--batch_size=64", "--variant=resnet12",
            f"--data_dir={tmp_path}", f"--model_dir={model_dir}",
            f"--teacher={teacher_dir / 'fold_0' / 'inference.keras'}",
            '--extra={"mixed_precision": true, "mixup_alpha": 0.2, "optimizer": "adamw"}']
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "val_accuracy" in proc.stdout
    # One of the 63 validation faces may change class between bfloat16 and float32.
    results = check_run(model_dir, "resnet12", epochs=2, valid_tolerance=1.6)
    config = json.loads((model_dir / "config.json").read_text())
    assert config["lr"] == pytest.approx(1e-3) and config["extra"]["teacher"].endswith(".keras")
    assert json.loads((model_dir / "fold_0" / "train" / "timing.json").read_text())[
        "backend"] == "jax"
    assert results["folds_expected"] == 5


def test_unknown_extra_key_is_a_one_line_usage_error():
    with parsed_flags("expression", "--model_dir=/tmp/x", '--extra={"mixupp": 1}'):
        with pytest.raises(app.UsageError, match="valid keys: input_size, pretrained"):
            trainer.config_from_flags()
    with parsed_flags("expression", "--model_dir=/tmp/x", "--variant=resnet50"):
        with pytest.raises(app.UsageError, match="--variant must be one of"):
            trainer.config_from_flags()


@pytest.mark.parametrize("name,variant,lr", [
    ("expression_ferplus_face_resnet", "face_resnet", 2e-4),
    ("expression_ferplus_resnet18", "resnet18_std", 0.1),
    ("expression_ferplus_edge_distill", "edge", 0.1),
    ("expression_ckplus7_face_resnet", "face_resnet", 2e-4),
])
def test_flagfiles_parse(name, variant, lr):
    with parsed_flags("expression", f"--flagfile={FLAGFILES / (name + '.flags')}",
                      "--face_weights=w.h5"):
        config = trainer.config_from_flags()
    assert config.variant == variant and config.lr == pytest.approx(lr)
    assert config.extra["face_weights"] == "w.h5" and config.extra["mixed_precision"] is True
    if "distill" in name:
        assert config.extra["teacher"].endswith("face_resnet/fold_0/inference.keras")
    if "ckplus7" in name:
        assert config.extra["init"].endswith("face_resnet/fold_0/inference.keras")
        assert (config.dataset, config.protocol, config.val_fraction) == ("ckplus48", "ck7", 0.1)


def _job_list(name: str) -> list:
    """``tools/jobs/<name>``'s jobs as gpu_run reads them, each split into words."""
    return [line.split() for line in gpu_run.read_jobs(REPO / "tools" / "jobs" / name)]


@pytest.mark.parametrize("run, val_fraction", [("expression_ckplus7_r18_shipped", 0.1),
                                                ("expression_ckplus7_r18_shipped_all", 0.0)])
def test_ckplus7_from_the_shipped_resnet18_runs_on_the_methods_folds(run, val_fraction):
    """Comparable with the *_ckplus7_r18_face runs: their 10 folds (--fold_seed=0), seeds 0-2;
    the _all run differs from the other only in using every training subject."""
    with parsed_flags("expression", f"--flagfile={FLAGFILES / (run + '.flags')}"):
        config = trainer.config_from_flags()
    assert config.val_fraction == val_fraction and config.epochs == 40
    with parsed_flags("tfe", f"--flagfile={FLAGFILES / 'tfe_ckplus7_r18_face.flags'}"):
        from trainers import tfe
        methods = tfe.config_from_flags()
    assert (config.dataset, config.protocol, config.folds, config.fold_seed) == (
        methods.dataset, methods.protocol, methods.folds, methods.fold_seed)
    assert config.extra["init"] == methods.extra["resnet_init"]
    jobs = _job_list(f"{run}_seeds.txt")
    assert all(j[1] == f"--flagfile=trainers/flagfiles/{run}.flags" for j in jobs)
    assert sorted((j[3], j[4]) for j in jobs) == sorted(
        (f"--fold={k}", f"--seed={s}") for k in range(10) for s in range(3))
    assert all(j[-1] == f"--model_dir=runs/{run}/resnet18_std_s{j[4][-1]}" for j in jobs)


def test_ferplus_resnet18_seeds_list_differs_only_in_the_seed():
    """The seed-ensemble list: the shipped 100-epoch recipe at seeds 0-2, one run folder each
    under one run (so the import keeps them apart and ensemble_folds can combine them)."""
    jobs = _job_list("expression_ferplus_resnet18_seeds.txt")
    configs = []
    for job in jobs:
        assert job[0] == "trainers.expression"
        with parsed_flags("expression", *job[1:]):
            configs.append(trainer.config_from_flags())
    assert [c.seed for c in configs] == [0, 1, 2]
    assert [c.model_dir for c in configs] == [
        f"runs/expression_ferplus_resnet18_e100_seeds/resnet18_std_s{s}" for s in range(3)]
    strip = [dataclasses.replace(c, seed=0, model_dir="") for c in configs]
    assert strip[0] == strip[1] == strip[2]
    assert (configs[0].dataset, configs[0].variant, configs[0].epochs) == (
        "ferplus", "resnet18_std", 100)


@pytest.mark.slow
def test_ferplus_with_limit(ferplus_dir, tmp_path):
    config = _config(tmp_path, "ferplus", dataset="ferplus", protocol="ferplus8", epochs=1,
                     batch_size=64, limit=200, data_dir=str(ferplus_dir.parents[1]),
                     extra={"warmup_epochs": 0})
    trainer.run(config)
    results = check_run(Path(config.model_dir), "resnet12", epochs=1, n_classes=8)
    # --limit keeps 200 label rows per split; rows whose majority is unknown/NF are dropped.
    assert 150 <= results["folds"][0]["num_test"] <= 200
