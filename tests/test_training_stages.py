"""Resumable training stages: completion marker, reload, recovery from a broken save, one
history row per epoch across a kill, atomic saves."""

import csv
import json

import keras
import numpy as np

from keras_fer.training import stages
from keras_fer.training.stages import fit_stage


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    model.compile(optimizer="sgd", loss="mse")
    return model


class _Batches(keras.utils.PyDataset):
    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(16, 3)).astype("float32")
        self.y = rng.normal(size=(16, 2)).astype("float32")

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return self.x[i * 8 : (i + 1) * 8], self.y[i * 8 : (i + 1) * 8]


def test_finished_stage_is_loaded_not_retrained(tmp_path):
    data = _Batches()
    model = _model()
    history = fit_stage(model, tmp_path / "stage", data, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert (tmp_path / "stage" / "final.weights.h5").exists()
    assert not (tmp_path / "stage" / "final.partial.weights.h5").exists()
    assert len((tmp_path / "stage" / "history.csv").read_text().splitlines()) == 3
    trained = model.get_weights()

    again = _model(seed=1)
    assert fit_stage(again, tmp_path / "stage", data, epochs=2, verbose=0) is None
    for a, b in zip(again.get_weights(), trained):
        np.testing.assert_array_equal(a, b)


def test_unreadable_final_weights_retrain_the_stage(tmp_path):
    data = _Batches()
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "final.weights.h5").write_bytes(b"\x89HDF\r\n half a file")
    model = _model()
    history = fit_stage(model, stage, data, epochs=1, verbose=0)
    assert history is not None and len(history.history["loss"]) == 1
    assert (stage / "final.corrupt.h5").read_bytes().startswith(b"\x89HDF")
    reloaded = _model(seed=2)
    assert fit_stage(reloaded, stage, data, epochs=1, verbose=0) is None
    for a, b in zip(reloaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_stage_writes_its_timing(tmp_path):
    from keras_fer.data.augment import FaceBatches
    from keras_fer.training.stages import examples_per_epoch

    fit_stage(_model(), tmp_path / "stage", _Batches(), epochs=3, verbose=0)
    timing = json.loads((tmp_path / "stage" / "timing.json").read_text())
    assert timing["epochs"] == 3 and len(timing["epoch_seconds"]) == 3
    assert abs(timing["median_epoch_seconds"] - sorted(timing["epoch_seconds"])[1]) < 1e-3
    # _Batches has no faces: examples unknown, no rate.
    assert timing["examples_per_epoch"] is None and timing["examples_per_second"] is None
    faces = np.zeros((10, 60, 60), np.uint8)
    assert examples_per_epoch(FaceBatches(faces, np.zeros(10), batch_size=4)) == 10
    assert examples_per_epoch(FaceBatches(faces, np.zeros(10), batch_size=4,
                                          drop_remainder=True)) == 8


def _clf():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 3)).astype("float32"), rng.integers(0, 2, 16)


def _epochs(path):
    with open(path, newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_finished_stage_leaves_history_final_weights_and_no_backup(tmp_path):
    x, y = _data()
    stages.fit_stage(_clf(), tmp_path, x, 3, verbose=0, y=y, batch_size=8)
    assert _epochs(tmp_path / "history.csv") == [0, 1, 2]
    assert (tmp_path / "final.weights.h5").is_file()
    assert not (tmp_path / "backup").exists()
    assert json.loads((tmp_path / "timing.json").read_text())["epochs"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # A finished stage only loads its weights.
    assert stages.fit_stage(_clf(), tmp_path, x, 3, verbose=0, y=y) is None


def test_resume_drops_history_rows_after_the_backup(tmp_path):
    """A kill after epoch 2's history row but before its backup: epoch 2 is trained again
    and appears once."""
    x, y = _data()
    model = _clf()
    model.fit(x, y, epochs=2, verbose=0,
              callbacks=[stages.HistoryCSV(tmp_path / "history.csv"),
                         stages.Backup(str(tmp_path / "backup"))])
    with open(tmp_path / "history.csv", "a") as handle:  # epoch 2's row, its backup lost
        handle.write("2,0.5\n")
    assert _epochs(tmp_path / "history.csv") == [0, 1, 2]
    stages.fit_stage(_clf(), tmp_path, x, 4, verbose=0, y=y, batch_size=8)
    assert _epochs(tmp_path / "history.csv") == [0, 1, 2, 3]
