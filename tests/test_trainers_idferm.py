"""IDFERM trainer: neutral pairs, RML batches, HNG + RML and baseline runs, resume, export.

Runs use tiny networks (``--extra`` sizes), one fold and one epoch per stage.
"""

import dataclasses
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_fer.data import experiments, packs
from keras_fer.training import runner
from keras_fer.training import idferm as idferm_training
from keras_fer.training import idferm_identity
from keras_fer.training.config import TrainConfig
from keras_fer.training.idferm import IDFERMMethod, NeutralPairs, QueryBatches, neutral_targets
from trainers import idferm as trainer
from flag_helpers import parsed_flags

FLAGFILES = Path(__file__).resolve().parents[1] / "trainers" / "flagfiles"

TINY = {
    # DeepID as the identity network: these tests hold its stages (the face network's are
    # tests/test_identity_switch.py's).
    "identity": "deepid",
    "hng_epochs": 1,
    "hng_batch_size": 32,
    "verification_pairs": 200,
    "hng": {"latent_dim": 8, "encoder_filters": [4, 8], "decoder_filters": [8, 4],
            "discriminator_filters": [4]},
    "rml": {"stem_filters": 4, "group_filters": [4], "fc_units": 8, "connect_units": 8,
            "embedding_dim": 4, "metric_units": 4},
}
RESULT_KEYS = {"method", "variant", "dataset", "protocol", "classes", "folds", "mean_accuracy",
               "std_accuracy"}
FOLD_KEYS = {"fold", "accuracy", "train_subjects", "test_subjects", "confusion_matrix"}


def _few_subjects(exp: experiments.Experiment, n: int) -> experiments.Experiment:
    keep = sorted(set(exp.subjects.tolist()))[:n]
    rows = np.isin(exp.subjects, keep)
    neutral = np.isin(exp.neutral_subjects, keep)
    return experiments.Experiment(
        name=exp.name, protocol=exp.protocol, class_names=exp.class_names,
        faces=exp.faces[rows], labels=exp.labels[rows], subjects=exp.subjects[rows],
        neutral_faces=exp.neutral_faces[neutral], neutral_subjects=exp.neutral_subjects[neutral])


@pytest.fixture(scope="module")
def synthetic_ck8(tmp_path_factory):
    exp = experiments.load_experiment("synthetic", tmp_path_factory.mktemp("data"), "ck8")
    return _few_subjects(exp, 8)


def _config(model_dir, variant="rml", extra=TINY, **kw):
    return TrainConfig(method="idferm", variant=variant, dataset="synthetic", protocol="ck8",
                       model_dir=str(model_dir), folds=4, fold=0, epochs=1, pretrain_epochs=1,
                       batch_size=32, lr=0.01, pretrain_lr=0.01, extra=extra, **kw)


def _check_results(results, variant, dataset):
    assert set(results) >= RESULT_KEYS
    assert results["method"] == "idferm" and results["variant"] == variant
    assert results["dataset"] == dataset and results["accuracy_unit"] == "percent"
    (fold,) = results["folds"]
    assert set(fold) >= FOLD_KEYS
    assert not set(fold["train_subjects"]) & set(fold["test_subjects"])
    k = len(results["classes"])
    assert np.array(fold["confusion_matrix"]).shape == (k, k)
    assert 0.0 <= fold["accuracy"] <= 100.0
    return fold


# ------------------------------------------------------------------------------ data pieces


def test_folds_carry_subjects_and_only_training_neutrals(tmp_path, synthetic_ck8):
    # ck7 synthetic has no neutral class: neutral frames come from the same generator.
    exp = experiments.load_experiment("synthetic", tmp_path, "ck7")
    assert "neutral" not in exp.class_names
    assert set(exp.neutral_subjects.tolist()) == set(exp.subjects.tolist())
    path = packs.save_pack(exp, tmp_path / "packs")
    back = packs.load_pack(path)
    np.testing.assert_array_equal(back.neutral_faces, exp.neutral_faces)
    np.testing.assert_array_equal(back.neutral_subjects, exp.neutral_subjects)

    idx = experiments.fold_indices(synthetic_ck8, 4, 0, 0.1)[0]
    fold = experiments.make_fold(synthetic_ck8, 0, idx)
    assert len(fold.subj_train) == len(fold.x_train) and len(fold.subj_test) == len(fold.x_test)
    assert set(fold.subj_test.tolist()) == set(fold.test_subjects)
    assert set(fold.neutral_subjects.tolist()) == set(fold.train_subjects)
    assert not set(fold.neutral_subjects.tolist()) & set(fold.test_subjects)


def test_neutral_pairs_match_subjects_and_flip_both_faces():
    faces = np.arange(4 * 2 * 3, dtype=np.uint8).reshape(4, 2, 3)
    subjects = np.array(["a", "b", "a", "c"])  # "c" has no neutral frame: left out
    neutrals = 100 + np.arange(3 * 2 * 3, dtype=np.uint8).reshape(3, 2, 3)
    neutral_subjects = np.array(["b", "a", "a"])
    assert [t.tolist() for t in neutral_targets(subjects, neutral_subjects)] == [
        [1, 2], [0], [1, 2], []]
    pairs = NeutralPairs(faces, subjects, neutrals, neutral_subjects, batch_size=8, seed=0)
    assert len(pairs) == 1
    seen = set()
    for _ in range(20):
        x, y = pairs[0]
        assert x.shape == y.shape == (3, 2, 3, 1)
        for xi, yi in zip(np.round(x[..., 0] * 255), np.round(y[..., 0] * 255)):
            flipped = xi[0, 0] > xi[0, 2]
            src = xi[:, ::-1] if flipped else xi
            row = int(np.flatnonzero((faces == src).all(axis=(1, 2)))[0])
            ref = yi[:, ::-1] if flipped else yi
            target = int(np.flatnonzero((neutrals == ref).all(axis=(1, 2)))[0])
            assert neutral_subjects[target] == subjects[row]
            seen.add((row, target, bool(flipped)))
        pairs.on_epoch_end()
    # Both neutral frames of subject "a" get drawn, with and without the flip.
    assert {(0, 1), (0, 2)} <= {(r, t) for r, t, _ in seen}
    assert {True, False} == {f for _, _, f in seen}


def test_query_batches_two_per_class_and_shared_augmentation():
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (9, 60, 60), dtype=np.uint8)
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    batches = QueryBatches(faces, labels, references=faces, per_class=2, seed=1)
    assert len(batches) == 2  # the largest class has 4 faces
    x, y = batches[0]
    assert sorted(y.tolist()) == [0, 0, 1, 1, 2, 2]
    assert x["image"].shape == x["reference"].shape == (6, 48, 48, 1)
    # The reference equals the query here, so any augmentation difference would show.
    np.testing.assert_array_equal(x["image"], x["reference"])
    # The epoch is augmented in one go and sliced per batch: the same batch twice is the same.
    x1, y1 = batches[1]
    assert sorted(y1.tolist()) == [0, 0, 1, 1, 2, 2]
    np.testing.assert_array_equal(x1["image"], batches[1][0]["image"])
    np.testing.assert_array_equal(x1["image"], x1["reference"])
    batches.on_epoch_end()  # a new epoch draws new batches and new augmentation
    assert not np.array_equal(batches[0][0]["image"], x["image"])
    plain, _ = QueryBatches(faces, labels, per_class=2, seed=1)[0]
    assert plain.shape == (6, 48, 48, 1)


# ------------------------------------------------------------------------------ trainer runs


@pytest.fixture(scope="module")
def rml_run(tmp_path_factory, synthetic_ck8):
    model_dir = tmp_path_factory.mktemp("idferm_rml")
    config = _config(model_dir, export=("savedmodel",))
    results = runner.train_and_evaluate(IDFERMMethod(), config, experiment=synthetic_ck8)
    return config, results


@pytest.mark.slow
def test_rml_trainer_on_synthetic_writes_results_hng_report_and_grid(rml_run):
    config, results = rml_run
    fold = _check_results(results, "rml", "synthetic")
    fold_dir = Path(config.model_dir) / "fold_0"
    for stage in ("pretrain_expression", "pretrain_identity", "hng", "pretrain_rml",
                  "finetune"):
        assert (fold_dir / stage / "final.weights.h5").exists(), stage
    assert (fold_dir / "hng" / "grids" / "epoch_001.png").stat().st_size > 0
    hng = json.loads((fold_dir / "hng.json").read_text())
    assert 0.0 <= hng["identity_preserved_percent"] <= 100.0
    assert hng["test_subjects"] == fold["test_subjects"]
    assert hng["num_test_faces"] == sum(map(sum, fold["confusion_matrix"]))


@pytest.mark.slow
def test_rml_inference_model_exports_as_savedmodel(rml_run):
    config, _ = rml_run
    export = Path(config.model_dir) / "export" / "savedmodel"
    assert (export / "saved_model.pb").exists()


@pytest.mark.slow
def test_finished_fold_is_not_retrained(rml_run, synthetic_ck8):
    config, first = rml_run

    class MustNotTrain(IDFERMMethod):
        def fit_fold(self, data, config, fold_dir):
            raise AssertionError("a finished fold was trained again")

    again = runner.train_and_evaluate(MustNotTrain(), _config(config.model_dir),
                                      experiment=synthetic_ck8)
    assert again["folds"] == first["folds"]


@pytest.mark.slow
def test_baseline_trains_softmax_only_on_the_same_folds(tmp_path, synthetic_ck8, rml_run):
    _, rml = rml_run
    results = runner.train_and_evaluate(IDFERMMethod(), _config(tmp_path, "baseline"),
                                        experiment=synthetic_ck8)
    fold = _check_results(results, "baseline", "synthetic")
    assert fold["test_subjects"] == rml["folds"][0]["test_subjects"]
    assert sorted(p.name for p in (tmp_path / "fold_0").iterdir() if p.is_dir()) == [
        "finetune", "pretrain_rml"]


def test_unknown_variant_is_a_clear_error(tmp_path, synthetic_ck8):
    with pytest.raises(ValueError, match="Unknown IDFERM variant 'if'"):
        runner.train_and_evaluate(IDFERMMethod(), _config(tmp_path, "if"),
                                  experiment=synthetic_ck8)


@pytest.mark.parametrize(
    "name, dataset, protocol",
    [("idferm_ckplus7", "ckplus48", "ck7"), ("idferm_ckplus8", "ckplus_neutral", "ck8"),
     ("idferm_quickstart", "synthetic", "ck7")],
)
def test_flagfiles_give_the_protocols(tmp_path, name, dataset, protocol):
    with parsed_flags("idferm", f"--flagfile={FLAGFILES / name}.flags", f"--model_dir={tmp_path}"):
        config = trainer.config_from_flags()
    assert (config.method, config.variant) == ("idferm", "rml")
    assert (config.dataset, config.protocol) == (dataset, protocol)
    if dataset != "synthetic":
        assert (config.folds, config.extra) == (10, {"hng_epochs": 100, "identity_epochs": 100})


@pytest.mark.parametrize(
    "name, dataset, protocol, n_classes",
    [("idferm_ckplus7", "ckplus48", "ck7", 7), ("idferm_ckplus8", "ckplus_neutral", "ck8", 8)],
)
@pytest.mark.slow
def test_ckplus_flagfile_runs_from_the_trainer(request, tmp_path, capsys, ckplus_neutral_dir,
                                               name, dataset, protocol, n_classes):
    data_root = request.getfixturevalue(f"{dataset}_dir").parents[1]
    with parsed_flags("idferm", f"--flagfile={FLAGFILES / name}.flags", f"--data_dir={data_root}",
                       f"--model_dir={tmp_path}", "--fold=0", "--epochs=1",
                       "--pretrain_epochs=1", "--batch_size=64", "--use_orl=false",
                       f"--extra={json.dumps(TINY)}"):
        config = trainer.config_from_flags()
    exp = experiments.load_experiment(dataset, data_root, protocol, use_orl=False)
    # CK+48's neutral frames come from ckplus_neutral (same subjects and sequences).
    assert len(exp.neutral_faces) and set(exp.neutral_subjects) <= set(exp.subjects)
    # The flagfile's protocol (10 folds) on 12 subjects, so that it stays a tiny run.
    results = trainer.run(config, experiment=_few_subjects(exp, 12))
    out = capsys.readouterr().out
    assert "(expressive, neutral) training pairs" in out
    assert "identity preserved in" in out
    assert results == json.loads((tmp_path / "results.json").read_text())
    fold = _check_results(results, "rml", dataset)
    assert results["protocol"] == protocol and len(results["classes"]) == n_classes
    assert ("neutral" in results["classes"]) == (protocol == "ck8")
    assert 0.0 <= fold["identity_preserved_percent"] <= 100.0
    assert results["mean_identity_preserved_percent"] == fold["identity_preserved_percent"]
    assert (tmp_path / "fold_0" / "hng" / "grids" / "epoch_001.png").stat().st_size > 0


def test_idferm_inputs_are_scaled_exactly_as_served():
    from keras_fer.data import preprocess
    from keras_fer.training.idferm_batches import to_unit as _unit

    faces = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    served = preprocess.to_model_input(np.resize(faces, (1, 60, 60)))
    ours = _unit(np.resize(faces, (1, 60, 60)))[:, 6:54, 6:54]
    np.testing.assert_array_equal(ours, served)


def test_rml_pretraining_uses_adam_unless_sgd_is_asked_for(tmp_path):
    """The RML network sat at the majority class under SGD on CK+ (see the docstring)."""
    config = TrainConfig(method="idferm", model_dir=str(tmp_path), pretrain_epochs=4,
                         pretrain_lr=0.1)
    adam = idferm_training.rml_pretrain_optimizer(config, steps=5)
    assert isinstance(adam, keras.optimizers.Adam)
    # Cosine decay over every pretraining step: 1e-3 at the start, 0 after 4 epochs x 5.
    schedule = adam._learning_rate
    assert float(schedule(0)) == pytest.approx(1e-3)
    assert float(schedule(20)) == pytest.approx(0.0, abs=1e-9)
    assert float(schedule(10)) == pytest.approx(0.5e-3)
    sgd_config = dataclasses.replace(config, extra={"rml_pretrain_optimizer": "sgd"})
    sgd = idferm_training.rml_pretrain_optimizer(sgd_config, steps=5)
    assert isinstance(sgd, keras.optimizers.SGD)
    assert float(sgd._learning_rate(0)) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="'adam' or 'sgd'; got 'rmsprop'"):
        idferm_training.rml_pretrain_optimizer(
            dataclasses.replace(config, extra={"rml_pretrain_optimizer": "rmsprop"}), steps=5)


@pytest.mark.slow
def test_aggregate_only_keeps_the_hng_identity_rates(rml_run, tmp_path):
    """Per-fold GPU jobs are gathered with --aggregate_only: the HNG rates must survive it."""
    config, _ = rml_run
    model_dir = tmp_path / "gathered"
    shutil.copytree(Path(config.model_dir) / "fold_0", model_dir / "fold_0")
    (model_dir / "config.json").write_text((Path(config.model_dir) / "config.json").read_text())
    with parsed_flags("idferm", "--dataset=synthetic", "--protocol=ck8", "--folds=4",
                      f"--model_dir={model_dir}", "--fold=-1", "--aggregate_only"):
        trainer.main([])
    results = json.loads((model_dir / "results.json").read_text())
    rate = json.loads((model_dir / "fold_0" / "hng.json").read_text())["identity_preserved_percent"]
    assert results["folds"][0]["identity_preserved_percent"] == rate
    assert results["mean_identity_preserved_percent"] == rate


def test_r18_flagfile_puts_the_ferplus_resnet18_under_both_variants(tmp_path):
    with parsed_flags("idferm", f"--flagfile={FLAGFILES / 'idferm_ckplus7_r18_face'}.flags",
                      f"--model_dir={tmp_path}"):
        config = trainer.config_from_flags()
    assert (config.dataset, config.protocol, config.variant) == ("ckplus48", "ck7", "rml")
    assert (config.folds, config.fold_seed, config.val_fraction) == (10, 0, 0.0)
    assert config.extra["rml"] == {"trunk": "resnet18_std"}
    assert config.extra["rml_init"] == ".devdata/ferplus_resnet18_std.keras"
    assert config.extra["identity"] == "face_resnet"


HNG_ONLY = {"hng", "hng_weights", "hng_epochs", "hng_init"}  # settings the baseline never reads


def test_residual_r18_flagfile_changes_only_the_hng(tmp_path):
    """Its run is paired with idferm_ckplus7_r18_face's baseline (gather_results.BASELINE_RUN):
    legitimate only while the two flagfiles agree on everything the baseline trains with."""
    configs = {}
    for name in ("idferm_ckplus7_r18_face", "idferm_ckplus7_r18_face_residual"):
        with parsed_flags("idferm", f"--flagfile={FLAGFILES / name}.flags",
                          f"--model_dir={tmp_path}"):
            configs[name] = trainer.config_from_flags()
    ours, theirs = configs["idferm_ckplus7_r18_face_residual"], configs["idferm_ckplus7_r18_face"]
    assert ours.extra["hng"] == {"residual": True} and "hng_init" not in ours.extra
    assert ours.extra["hng_weights"] == {"identity_weight": 1.0, "pixel_weight": 1.0}
    strip = lambda c: dataclasses.replace(  # noqa: E731
        c, extra={k: v for k, v in c.extra.items() if k not in HNG_ONLY})
    assert strip(ours) == strip(theirs)
    from script_loader import load_script

    gather = load_script("tools/gather_results.py")
    assert gather.BASELINE_RUN["idferm_ckplus7_r18_face_residual"] == "idferm_ckplus7_r18_face"


def test_ckplus8_r18_flagfile_is_the_residual_ckplus7_one_on_ck8(tmp_path):
    """CK+ 8 runs the HNG that met the identity goal on CK+ 7; only the data differs."""
    configs = {}
    for name in ("idferm_ckplus7_r18_face_residual", "idferm_ckplus8_r18_face"):
        with parsed_flags("idferm", f"--flagfile={FLAGFILES / name}.flags",
                          f"--model_dir={tmp_path}"):
            configs[name] = trainer.config_from_flags()
    ck8 = configs["idferm_ckplus8_r18_face"]
    assert (ck8.dataset, ck8.protocol) == ("ckplus_neutral", "ck8")
    assert ck8 == dataclasses.replace(configs["idferm_ckplus7_r18_face_residual"],
                                      dataset="ckplus_neutral", protocol="ck8")


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["rml", "baseline"])
def test_resnet18_trunk_starts_from_the_ferplus_resnet18(tmp_path, synthetic_ck8, variant):
    """``rml trunk=resnet18_std`` with ``rml_init`` = a ResNet-18 expression model: both
    variants' networks start with its trunk, the HNG stages of ``rml`` are unchanged."""
    from resnet18_source import make_source, trunk_weights

    source = make_source(tmp_path / "ferplus_resnet18_std.keras")
    extra = {**TINY, "rml": {**TINY["rml"], "trunk": "resnet18_std"},
             "rml_init": str(tmp_path / "ferplus_resnet18_std.keras")}
    started = {}

    class Capture(IDFERMMethod):
        def build_rml(self, config, data):
            model = super().build_rml(config, data)
            started.update(trunk_weights(model.network))
            return model

    config = dataclasses.replace(_config(tmp_path / "run", variant), extra=extra)
    results = runner.train_and_evaluate(Capture(), config, experiment=synthetic_ck8)
    _check_results(results, variant, "synthetic")
    want = trunk_weights(source)
    assert sorted(started) == sorted(want)
    for name, values in want.items():
        for got, expected in zip(started[name], values):
            np.testing.assert_array_equal(got, expected)
    fold_dir = tmp_path / "run" / "fold_0"
    stages = sorted(p.name for p in fold_dir.iterdir() if p.is_dir())
    assert stages == (["finetune", "hng", "pretrain_expression", "pretrain_identity",
                       "pretrain_rml"] if variant == "rml" else ["finetune", "pretrain_rml"])
    model = keras.saving.load_model(fold_dir / "inference.keras")
    assert model.get_layer("resnet18_std_pool").output.shape == (None, 512)
    assert model.output.shape == (None, 8)


# ------------------------------------------------------------- HNG and RML in two processes


@pytest.mark.slow
def test_stop_after_hng_then_a_later_run_trains_rml_from_the_stored_references(
        tmp_path, synthetic_ck8):
    """``stop_after="hng"`` ends the fold after its HNG with the references on disk and no
    result; a later process given only ``hng.json`` + ``hng_references.npz`` (what a device
    call brings back) skips stages 1-2 and trains the RML stages on those references."""
    first = tmp_path / "hng_call"
    stopped = runner.train_and_evaluate(
        IDFERMMethod(), _config(first, extra={**TINY, "stop_after": "hng"}),
        experiment=synthetic_ck8)
    assert stopped["stopped_after"] == ["hng"] and stopped["folds_stopped"] == [0]
    fold_dir = first / "fold_0"
    assert not (fold_dir / "result.json").exists() and not (first / "results.json").exists()
    assert not (fold_dir / "pretrain_rml").exists()
    with np.load(fold_dir / idferm_training.HNG_REFERENCES) as stored:
        references = stored["references"]
    assert references.dtype == np.uint8 and references.ndim == 3
    assert 0.0 <= json.loads((fold_dir / "hng.json").read_text())[
        "identity_preserved_percent"] <= 100.0
    with np.load(fold_dir / idferm_training.HNG_TEST_FACES) as test_faces:
        assert test_faces["generated"].shape == test_faces["inputs"].shape[:1] + (60, 60)
        assert len(test_faces["subjects"]) == len(test_faces["inputs"])
        assert set(test_faces["subjects"].tolist()) == set(json.loads(
            (fold_dir / "hng.json").read_text())["test_subjects"])

    second = tmp_path / "rml_call"
    (second / "fold_0").mkdir(parents=True)
    shutil.copy(first / "config.json", second / "config.json")
    for name in ("hng.json", idferm_training.HNG_REFERENCES):
        shutil.copy(fold_dir / name, second / "fold_0" / name)
    seen = {}

    class NoHNG(IDFERMMethod):
        def _hng_stages(self, config, data, fold_dir):
            raise AssertionError("stages 1-2 ran although their outputs were there")

        def build_rml(self, config, data):
            seen["num_train"] = len(data.x_train)
            return super().build_rml(config, data)

    results = runner.train_and_evaluate(NoHNG(), _config(second), experiment=synthetic_ck8)
    _check_results(results, "rml", "synthetic")
    assert seen["num_train"] == len(references)
    assert (second / "fold_0" / "finetune" / "final.weights.h5").exists()
    assert not (second / "fold_0" / "hng").exists()


def test_neutrality_compares_generated_faces_and_inputs_with_the_nearest_real_neutral():
    neutrals = np.stack([np.full((60, 60), v, np.uint8) for v in (100, 120, 200)])
    neutral_subjects = np.array(["a", "a", "b"])
    inputs = np.stack([np.full((48, 48), v, np.uint8) for v in (150, 150, 0)])
    # a: moved from 150 to 110 (nearest neutral 100 or 120 -> 10/255; input's 30/255);
    # a: copied its input (30/255 both); c: no neutral frame, left out.
    generated = np.stack([np.full((60, 60), v, np.uint8) for v in (110, 150, 0)])
    report = idferm_identity.neutrality(inputs, generated, np.array(["a", "a", "c"]),
                                        neutrals, neutral_subjects)
    assert report["num_faces"] == 2
    assert report["pixel_l1_generated_to_neutral"] == pytest.approx((10 + 30) / 2 / 255)
    assert report["pixel_l1_input_to_neutral"] == pytest.approx(30 / 255)
    assert report["closer_to_neutral_percent"] == 50.0
    # an expression classifier that calls a face neutral when it is dark enough
    judged = idferm_identity.neutrality(inputs, generated, np.array(["a", "a", "c"]), neutrals,
                                        neutral_subjects, is_neutral=lambda f: f.mean((1, 2)) < 130)
    assert (judged["called_neutral_percent_generated"], judged["called_neutral_percent_input"],
            judged["called_neutral_percent_real_neutral"]) == (50.0, 0.0, 100.0)
    assert "kept_and_called_neutral_percent" not in judged
    # the neutral one (110) lost its identity, the copy (150) kept it: neither is both
    both = idferm_identity.neutrality(inputs, generated, np.array(["a", "a", "c"]), neutrals,
                                      neutral_subjects, is_neutral=lambda f: f.mean((1, 2)) < 130,
                                      kept=np.array([False, True, True]))
    assert both["kept_and_called_neutral_percent"] == 0.0
    both = idferm_identity.neutrality(inputs, generated, np.array(["a", "a", "c"]), neutrals,
                                      neutral_subjects, is_neutral=lambda f: f.mean((1, 2)) < 130,
                                      kept=np.array([True, True, False]))
    assert both["kept_and_called_neutral_percent"] == 50.0
    assert idferm_identity.neutrality(inputs, generated, np.array(["c"] * 3), neutrals,
                                      neutral_subjects) is None


def test_identity_kept_compares_each_generated_face_with_its_own_input():
    # an "embedding" model: the mean of the 48x48 crop's left and right halves
    inputs = keras.Input((48, 48, 1))
    halves = keras.layers.Lambda(lambda x: keras.ops.stack(
        [keras.ops.mean(x[:, :, :24], axis=(1, 2, 3)),
         keras.ops.mean(x[:, :, 24:], axis=(1, 2, 3))], axis=1))(inputs)
    model = keras.Model(inputs, halves)
    left = np.zeros((48, 48), np.uint8)
    left[:, :24] = 200
    right = left[:, ::-1].copy()
    faces = np.stack([left, left, right])
    generated = np.stack([left, right, right])  # kept, swapped (orthogonal), kept
    kept = idferm_identity.identity_kept(model, faces, generated, threshold=0.1)
    assert kept.tolist() == [True, False, True]
    assert idferm_identity.identity_kept(model, faces, generated, threshold=1.0).all()


def test_stored_references_of_another_fold_are_a_clear_error(tmp_path):
    fold_dir = tmp_path / "fold_0"
    fold_dir.mkdir()
    np.savez_compressed(fold_dir / idferm_training.HNG_REFERENCES,
                        references=np.zeros((5, 60, 60), np.uint8))
    assert idferm_training.load_references(fold_dir, 5) is None  # no hng.json: not finished
    (fold_dir / "hng.json").write_text("{}")
    assert idferm_training.load_references(fold_dir, 5).shape == (5, 60, 60)
    with pytest.raises(ValueError, match="holds 5 generated faces but this fold has 7"):
        idferm_training.load_references(fold_dir, 7)


def test_stop_after_is_for_the_rml_variant_and_its_hng_only(tmp_path, synthetic_ck8):
    for variant, stage in (("baseline", "hng"), ("rml", "finetune")):
        with pytest.raises(ValueError, match="stop_after must be one of"):
            runner.train_and_evaluate(
                IDFERMMethod(), _config(tmp_path / variant / stage, variant,
                                        extra={**TINY, "stop_after": stage}),
                experiment=synthetic_ck8)


@pytest.mark.slow
def test_hng_init_starts_every_fold_hng_from_a_pretrained_generator(tmp_path, synthetic_ck8,
                                                                   capsys):
    """``extra hng_init``: the fold's HNG is built as ``extra hng`` says, takes the saved
    generator's encoder and decoder (tools/pretrain_hng.py), then trains its stage."""
    from keras_fer.models import idferm
    from keras_fer.training import hng_pretrain

    config = idferm_training._sized(idferm.HNGConfig, TINY["hng"])

    def aux(name, two_outputs=False):  # stand-ins for the frozen feature networks
        inputs = keras.Input((16, 16, 1))
        conv = keras.layers.Conv2D(3, 3, name=f"{name}_conv")(inputs)
        dense = keras.layers.Dense(4)(keras.layers.Flatten()(conv))
        return keras.Model(inputs, [conv, dense] if two_outputs else conv)

    faces = np.random.default_rng(0).integers(0, 256, (8, 64, 64), dtype=np.uint8)
    generator = hng_pretrain.pretrain_generator(faces, config, aux("p"), aux("i", True), {},
                                                tmp_path / "stage", epochs=1, batch_size=4)
    path = tmp_path / "generator.keras"
    generator.save(path)
    model_dir = tmp_path / "run"
    stopped = runner.train_and_evaluate(
        IDFERMMethod(), _config(model_dir, extra={**TINY, "stop_after": "hng",
                                                  "hng_init": str(path)}),
        experiment=synthetic_ck8)
    assert stopped["folds_stopped"] == [0]
    assert f"HNG encoder and decoder initialised from {path}" in capsys.readouterr().out
    assert (model_dir / "fold_0" / "hng" / "final.weights.h5").exists()
    missing = {**TINY, "stop_after": "hng", "hng_init": str(tmp_path / "none.keras")}
    with pytest.raises(FileNotFoundError, match="hng_init: no generator at"):
        runner.train_and_evaluate(IDFERMMethod(), _config(tmp_path / "run2", extra=missing),
                                  experiment=synthetic_ck8)
