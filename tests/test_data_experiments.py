"""Experiment loading, packs and fold construction (subject-disjoint by construction)."""

import numpy as np
import pytest

from keras_fer.data import experiments, packs


def test_synthetic_experiment_folds_are_subject_disjoint(tmp_path):
    exp = experiments.load_experiment("synthetic", data_dir=tmp_path)
    assert exp.faces.shape[1:] == (60, 60) and exp.faces.dtype == np.uint8
    assert exp.class_names == ("anger", "contempt", "disgust", "fear", "happiness", "sadness",
                               "surprise")
    folds = experiments.fold_indices(exp, folds=5, seed=0, val_fraction=0.1)
    tested = np.concatenate([f[2] for f in folds])
    assert sorted(tested.tolist()) == list(range(len(exp.labels)))
    for k, idx in enumerate(folds):
        fold = experiments.make_fold(exp, k, idx)
        train_val = set(exp.subjects[np.concatenate([idx[0], idx[1]])].tolist())
        assert not train_val & set(fold.test_subjects)
        assert not set(exp.subjects[idx[0]]) & set(exp.subjects[idx[1]])
        # identity labels: one id per training subject, validation identities unknown
        assert fold.id_train.max() + 1 == len(set(exp.subjects[idx[0]].tolist()))
        assert (fold.id_val == -1).all()


def test_val_fraction_zero_trains_on_every_subject_outside_the_test_fold(tmp_path):
    exp = experiments.load_experiment("synthetic", data_dir=tmp_path)
    with_val = experiments.fold_indices(exp, folds=5, seed=0, val_fraction=0.1)
    no_val = experiments.fold_indices(exp, folds=5, seed=0, val_fraction=0.0)
    for (tr, va, te), (tr0, va0, te0) in zip(with_val, no_val):
        assert len(va0) == 0 and len(va) > 0
        np.testing.assert_array_equal(te0, te)
        np.testing.assert_array_equal(tr0, np.union1d(tr, va))
    fold = experiments.make_fold(exp, 0, no_val[0])
    assert len(fold.y_val) == 0 and len(fold.x_val) == 0
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        experiments.fold_indices(exp, folds=5, seed=0, val_fraction=1.0)


def test_identity_fraction_withholds_identity_labels(tmp_path):
    exp = experiments.load_experiment("synthetic", data_dir=tmp_path)
    idx = experiments.fold_indices(exp, folds=4, seed=0, val_fraction=0.1)[0]
    full = experiments.make_fold(exp, 0, idx, identity_fraction=1.0)
    half = experiments.make_fold(exp, 0, idx, identity_fraction=0.5)
    none = experiments.make_fold(exp, 0, idx, identity_fraction=0.0)
    assert (full.id_train >= 0).all() and (none.id_train == -1).all()
    labelled = set(exp.subjects[idx[0]][half.id_train >= 0].tolist())
    assert len(labelled) == round(0.5 * len(set(exp.subjects[idx[0]].tolist())))


def test_pack_round_trip_is_used_by_load_experiment(tmp_path):
    exp = experiments.load_experiment("synthetic", data_dir=tmp_path, seed=3)
    path = packs.save_pack(exp, tmp_path)
    assert path.name == "synthetic_ck7.npz"
    exp.faces[:] = 0  # the pack must not share memory with the experiment
    back = experiments.load_experiment("synthetic", data_dir=tmp_path)
    assert back.faces.any() and back.class_names == exp.class_names
    np.testing.assert_array_equal(back.subjects, exp.subjects)


def test_ckplus48_experiment_with_orl_identities(ckplus48_dir):
    root = ckplus48_dir.parents[1]
    exp = experiments.load_experiment("ckplus48", data_dir=root)
    assert exp.faces.shape == (981, 60, 60)
    assert len(set(exp.subjects.tolist())) == 118
    assert exp.identity_faces.shape == (400, 60, 60)
    idx = experiments.fold_indices(exp, 10, 0, 0.1)[0]
    fold = experiments.make_fold(exp, 0, idx)
    n_fit = len(set(exp.subjects[idx[0]].tolist()))
    assert fold.num_identities == n_fit + 40
    assert fold.identity_y.min() == n_fit and fold.identity_y.max() == n_fit + 39


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown dataset"):
        experiments.load_experiment("mnist")


def test_limit_on_a_dataset_read_whole_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="limit=50 works on the split datasets"):
        experiments.load_experiment("ckplus48", tmp_path, limit=50)
