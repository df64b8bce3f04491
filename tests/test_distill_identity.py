"""tools/distill_identity.py and keras_fer.training.distill: what the teacher sees, the cache,
and the validation figure the tool writes beside each stream."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from keras_fer.training import distill

from script_loader import load_script


def _tool():
    return load_script("tools/distill_identity.py", "distill_identity_tool")


class _Recorder:
    """A stand-in teacher: remembers the batch shape and returns its per-face mean."""

    def __init__(self):
        self.shapes = []

    def predict(self, x, batch_size=None, verbose=0):
        self.shapes.append(x.shape)
        return np.repeat(x.reshape(len(x), -1).mean(1, keepdims=True), 128, axis=1)


def test_teacher_sees_the_crop_or_the_whole_frame_and_each_is_cached_apart(tmp_path):
    faces = np.zeros((3, 60, 60), np.uint8)
    faces[:, :6, :] = 255  # a bright band at the top: outside the centre 48x48 crop
    teacher = _Recorder()
    crop = distill.teacher_embeddings(faces, tmp_path, "set", teacher)
    frame = distill.teacher_embeddings(faces, tmp_path, "set", teacher, teacher_input="frame")
    assert teacher.shapes == [(3, 48, 48, 1), (3, 60, 60, 1)]
    assert np.allclose(crop, 0.0) and np.allclose(frame, 6 * 60 / 3600)
    names = sorted(p.name.split("_3_")[0] for p in tmp_path.glob("*.npy"))
    assert names == ["set", "set_frame"]
    again = distill.teacher_embeddings(faces, tmp_path, "set", _Recorder(),
                                       teacher_input="frame")
    assert np.array_equal(again, frame)
    with pytest.raises(ValueError, match="teacher_input='side'"):
        distill.teacher_model("side")


class _Fixed:
    def __init__(self, embeddings):
        self.embeddings = np.asarray(embeddings, np.float64)

    def predict(self, x, batch_size=None, verbose=0):
        assert x.shape == (len(self.embeddings), 48, 48, 1)
        return self.embeddings


@pytest.mark.parametrize("second_a", [[1.0, 0.1], [0.0, 1.0]])
def test_validation_verification_matches_a_brute_force_count(second_a):
    emb = np.array([[1.0, 0.05], second_a, [0.02, 1.0], [0.1, 1.0], [0.7, 0.7]])
    subjects = np.array(["A", "A", "B", "B", "C"])
    out = _tool().validation_verification(_Fixed(emb), np.zeros((5, 60, 60), np.uint8),
                                          subjects)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    pairs = list(itertools.combinations(range(5), 2))
    scores = np.array([unit[i] @ unit[j] for i, j in pairs])
    same = np.array([subjects[i] == subjects[j] for i, j in pairs])
    pos, neg = scores[same], scores[~same]
    auc = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    # The equal-error threshold among the scores, then the accuracy of score >= it.
    t = min(scores, key=lambda t: abs(np.mean(neg >= t) - np.mean(pos < t)))
    accuracy = 100 * np.mean((scores >= t) == same)
    assert out["ckplus_valid_auc"] == pytest.approx(auc)
    assert out["ckplus_valid_verification_accuracy"] == pytest.approx(accuracy)
    assert (out["ckplus_valid_faces"], out["ckplus_valid_subjects"]) == (5, 3)
    if second_a == [1.0, 0.1]:  # every same pair above every different one
        assert out["ckplus_valid_auc"] == 1.0 and out["ckplus_valid_verification_accuracy"] == 100


def test_an_unknown_teacher_input_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _tool().main(["--teacher_input=side", "--data_dir=/nonexistent"])
    assert exit_info.value.code == 2
    assert "--teacher_input takes one of ('crop', 'frame', 'frame_flip')" in (
        capsys.readouterr().err)
