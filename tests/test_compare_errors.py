"""tools/compare_errors.py: a method's and its baseline's errors face by face, on predictions
written as tools/import_runs.py copies them."""

import json

import numpy as np

from script_loader import load_script

compare_errors = load_script("tools/compare_errors.py")


def _onehot(cls, p=0.9, extra=None):
    row = np.full(8, (1 - p) / 7)
    row[cls] = p
    for c, v in (extra or {}).items():  # another class's probability, taken from the rest
        row[c] = v
    return (row / row.sum()).tolist()


def _write(folder, labels, subjects, probabilities, protocol="ck8"):
    (folder / "predictions").mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"protocol": protocol}))
    (folder / "predictions" / "fold0.json").write_text(json.dumps(
        {"fold": 0, "labels": labels, "subjects": subjects, "probabilities": probabilities}))


def _run(tmp_path):
    # ck8: 0 neutral, 1 anger, 5 happiness, 7 surprise.
    labels = [0, 5, 0, 7, 1]
    subjects = ["S1", "S1", "S2", "S2", "S2"]
    method = [_onehot(0, extra={1: 0.3}),  # S1's neutral leans to anger
              _onehot(1),                  # S1's happiness read as anger: S1's neutral shares it
              _onehot(0), _onehot(7),
              _onehot(5)]                  # S2's anger read as happiness: S2's neutral does not
    baseline = [_onehot(0), _onehot(5), _onehot(7),  # S2's neutral read as surprise
                _onehot(0),                          # S2's surprise read as neutral
                _onehot(1)]
    run = tmp_path / "run"
    _write(run / "m_s0", labels, subjects, method)
    _write(run / "base_s0", labels, subjects, baseline)
    return run


def test_classes_and_error_kinds(tmp_path):
    result = compare_errors.compare(_run(tmp_path), "m", "base")
    assert result["faces"] == 5 and result["fold_runs"] == 1 and result["seeds"] == [0]
    assert result["classes"]["neutral"] == {"faces": 2, "m_accuracy": 100.0,
                                            "base_accuracy": 50.0, "m_only": 1, "base_only": 0}
    assert result["classes"]["happiness"]["base_only"] == 1
    assert result["classes"]["surprise"]["m_only"] == 1
    assert (result["m_only"], result["base_only"]) == (2, 2)
    m, base = result["errors"]["m"], result["errors"]["base"]
    assert (m["expressive_as_other"], m["expressive_as_neutral"],
            m["neutral_as_expressive"]) == (2, 0, 0)
    assert m["own_neutral_shares_wrong_class"] == 1  # S1's, not S2's
    assert (base["expressive_as_neutral"], base["neutral_as_expressive"]) == (1, 1)
    assert base["expressive_as_other"] == 0 and base["own_neutral_wrong_class_median"] is None


def test_other_faces_and_missing_variant_are_one_line_errors(tmp_path, capsys):
    run = _run(tmp_path)
    other = json.loads((run / "base_s0/predictions/fold0.json").read_text())
    other["subjects"][0] = "S9"
    (run / "base_s0/predictions/fold0.json").write_text(json.dumps(other))
    assert compare_errors.main([str(run), "m", "base"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: seed 0 fold 0: m and base scored other faces") and (
        err.count("\n") == 1)
    assert compare_errors.main([str(run), "m", "nothing"]) == 2
    assert "no nothing_s<seed>/ or nothing/ folder" in capsys.readouterr().err


def test_writes_the_json(tmp_path):
    out = tmp_path / "out.json"
    assert compare_errors.main([str(_run(tmp_path)), "m", "base", f"--out={out}"]) == 0
    assert json.loads(out.read_text())["variants"] == ["m", "base"]


def test_faces_of_no_known_person_get_no_neutral_comparison(tmp_path):
    # FER+ writes empty subject ids: its neutral faces are nobody's "own", and the error kinds
    # stay counted. Before, every neutral face counted as every face's own.
    labels = [0, 5, 0, 7]
    method = [_onehot(0, extra={1: 0.3}), _onehot(1), _onehot(0), _onehot(7)]
    run = tmp_path / "run"
    _write(run / "m_s0", labels, ["", "", "", ""], method, protocol="ferplus8")
    _write(run / "base_s0", labels, ["", "", "", ""], method, protocol="ferplus8")
    m = compare_errors.compare(run, "m", "base")["errors"]["m"]
    assert m["expressive_as_other"] == 1
    assert m["own_neutral_wrong_class_median"] is None
    assert m["own_neutral_shares_wrong_class"] is None
    assert m["other_neutral_wrong_class_mean"] is None
