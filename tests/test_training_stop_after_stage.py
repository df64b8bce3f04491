"""The runner's ``StopAfterStage``: a method may end a fold after a stage (IDFERM's
``extra stop_after="hng"``), leaving no result for it; the finished folds are still
aggregated, nothing is exported, and a later run trains the stopped fold."""

import json

import keras
import numpy as np
import pytest

from keras_fer.data import experiments
from keras_fer.training import runner
from keras_fer.training.config import TrainConfig


class StopsOnOddFolds:
    """A stub method: a tiny classifier on even folds, ``StopAfterStage`` on odd ones while
    ``stop`` is set."""

    name = "stub"

    def __init__(self, stop: bool):
        self.stop = stop
        self.fitted = []

    def fit_fold(self, data, config, fold_dir):
        if self.stop and data.fold % 2:
            (fold_dir / "stage_done").write_text("1")
            raise runner.StopAfterStage("stage")
        self.fitted.append(data.fold)
        inputs = keras.Input((48, 48, 1))
        x = keras.layers.GlobalAveragePooling2D()(inputs)
        return keras.Model(inputs, keras.layers.Dense(data.num_classes,
                                                      activation="softmax")(x))


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    return experiments.load_experiment("synthetic", tmp_path_factory.mktemp("data"), "ck7")


def _config(model_dir, fold=-1, **kw):
    return TrainConfig(method="tfe", variant="baseline", dataset="synthetic", protocol="ck7",
                       model_dir=str(model_dir), folds=2, fold=fold, **kw)


def test_stopped_folds_leave_no_result_and_a_later_run_finishes_them(tmp_path, experiment):
    method = StopsOnOddFolds(stop=True)
    results = runner.train_and_evaluate(method, _config(tmp_path, export=("savedmodel",)),
                                        experiment=experiment)
    assert method.fitted == [0]
    assert [f["fold"] for f in results["folds"]] == [0] and results["folds_expected"] == 2
    assert (tmp_path / "fold_1" / "stage_done").exists()
    assert not (tmp_path / "fold_1" / "result.json").exists()
    assert not (tmp_path / "export").exists()  # a partial run is not exported

    again = StopsOnOddFolds(stop=False)
    results = runner.train_and_evaluate(again, _config(tmp_path), experiment=experiment)
    assert again.fitted == [1]  # fold 0 was done
    assert [f["fold"] for f in results["folds"]] == [0, 1]


def test_a_run_whose_every_fold_stopped_writes_no_results(tmp_path, experiment):
    results = runner.train_and_evaluate(StopsOnOddFolds(stop=True),
                                        _config(tmp_path, fold=1), experiment=experiment)
    assert results == {"stopped_after": ["stage"], "folds_stopped": [1],
                       "model_dir": str(tmp_path)}
    assert not (tmp_path / "results.json").exists()
    assert json.loads((tmp_path / "config.json").read_text())["fold"] == 1
