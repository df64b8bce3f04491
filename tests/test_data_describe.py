"""The ``python -m keras_fer.data describe`` CLI and the preview grid."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from keras_fer.data import readers
from keras_fer.data.describe import describe
from keras_fer.data.preview import save_preview


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "keras_fer.data", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_describe_ckplus48_with_preview(ckplus48_dir, tmp_path):
    preview = tmp_path / "out.png"
    result = _cli("describe", "--format=ckplus48", f"--path={ckplus48_dir}", f"--preview={preview}")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["images"] == 981
    assert summary["subjects"] == 118
    assert summary["image_shape"] == [48, 48]
    assert summary["classes"]["surprise"] == 249 and sum(summary["classes"].values()) == 981
    assert summary["skipped"] == {"count": 0, "first": []}
    with Image.open(preview) as image:
        assert image.format == "PNG"
        image.load()
        width, height = image.size
    assert width > 400 and height > 400  # 7 class rows x 8 faces


def test_describe_reports_skipped_and_subject_regex(tmp_path):
    root = tmp_path / "faces"
    (root / "anger").mkdir(parents=True)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "anger" / "ann_1.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "anger" / "bob_1.png")
    (root / "anger" / "cat_1.png").write_text("not a png")
    result = _cli(
        "describe", "--format=folder", f"--path={root}", "--subject_regex=^([a-z]+)_"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["images"] == 2 and summary["subjects"] == 2
    assert summary["classes"] == {"anger": 2}
    assert summary["skipped"]["count"] == 1
    assert "cat_1.png" in summary["skipped"]["first"][0]
    assert "cat_1.png" in result.stderr  # the logged warning


def test_describe_missing_dir_and_bad_flags(tmp_path):
    result = _cli("describe", "--format=ckplus48", f"--path={tmp_path / 'nope'}")
    assert result.returncode == 2
    assert f"not found: {tmp_path / 'nope'}" in result.stderr
    result = _cli("describe", "--format=ckplus48", f"--path={tmp_path}", "--limit=3")
    assert result.returncode != 0 and "--limit is not an option of --format=ckplus48" in (
        result.stderr
    )


def test_describe_dict_for_mixed_sizes_and_splits(ferplus_dir):
    table = readers.read_ferplus(ferplus_dir, splits=("valid", "test"), limit=20)
    summary = describe(table, show_skipped=2)
    assert summary["splits"] == {
        "test": int((table.split == "test").sum()),
        "valid": int((table.split == "valid").sum()),
    }
    assert summary["subjects"] == 0
    json.dumps(summary)  # JSON-ready


def test_preview_identity_rows_by_subject(orl_dir, tmp_path):
    table = readers.read_identity_folder(orl_dir)
    path = tmp_path / "orl.png"
    save_preview(table, path, per_row=4, max_rows=3)
    with Image.open(path) as image:
        assert image.format == "PNG"
        # figsize (4 * 0.9 + 1.2, 3 * 0.95 + 0.3) inches at 100 dpi.
        assert image.size == (480, 315)
    with pytest.raises(ValueError, match="empty"):
        save_preview(table.subset(np.zeros(len(table), bool)), tmp_path / "none.png")
