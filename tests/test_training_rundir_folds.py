"""Run-directory locks with one process per fold: the GPU machine trains a protocol as one
``--fold=k`` process per fold in one ``--model_dir`` (tools/gpu_run.py); those must run side
by side, while two processes on one fold, or a whole run beside them, are kept out."""

import os

import pytest

from keras_fer.training import rundir


def test_single_fold_runs_share_the_folder_but_not_a_fold(tmp_path):
    with rundir.locked(tmp_path, fold=0):
        with rundir.locked(tmp_path, fold=1):  # another fold: side by side
            pass
        with pytest.raises(rundir.RunDirError, match=f"in use by pid {os.getpid()}"):
            with rundir.locked(tmp_path, fold=0):
                pass
        (tmp_path / ".lock_fold_7").write_text('{"pid": 1, "host": "old"}')  # a stale one
        with pytest.raises(rundir.RunDirError,
                           match=f"in use by single-fold runs: fold 0: pid {os.getpid()}") as err:
            with rundir.locked(tmp_path):  # every fold
                pass
        assert "fold 7" not in str(err.value)
    with rundir.locked(tmp_path):  # all released
        with pytest.raises(rundir.RunDirError, match=f"in use by pid {os.getpid()}"):
            with rundir.locked(tmp_path, fold=3):
                pass


def test_a_folder_left_with_lock_files_only_is_removed(tmp_path):
    run = tmp_path / "run"
    with rundir.locked(run, fold=2):
        pass
    assert sorted(p.name for p in run.iterdir()) == [".lock", ".lock_fold_2"]
    rundir.remove_if_only_lock(run)
    assert not run.exists()
