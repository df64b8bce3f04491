"""keras_fer.io_atomic: files and folders appear whole or not at all, even under SIGKILL."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_fer import io_atomic

REPO = Path(__file__).resolve().parents[1]


def test_write_json_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "results.json"
    io_atomic.write_json(path, {"a": 1})
    io_atomic.write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError):
        with io_atomic.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]


def test_an_interrupt_right_after_the_temporary_is_made_removes_it(tmp_path, monkeypatch):
    """Ctrl-C between mkstemp and the write (here: in os.close) leaves nothing behind."""
    real_close = os.close

    def interrupted_close(fd):
        real_close(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(io_atomic.os, "close", interrupted_close)
    with pytest.raises(KeyboardInterrupt):
        with io_atomic.atomic_path(tmp_path / "face.png"):
            pass  # never reached
    assert list(tmp_path.iterdir()) == []


def test_remove_own_temporaries_leaves_other_processes_and_real_files(tmp_path):
    (tmp_path / "sub").mkdir()
    own = [tmp_path / f".a.tmp-{os.getpid()}-x1.png",
           tmp_path / "sub" / f".b.tmp-{os.getpid()}-x2.png"]
    kept = [tmp_path / ".a.tmp-999999999-x3.png", tmp_path / "a.png", tmp_path / "sub" / "b.png"]
    for path in own + kept:
        path.write_bytes(b"x")
    assert io_atomic.remove_own_temporaries(tmp_path) == 2
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(kept)
    assert io_atomic.remove_own_temporaries(tmp_path / "missing") == 0


def test_temporary_keeps_every_suffix_for_format_picking_writers(tmp_path):
    with io_atomic.atomic_path(tmp_path / "final.weights.h5") as tmp:
        assert tmp.name.endswith(".weights.h5") and tmp.name.startswith(".final.tmp-")
        tmp.write_bytes(b"x")
    assert (tmp_path / "final.weights.h5").read_bytes() == b"x"


def test_save_npy(tmp_path):
    io_atomic.save_npy(tmp_path / "a.npy", np.arange(3))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.arange(3))


def test_atomic_dir_replaces_a_folder_whole(tmp_path):
    out = tmp_path / "export"
    (out / "savedmodel" / "variables").mkdir(parents=True)  # a half-written export
    with io_atomic.atomic_dir(out) as tmp:
        assert tmp.parent == tmp_path and not any(tmp.iterdir())
        (tmp / "savedmodel").mkdir()
        (tmp / "savedmodel" / "saved_model.pb").write_bytes(b"pb")
    assert (out / "savedmodel" / "saved_model.pb").read_bytes() == b"pb"
    assert not (out / "savedmodel" / "variables").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_atomic_dir_failure_keeps_the_old_folder(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "keep").write_text("1")
    with pytest.raises(ValueError):
        with io_atomic.atomic_dir(out) as tmp:
            (tmp / "new").write_text("2")
            raise ValueError("conversion failed")
    assert [p.name for p in out.iterdir()] == ["keep"]
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


@pytest.mark.parametrize("point", ["rename:doc.json", "rename:export"])
def test_sigkill_before_rename_leaves_old_content_and_next_write_cleans_up(tmp_path, point):
    script = (
        "import sys; from pathlib import Path; from keras_fer import io_atomic\n"
        "root = Path(sys.argv[1])\n"
        "io_atomic.write_json(root / 'doc.json', {'v': 2})\n"
        "with io_atomic.atomic_dir(root / 'export') as tmp:\n"
        "    (tmp / 'model').write_text('new')\n"
    )
    (tmp_path / "doc.json").write_text('{"v": 1}')
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "model").write_text("old")
    env = dict(os.environ, KERAS_FER_CRASH_AT=point)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, env=env)
    assert proc.returncode == -9
    if point == "rename:doc.json":
        assert json.loads((tmp_path / "doc.json").read_text()) == {"v": 1}
    else:
        assert json.loads((tmp_path / "doc.json").read_text()) == {"v": 2}
    # The folder is the old one, or (killed between the two renames) absent: never half.
    model = tmp_path / "export" / "model"
    assert not model.exists() or model.read_text() == "old"
    assert any(p.name.startswith(".") for p in tmp_path.iterdir())  # the dead process's temporary
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO)
    assert proc.returncode == 0
    assert (tmp_path / "export" / "model").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doc.json", "export"]


def test_write_results_writes_the_json_and_its_table_beside_it(tmp_path):
    out = io_atomic.write_results(tmp_path / "new" / "bench.json", {"ms": 9.7}, "| ms |\n",
                                  indent=2)
    assert out == tmp_path / "new" / "bench.json"
    assert json.loads(out.read_text()) == {"ms": 9.7}
    assert out.read_text() == '{\n  "ms": 9.7\n}\n'
    assert (tmp_path / "new" / "bench.md").read_text() == "| ms |\n"
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["bench.json", "bench.md"]
