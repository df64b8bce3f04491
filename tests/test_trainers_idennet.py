"""``python -m trainers.idennet`` end to end on CPU: tiny DenseNet, 1 epoch per stage, 1 fold.

Every run is a subprocess, as a user types it. Coverage per run (each costs 20-60 s, so the
checks share runs): IF on synthetic with ``--heatmaps`` and ``--identity_fraction``, then a
resumed re-run; a flagfile run whose command-line flags override the file (variant I);
Original and F side by side (``--variants``, shared pretraining, ``--aggregate_only``) on
synthetic; F on CK+48 (real data, ``ckplus48_dir`` fixture).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--depth=16",
    '--extra={"layers_per_block": 1}',
    "--folds=5",
    "--fold=0",
    "--pretrain_epochs=1",
    "--epochs=1",
    "--batch_size=128",
]
SCHEMA = {"method", "variant", "dataset", "protocol", "classes", "folds", "mean_accuracy",
          "std_accuracy"}
FOLD_SCHEMA = {"fold", "accuracy", "train_subjects", "test_subjects", "confusion_matrix"}


def _train(*flags: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-m", "trainers.idennet", *flags], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _check_results(model_dir: Path, variant: str, dataset: str, num_classes: int) -> dict:
    results = json.loads((model_dir / "results.json").read_text())
    assert SCHEMA <= set(results)
    assert results["method"] == "idennet" and results["variant"] == variant
    assert results["dataset"] == dataset and results["protocol"] == "ck7"
    assert len(results["classes"]) == num_classes
    assert len(results["folds"]) == 1
    fold = results["folds"][0]
    assert FOLD_SCHEMA <= set(fold) and fold["fold"] == 0
    assert 0.0 <= fold["accuracy"] <= 100.0
    cm = np.array(fold["confusion_matrix"])
    assert cm.shape == (num_classes, num_classes)
    # Accuracy is in percent and agrees with the confusion matrix.
    np.testing.assert_allclose(fold["accuracy"], 100.0 * np.trace(cm) / cm.sum(), atol=1e-6)
    assert results["mean_accuracy"] == pytest.approx(fold["accuracy"])
    assert results["std_accuracy"] == pytest.approx(0.0)
    assert fold["test_subjects"] and fold["train_subjects"]
    assert not set(fold["test_subjects"]) & set(fold["train_subjects"])
    for name in ("confusion_matrix.png", "per_class_accuracy.png", "config.json"):
        assert (model_dir / name).stat().st_size > 0, name
    return results


@pytest.fixture(scope="module")
def if_run(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("idennet_if")
    proc = _train(*TINY, "--dataset=synthetic", f"--data_dir={model_dir}", "--variant=if",
                  "--heatmaps=1", "--identity_fraction=0.5", f"--model_dir={model_dir}")
    return model_dir, proc


@pytest.mark.slow
def test_if_results_schema_and_subject_disjoint_folds(if_run):
    model_dir, proc = if_run
    results = _check_results(model_dir, "if", "synthetic", 7)
    fold = results["folds"][0]
    # 40 synthetic subjects in 5 folds.
    assert len(fold["test_subjects"]) == 8 and len(fold["train_subjects"]) == 32
    assert "idennet/if synthetic ck7:" in proc.stdout


@pytest.mark.slow
def test_if_config_written_before_training(if_run):
    model_dir, _ = if_run
    config = json.loads((model_dir / "config.json").read_text())
    assert config["variant"] == "if" and config["identity_fraction"] == 0.5
    assert config["heatmaps"] == 1 and config["extra"] == {"layers_per_block": 1}
    fold_dir = model_dir / "fold_0"
    stages = ("pretrain_emotion", "pretrain_identity", "finetune")
    for stage in stages:
        assert (fold_dir / stage / "final.weights.h5").exists(), stage
        assert (fold_dir / stage / "history.csv").exists(), stage
    first_stage_file = min((fold_dir / s / "history.csv").stat().st_mtime for s in stages)
    assert (model_dir / "config.json").stat().st_mtime <= first_stage_file


@pytest.mark.slow
def test_if_heatmaps_png(if_run):
    model_dir, _ = if_run
    from PIL import Image

    with Image.open(model_dir / "fold_0" / "heatmaps.png") as im:
        assert im.format == "PNG" and im.size[1] > 300  # 7 class rows


@pytest.mark.slow
def test_identity_fraction_half_uses_identity_labels_of_some_subjects(if_run):
    model_dir, _ = if_run
    history = (model_dir / "fold_0" / "finetune" / "history.csv").read_text().splitlines()
    header, last = history[0].split(","), history[-1].split(",")
    # The identity head trained on the labelled half: a non-zero focal identity loss.
    assert float(last[header.index("id_loss")]) > 0.0


@pytest.mark.slow
def test_resume_skips_finished_fold(if_run):
    model_dir, _ = if_run
    before = json.loads((model_dir / "results.json").read_text())
    weights = model_dir / "fold_0" / "finetune" / "final.weights.h5"
    mtime = weights.stat().st_mtime
    proc = _train(*TINY, "--dataset=synthetic", f"--data_dir={model_dir}", "--variant=if",
                  "--identity_fraction=0.5", f"--model_dir={model_dir}")
    assert "fold 0 already done" in proc.stderr + proc.stdout
    assert "fold 1/5: train" not in proc.stdout  # no training started
    assert weights.stat().st_mtime == mtime
    after = json.loads((model_dir / "results.json").read_text())
    assert after["folds"] == before["folds"]


@pytest.mark.slow
def test_flagfile_with_command_line_override(tmp_path):
    model_dir = tmp_path / "run"
    flagfile = tmp_path / "test.flags"
    flagfile.write_text("\n".join([
        "# overridden below",
        "--dataset=synthetic",
        f"--data_dir={tmp_path}",
        "--variant=if",
        "--depth=40",
        "--epochs=30",
        "--seed=3",
        f"--model_dir={tmp_path / 'from_flagfile'}",
    ]) + "\n")
    _train(f"--flagfile={flagfile}", *TINY, "--variant=i", f"--model_dir={model_dir}")
    config = json.loads((model_dir / "config.json").read_text())
    assert config["variant"] == "i" and config["depth"] == 16 and config["epochs"] == 1
    assert config["seed"] == 3  # from the flagfile: not overridden
    assert not (tmp_path / "from_flagfile").exists()
    _check_results(model_dir, "i", "synthetic", 7)
    # Variant I: no identity stream, so no identity pretraining.
    assert not (model_dir / "fold_0" / "pretrain_identity").exists()


@pytest.mark.slow
def test_variants_side_by_side_share_pretraining_and_aggregate(tmp_path):
    _train(*TINY, "--dataset=synthetic", f"--data_dir={tmp_path}", "--variants=original,f",
           f"--model_dir={tmp_path}")
    original = _check_results(tmp_path / "original", "original", "synthetic", 7)
    f = _check_results(tmp_path / "f", "f", "synthetic", 7)
    history = (tmp_path / "original" / "fold_0" / "finetune" / "history.csv").read_text()
    header, last = history.splitlines()[0].split(","), history.splitlines()[-1].split(",")
    assert float(last[header.index("id_loss")]) == 0.0  # no identity head
    # F fine-tuned from Original's pretrained emotion stream (copied, not retrained).
    stage = "fold_0/pretrain_emotion/final.weights.h5"
    assert (tmp_path / "f" / stage).read_bytes() == (tmp_path / "original" / stage).read_bytes()
    assert (tmp_path / "f" / "fold_0" / "pretrain_identity" / "final.weights.h5").exists()
    side = json.loads((tmp_path / "variants.json").read_text())
    assert side["original"]["mean_accuracy"] == pytest.approx(original["mean_accuracy"])
    assert side["f"]["folds"] == {"0": pytest.approx(f["folds"][0]["accuracy"])}
    # Aggregating over all 5 folds, with only fold 0 finished, trains nothing and says so.
    (tmp_path / "f" / "results.json").unlink()
    _train(*TINY, "--dataset=synthetic", f"--data_dir={tmp_path}", "--variants=original,f",
           "--fold=-1", "--aggregate_only", f"--model_dir={tmp_path}")
    partial = json.loads((tmp_path / "f" / "results.json").read_text())
    assert partial["folds_expected"] == 5 and [x["fold"] for x in partial["folds"]] == [0]
    assert partial["mean_accuracy"] == pytest.approx(f["mean_accuracy"])
    assert not (tmp_path / "f" / "fold_1").exists()


@pytest.mark.slow
def test_f_on_ckplus48(ckplus48_dir, tmp_path):
    _train(*TINY, "--dataset=ckplus48", f"--data_dir={ckplus48_dir.parents[1]}",
           "--variant=f", "--nouse_orl", f"--model_dir={tmp_path}")
    results = _check_results(tmp_path, "f", "ckplus48", 7)
    fold = results["folds"][0]
    assert all(s.startswith("S") for s in fold["test_subjects"])
    assert (tmp_path / "fold_0" / "pretrain_identity" / "final.weights.h5").exists()


@pytest.mark.slow
def test_data_parallel_on_two_devices_jax(tmp_path):
    # Two CPU devices stand in for two GPUs; the global batch of 128 splits 64 + 64.
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    proc = subprocess.run(
        [sys.executable, "-m", "trainers.idennet", *TINY, "--dataset=synthetic",
         f"--data_dir={tmp_path}", "--variant=original", "--distribution=data_parallel",
         f"--model_dir={tmp_path}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "data_parallel: 2 replicas, global batch 128" in proc.stdout
    _check_results(tmp_path, "original", "synthetic", 7)
    assert json.loads((tmp_path / "config.json").read_text())["distribution"] == "data_parallel"


def test_distribution_is_refused_for_methods_without_it(tmp_path):
    from keras_fer.training import runner
    from keras_fer.training.config import TrainConfig

    class OneDevice:
        name = "gan"

        def fit_fold(self, data, config, fold_dir):
            raise AssertionError("must not train")

    config = TrainConfig(method="gan", distribution="mirrored", model_dir=str(tmp_path))
    with pytest.raises(ValueError, match="--distribution=mirrored is supported by IDEnNet"):
        runner.train_and_evaluate(OneDevice(), config)


@pytest.mark.slow
def test_f_from_a_stream_distilled_once_skips_the_per_fold_distillation(tmp_path):
    """``identity_init`` (a stream distilled once by tools/distill_identity.py) with
    ``distill_epochs=0``: the identity stream starts from the file and no fold distils."""
    from keras_fer.models import idennet

    mcfg = idennet.IDEnNetConfig(variant="f", depth=16, num_classes=7, num_identities=2,
                                 layers_per_block=1)
    stream = idennet.build_identity_pretrain_model(mcfg, 2)
    init = tmp_path / "identity_densenet_distilled.keras"
    stream.save(init)
    extra = json.dumps({"layers_per_block": 1, "identity": "face_resnet", "distill_epochs": 0,
                        "identity_init": str(init)})
    model_dir = tmp_path / "run"
    proc = _train(*[f for f in TINY if not f.startswith("--extra")], f"--extra={extra}",
                  "--dataset=synthetic", f"--data_dir={tmp_path}", "--variant=f",
                  f"--model_dir={model_dir}")
    assert f"identity stream initialised from {init}" in proc.stdout
    fold = model_dir / "fold_0"
    assert (fold / "pretrain_identity" / "final.weights.h5").exists()
    assert not (fold / "distill_identity").exists() and not (fold / "distill.json").exists()
    assert not (model_dir / "teacher").exists()
    _check_results(model_dir, "f", "synthetic", 7)


@pytest.mark.slow
def test_original_and_f_on_the_ferplus_resnet18_emotion_stream(tmp_path):
    """``emotion_backbone=resnet18_std`` with ``emotion_init`` a FER+ ResNet-18 ``.keras``
    (8 classes; the shipped one is rebuilt by tools/keras_from_savedmodel.py): the trunk is
    copied by name, both variants train and export their probabilities."""
    from resnet18_source import TRUNK_LAYERS, make_source

    init = tmp_path / "ferplus_resnet18_std.keras"
    make_source(init)
    extra = json.dumps({"layers_per_block": 1, "identity": "densenet",
                        "emotion_backbone": "resnet18_std", "emotion_init": str(init)})
    model_dir = tmp_path / "run"
    proc = _train(*[f for f in TINY if not f.startswith("--extra")], f"--extra={extra}",
                  "--dataset=synthetic", f"--data_dir={tmp_path}", "--variants=original,f",
                  f"--model_dir={model_dir}", timeout=600)
    assert f"emotion stream initialised from {init}: copied {TRUNK_LAYERS} layers" in proc.stdout
    assert "1 source layers unused ['logits']" in proc.stdout
    for variant in ("original", "f"):
        _check_results(model_dir / variant, variant, "synthetic", 7)
