"""A run killed with SIGKILL at any point finishes, when run again, with the results of a run
never interrupted (issue 19).

One tiny IF-GAN baseline (synthetic faces, 8-filter classifier, one fold, 2 epochs) runs
uninterrupted; the same command in another folder is killed (``KERAS_FER_CRASH_AT``: the
process SIGKILLs itself just before a rename) in the stage (first epoch), while
``results.json`` is written, and when the export is complete but not yet renamed over a
half-written one a killed run of the old code left; each rerun resumes, and the finished run
re-exports. Beside it, a third folder is killed mid-stage after its first epoch's backup and
resumes at the second epoch. Three lanes run side by side (about 9 processes, each importing
TensorFlow: a minute or more on 2 shared cores).
"""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EXTRA = {"classifier_filters": 8, "feature_dim": 16, "jit_compile": False}
FLAGS = ["--variant=baseline", "--dataset=synthetic", "--folds=5", "--fold=0", "--epochs=2",
         "--batch_size=64", f"--extra={json.dumps(EXTRA)}"]


def _start(model_dir: Path, *more: str, crash: str = "") -> subprocess.Popen:
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="", TF_DETERMINISTIC_OPS="1", KERAS_FER_CRASH_AT=crash)
    return subprocess.Popen([sys.executable, "-m", "trainers.ifgan", *FLAGS,
                             f"--model_dir={model_dir}", *more], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(proc: subprocess.Popen) -> tuple:
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out


def _weights(path: Path):
    return keras.saving.load_model(path, compile=False).get_weights()


def _mid_stage(model_dir: Path) -> tuple:
    """Killed after epoch 1's backup, during epoch 2's save; then the rerun's output."""
    code, out = _finish(_start(model_dir, crash="rename:history.csv#2"))
    assert code == -9, out[-2000:]
    return _finish(_start(model_dir))


def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path):
    reference = _start(tmp_path / "reference", "--export=savedmodel")
    with ThreadPoolExecutor(1) as pool:
        mid_stage = pool.submit(_mid_stage, tmp_path / "mid_stage")
        run = tmp_path / "killed"
        for crash in ("rename:history.csv", "rename:results.json"):
            code, out = _finish(_start(run, crash=crash))
            assert code == -9, (crash, out[-2000:])
        # What the old code left after a kill mid-export: a SavedModel without its variables.
        (run / "export" / "savedmodel" / "variables").mkdir(parents=True)
        code, out = _finish(_start(run, "--export=savedmodel", crash="rename:export"))
        assert code == -9, out[-2000:]
        code, out = _finish(_start(run, "--export=savedmodel"))
        assert code == 0, out[-3000:]
        code, ref_out = _finish(reference)
        assert code == 0, ref_out[-3000:]

        ref = tmp_path / "reference"
        got = json.loads((run / "results.json").read_text())
        want = json.loads((ref / "results.json").read_text())
        for key in ("accuracy", "confusion_matrix", "train_subjects", "test_subjects"):
            assert got["folds"][0][key] == want["folds"][0][key], key
        assert got["mean_accuracy"] == want["mean_accuracy"]
        # The same network, weight for weight.
        for a, b in zip(_weights(run / "fold_0" / "inference.keras"),
                        _weights(ref / "fold_0" / "inference.keras")):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        history = (run / "fold_0" / "classifier" / "history.csv").read_text().splitlines()
        assert [line.split(",")[0] for line in history[1:]] == ["0", "1"]
        assert (run / "export" / "savedmodel" / "saved_model.pb").is_file()
        assert any((run / "export" / "savedmodel" / "variables").iterdir())
        # Nothing half-written or temporary is left behind.
        leftovers = [p for p in run.rglob(".*") if not p.name.startswith(".lock")]
        assert not leftovers, leftovers

        # A finished run re-run with --export re-exports (no "Refusing to overwrite").
        before = (run / "export" / "savedmodel" / "saved_model.pb").stat().st_mtime_ns
        code, out = _finish(_start(run, "--export=savedmodel"))
        assert code == 0, out[-3000:]
        assert (run / "export" / "savedmodel" / "saved_model.pb").stat().st_mtime_ns > before
        assert json.loads((run / "results.json").read_text())["folds"] == got["folds"]

        code, out = mid_stage.result()
    assert code == 0, out[-3000:]
    assert "Epoch 2/2" in out and "Epoch 1/2" not in out
    history = (tmp_path / "mid_stage" / "fold_0" / "classifier" / "history.csv").read_text()
    assert [line.split(",")[0] for line in history.splitlines()[1:]] == ["0", "1"]
    # A resumed epoch draws its own shuffle and augmentation: close to, not bit for bit, the
    # uninterrupted weights.
    for a, b in zip(_weights(tmp_path / "mid_stage" / "fold_0" / "inference.keras"),
                    _weights(ref / "fold_0" / "inference.keras")):
        np.testing.assert_allclose(a, b, atol=0.05)
