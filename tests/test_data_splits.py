"""Tests for keras_fer.data.splits on real CK+48 subject ids and small hand-made cases."""

from pathlib import Path

import numpy as np
import pytest

from keras_fer.data import splits


@pytest.fixture(scope="module")
def ck48(ckplus48_dir):
    """(subjects, labels) of CK+48, parsed from ``<class>/S010_004_00000017.png`` names."""
    files = sorted(Path(ckplus48_dir).glob("*/*.png"))
    subjects = np.array([f.name.split("_")[0] for f in files])
    classes = sorted({f.parent.name for f in files})
    labels = np.array([classes.index(f.parent.name) for f in files])
    return subjects, labels


def test_kfold_on_ckplus48_is_subject_disjoint_complete_and_balanced(ck48):
    subjects, labels = ck48
    assert len(subjects) == 981 and len(set(subjects)) == 118
    folds = splits.subject_kfold(subjects, labels, n_folds=10, seed=0)
    assert len(folds) == 10
    tested = np.concatenate([test for _, test in folds])
    assert np.array_equal(np.sort(tested), np.arange(len(subjects)))
    class_share = np.bincount(labels) / len(labels)
    for train, test in folds:
        assert np.array_equal(np.union1d(train, test), np.arange(len(subjects)))
        assert len(np.intersect1d(train, test)) == 0
        assert not set(subjects[train]) & set(subjects[test])
        # Balanced sizes: 981 / 10 = 98.1 records per fold.
        assert 90 <= len(test) <= 106, len(test)
        # Stratified: each fold's class mix is close to the dataset's.
        fold_share = np.bincount(labels[test], minlength=len(class_share)) / len(test)
        assert np.abs(fold_share - class_share).max() < 0.05, fold_share - class_share


def test_kfold_is_deterministic_per_seed(ck48):
    subjects, labels = ck48
    a = splits.subject_kfold(subjects, labels, 10, seed=3)
    b = splits.subject_kfold(subjects, labels, 10, seed=3)
    c = splits.subject_kfold(subjects, labels, 10, seed=4)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c))


def test_kfold_small_case_by_hand():
    # Four subjects of sizes 3, 2, 2, 1 into 2 folds: the 3-record subject goes first, then
    # sizes balance to 4 + 4.
    subjects = np.array(["a", "a", "a", "b", "b", "c", "c", "d"])
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    folds = splits.subject_kfold(subjects, labels, n_folds=2, seed=0)
    sizes = sorted(len(test) for _, test in folds)
    assert sizes == [4, 4]
    for train, test in folds:
        assert not set(subjects[train]) & set(subjects[test])
    fold_of_a = [i for i, (_, test) in enumerate(folds) if 0 in test][0]
    assert set(subjects[folds[fold_of_a][1]]) == {"a", "d"}


def test_kfold_every_fold_gets_a_subject_when_subjects_equal_folds():
    subjects = np.array(["a"] * 10 + ["b", "c"])
    folds = splits.subject_kfold(subjects, np.zeros(12, int), n_folds=3)
    assert sorted(len(test) for _, test in folds) == [1, 1, 10]


def test_kfold_errors():
    with pytest.raises(ValueError, match="from 2 subjects"):
        splits.subject_kfold(np.array(["a", "b", "b"]), np.array([0, 1, 1]), n_folds=3)
    with pytest.raises(ValueError, match="need subject ids|needs subject ids"):
        splits.subject_kfold(np.array(["a", "", "b"]), np.array([0, 1, 1]), n_folds=2)
    with pytest.raises(ValueError, match="n_folds"):
        splits.subject_kfold(np.array(["a", "b"]), np.array([0, 1]), n_folds=1)
    with pytest.raises(ValueError, match="one entry per record"):
        splits.subject_kfold(np.array(["a", "b"]), np.array([0, 1, 1]), n_folds=2)


def test_kfold_missing_subjects_become_pseudo_subjects_when_allowed():
    subjects = np.array(["", "", "", "x", "x"])
    folds = splits.subject_kfold(
        subjects, np.array([0, 1, 0, 1, 0]), n_folds=4, allow_missing_subjects=True
    )
    tested = np.sort(np.concatenate([t for _, t in folds]))
    assert np.array_equal(tested, np.arange(5))
    x_folds = [i for i, (_, t) in enumerate(folds) if 3 in t or 4 in t]
    assert len(x_folds) == 1 and {3, 4} <= set(folds[x_folds[0]][1])


def test_leave_one_subject_out():
    subjects = np.array(["s2", "s1", "s2", "s3", "s1"])
    folds = splits.leave_one_subject_out(subjects)
    assert [t.tolist() for _, t in folds] == [[1, 4], [0, 2], [3]]
    assert [tr.tolist() for tr, _ in folds] == [[0, 2, 3], [1, 3, 4], [0, 1, 2, 4]]
    with pytest.raises(ValueError, match="at least 2 subjects"):
        splits.leave_one_subject_out(np.array(["s1", "s1"]))
    with pytest.raises(ValueError, match="no subject id"):
        splits.leave_one_subject_out(np.array(["s1", ""]))


def test_train_val_split_is_subject_disjoint(ck48):
    subjects, labels = ck48
    train, test = splits.subject_kfold(subjects, labels, 10, seed=0)[0]
    tr, val = splits.train_val_split(train, subjects, labels, val_fraction=0.15, seed=1)
    assert np.array_equal(np.sort(np.concatenate([tr, val])), train)
    assert not set(subjects[tr]) & set(subjects[val])
    assert not set(subjects[val]) & set(subjects[test])
    assert 0.10 < len(val) / len(train) < 0.20
    tr2, val2 = splits.train_val_split(train, subjects, labels, val_fraction=0.15, seed=1)
    assert np.array_equal(val, val2) and np.array_equal(tr, tr2)


def test_train_val_split_errors():
    subjects, labels = np.array(["a", "a", "b"]), np.array([0, 1, 0])
    with pytest.raises(ValueError, match="val_fraction"):
        splits.train_val_split(np.arange(3), subjects, labels, val_fraction=1.0)
    with pytest.raises(ValueError, match="at least 2 subjects"):
        splits.train_val_split(np.array([0, 1]), subjects, labels)
    with pytest.raises(ValueError, match="must index 3 records"):
        splits.train_val_split(np.array([0, 5]), subjects, labels)
    tr, val = splits.train_val_split(np.arange(3), subjects, labels, val_fraction=0.01)
    assert len(val) >= 1 and len(tr) >= 1


def test_describe_fold():
    subjects = np.array(["s2", "s1", "", "s3"])
    desc = splits.describe_fold(subjects, np.array([0, 2, 3]), np.array([1]))
    assert desc == {"train_subjects": ["s2", "s3"], "test_subjects": ["s1"]}
