"""benchmarks/ferplus_ensemble.py: soft voting over the shipped FER+ models, chosen on Valid."""

import json

import numpy as np
import pytest

from script_loader import load_script

bench = load_script("benchmarks/ferplus_ensemble.py", "ferplus_ensemble")


def test_combinations_golden_values():
    labels = {"valid": np.array([0, 1, 1]), "test": np.array([1, 0])}
    probs = {"a": {"valid": np.array([[.9, .1], [.6, .4], [.2, .8]]),
                   "test": np.array([[.3, .7], [.4, .6]])},
             "b": {"valid": np.array([[.6, .4], [.1, .9], [.7, .3]]),
                   "test": np.array([[.6, .4], [.9, .1]])}}
    rows = bench.combinations(probs, labels)
    assert [r["members"] for r in rows] == [["a"], ["b"], ["a", "b"]]
    # a: valid faces 0, 2 right; b: 0, 1; mean [[.75,.25],[.35,.65],[.45,.55]]: all three.
    assert [r["valid"] for r in rows] == [66.67, 66.67, 100.0]
    # test: a right on 0 only, b on 1 only, mean [[.45,.55],[.65,.35]]: both.
    assert [r["test"] for r in rows] == [50.0, 50.0, 100.0]


@pytest.mark.slow
def test_shipped_members_on_real_faces(ferplus_dir, tmp_path):
    report = bench.main([f"--data_dir={ferplus_dir.parents[1]}", "--limit=40",
                         f"--out={tmp_path / 'ens'}"])
    assert len(report["rows"]) == 7  # 3 members, 3 pairs, 1 triple
    assert report["chosen_on_valid"]["valid"] == max(r["valid"] for r in report["rows"])
    saved = json.loads((tmp_path / "ens.json").read_text())
    assert saved["rows"] == report["rows"] and (tmp_path / "ens.md").exists()
    singles = {r["members"][0]: r for r in report["rows"] if len(r["members"]) == 1}
    assert set(singles) == set(bench.MEMBERS)
    assert all(r["valid"] > 50 and r["test"] > 50 for r in singles.values())
