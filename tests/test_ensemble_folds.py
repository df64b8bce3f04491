"""Per-fold test predictions (the runner's ``test_predictions.json``), their import, and
``tools/ensemble_folds.py``, which averages runs over the same folds."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_fer.data import experiments
from keras_fer.training import runner
from keras_fer.training.config import TrainConfig

from script_loader import load_script

ensemble_folds = load_script("tools/ensemble_folds.py")


class Tiny:
    """A stub method: an untrained pooling + dense classifier per fold."""

    name = "stub"

    def fit_fold(self, data, config, fold_dir):
        inputs = keras.Input((48, 48, 1))
        x = keras.layers.Flatten()(keras.layers.AveragePooling2D(8)(inputs))
        return keras.Model(inputs, keras.layers.Dense(data.num_classes,
                                                      activation="softmax")(x))


def _run(tmp_path, name, seed):
    exp = experiments.load_experiment("synthetic", tmp_path / "data", "ck7")
    config = TrainConfig(method="tfe", variant="baseline", dataset="synthetic", protocol="ck7",
                         model_dir=str(tmp_path / name), folds=2, seed=seed, fold_seed=0)
    return runner.train_and_evaluate(Tiny(), config, experiment=exp), tmp_path / name


def test_runner_writes_each_folds_test_predictions(tmp_path):
    results, run = _run(tmp_path, "a", seed=0)
    for fold in results["folds"]:
        doc = json.loads((run / f"fold_{fold['fold']}" / "test_predictions.json").read_text())
        proba = np.array(doc["probabilities"])
        assert proba.shape == (fold["num_test"], 7) == (len(doc["labels"]), 7)
        assert np.allclose(proba.sum(1), 1.0, atol=1e-4)
        assert set(doc["subjects"]) == set(fold["test_subjects"])
        # The written probabilities give the fold's own accuracy and confusion matrix.
        pred = proba.argmax(1)
        cm = np.zeros((7, 7), int)
        np.add.at(cm, (np.array(doc["labels"]), pred), 1)
        assert cm.tolist() == fold["confusion_matrix"]
        assert 100 * np.mean(pred == doc["labels"]) == pytest.approx(fold["accuracy"])
        # The fold's validation faces (the inner split), the same way.
        valid = np.array(doc["valid_probabilities"])
        assert valid.shape == (len(doc["valid_labels"]), 7) and len(valid) > 0
        assert not set(doc["valid_subjects"]) & set(fold["test_subjects"])


def test_two_seeds_combine_and_import_keeps_the_predictions(tmp_path):
    _, a = _run(tmp_path, "a", seed=0)
    _, b = _run(tmp_path, "b", seed=1)
    result = ensemble_folds.ensemble({"a": ensemble_folds.load_member(a),
                                      "b": ensemble_folds.load_member(b)})
    assert [r["fold"] for r in result["folds"]] == [0, 1]
    assert set(result["valid_member_mean_accuracy"]) == {"a", "b"}
    assert 0 <= result["valid_mean_accuracy"] <= 100
    for r in result["folds"]:
        docs = [json.loads((m / f"fold_{r['fold']}" / "test_predictions.json").read_text())
                for m in (a, b)]
        mean = (np.array(docs[0]["probabilities"]) + np.array(docs[1]["probabilities"])) / 2
        assert r["ensemble"] == pytest.approx(
            100 * np.mean(mean.argmax(1) == docs[0]["labels"]), abs=1e-4)
    # Imported (benchmarks/results/gpu/<run>/<variant>/predictions/fold<k>.json), the same.
    import_runs = load_script("tools/import_runs.py")
    dest = tmp_path / "gpu"
    (tmp_path / "runs").mkdir()
    a.rename(tmp_path / "runs" / "a")
    written = import_runs.import_run(tmp_path / "runs" / "a", dest)
    assert sorted(p.name for p in (written[0] / "predictions").iterdir()) == [
        "fold0.json", "fold1.json"]
    again = ensemble_folds.ensemble({"a": ensemble_folds.load_member(written[0]),
                                     "b": ensemble_folds.load_member(b)})
    assert again == {**result, "members": ["a", "b"]}


def _member(folder, labels, proba, subjects=None):
    (folder / "predictions").mkdir(parents=True)
    (folder / "predictions" / "fold0.json").write_text(json.dumps({
        "fold": 0, "labels": labels, "subjects": subjects or ["s"] * len(labels),
        "probabilities": proba}))
    return folder


def test_soft_voting_golden_values_and_one_line_errors(tmp_path, capsys):
    labels = [0, 1, 2, 2]
    # a: right on faces 0, 1; b: right on faces 0, 2; their mean: right on 0, 1, 2 and 3.
    a = _member(tmp_path / "a", labels, [[.9, .1, 0], [.2, .8, 0], [.6, 0, .4], [0, .55, .45]])
    b = _member(tmp_path / "b", labels, [[.8, .2, 0], [.5, .4, .1], [0, .1, .9], [.5, .1, .4]])
    assert ensemble_folds.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "| 0 | 4 | 50.00 | 50.00 | 100.00 |" in out
    result = ensemble_folds.ensemble({"a": ensemble_folds.load_member(a),
                                      "b": ensemble_folds.load_member(b)})
    assert result["mean_accuracy"] == 100.0 and result["member_mean_accuracy"] == {
        "a": 50.0, "b": 50.0}

    other = _member(tmp_path / "c", [0, 1, 2, 1], [[1, 0, 0]] * 4)
    for argv, message in (([str(a), str(other)], "scored other test faces than"),
                          ([str(a)], "at least two members"),
                          ([str(a), str(tmp_path / "nope")], "no such folder"),
                          ([str(a), str(tmp_path)], "no predictions/fold<k>.json")):
        assert ensemble_folds.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_validation_faces_are_scored_when_every_member_has_them(tmp_path, capsys):
    test = {"labels": [0, 1], "subjects": ["s", "t"], "probabilities": [[.9, .1], [.2, .8]]}
    valid = {"valid_labels": [1, 1], "valid_subjects": ["u", "u"]}
    members = {}
    for name, v in (("a", [[.7, .3], [.4, .6]]), ("b", [[.2, .8], [.6, .4]])):
        folder = tmp_path / name / "fold_0"
        folder.mkdir(parents=True)
        (folder / "test_predictions.json").write_text(json.dumps(
            {"fold": 0, **test, **valid, "valid_probabilities": v}))
        members[name] = ensemble_folds.load_member(tmp_path / name)
    result = ensemble_folds.ensemble(members)
    # a: valid face 1 right; b: face 0; mean [[.45,.55],[.5,.5]]: face 0 right, face 1 a tie
    # that argmax gives to class 0.
    assert result["valid_member_mean_accuracy"] == {"a": 50.0, "b": 50.0}
    assert result["valid_mean_accuracy"] == 50.0 and result["mean_accuracy"] == 100.0
    assert "| validation mean | | 50.00 | 50.00 | 50.00 ± 0.00 |" in ensemble_folds.markdown(
        result)
    # A member without validation faces: the test figures only.
    c = _member(tmp_path / "c", test["labels"], test["probabilities"], test["subjects"])
    only_test = ensemble_folds.ensemble({**members, "c": ensemble_folds.load_member(c)})
    assert "valid_mean_accuracy" not in only_test and only_test["mean_accuracy"] == 100.0
