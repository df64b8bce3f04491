"""``keras-fer predict``: outputs that never lie and one-line errors (issue 21, item 6).

Every case runs the real command in a subprocess with the shipped default model (a ``.tflite``
file, so no TensorFlow) on real faces (scikit-image's astronaut, ORL).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from skimage import data as skdata

from keras_fer.inference.defaults import default_model_path

REPO = Path(__file__).resolve().parents[1]


def _command():
    script = Path(sys.executable).with_name("keras-fer")
    return [str(script)] if script.exists() else [sys.executable, "-m", "keras_fer.cli"]


def _predict(*args, cwd=None):
    proc = subprocess.run(
        [*_command(), "predict", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )
    report = json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc, report


def _one_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "astronaut.jpg"
    Image.fromarray(skdata.astronaut()).save(path, quality=95)
    return path


def test_default_model_is_shipped_and_quiet(photo):
    assert default_model_path().is_file()
    proc, report = _predict(photo)
    assert proc.returncode == 0
    assert proc.stderr == ""  # no TensorFlow / LiteRT / MediaPipe lines, no bar off a terminal
    assert report["model"] == str(default_model_path())
    [face] = report["results"][0]["faces"]
    assert face["class"] == "happiness"


def test_quick_start_example(tmp_path):
    annotated = tmp_path / "astronaut_faces.png"
    proc, report = _predict("--example", "--annotate", annotated)
    assert proc.returncode == 0 and proc.stderr == ""
    [face] = report["results"][0]["faces"]
    assert face["class"] == "happiness" and Image.open(annotated).size == (512, 512)
    proc, _ = _predict()
    assert proc.returncode == 2 and "--example" in _one_line(proc.stderr)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--every=0"], "--every must be >= 1"),
        (["--batch_size=0"], "--batch_size must be >= 1"),
        (["--min_confidence=1.5"], "--min_confidence must be in [0, 1]"),
        (["--min_confidence=-0.1"], "--min_confidence must be in [0, 1]"),
        (["--num_threads=0"], "--num_threads must be >= 1"),
        (["--max_frames=-1"], "--max_frames must be >= 0"),
        (["--class_names= , "], "--class_names is empty"),
        (["--annotate=out.xyz"], "unknown image suffix '.xyz'"),
    ],
)
def test_bad_flags_are_one_line_before_the_model_loads(photo, tmp_path, flags, message):
    # A model path that would take seconds to load (TensorFlow) proves nothing loaded: the
    # checks answer first, fast.
    start = time.perf_counter()
    proc, report = _predict(photo, "--model", REPO / "saved_models/idennet_ferplus/1", *flags)
    assert time.perf_counter() - start < 5
    assert proc.returncode == 2 and report is None
    assert message in _one_line(proc.stderr)


def test_missing_input_and_model(photo, tmp_path):
    proc, _ = _predict(tmp_path / "missing.jpg")
    assert proc.returncode == 2 and "input not found" in _one_line(proc.stderr)
    proc, _ = _predict(photo, "--model", tmp_path / "missing.tflite")
    assert proc.returncode == 2 and "Model not found" in _one_line(proc.stderr)


@pytest.mark.slow
def test_corrupt_tflite_and_truncated_savedmodel_name_the_file(photo, tmp_path):
    not_tflite = tmp_path / "garbage.tflite"
    not_tflite.write_bytes(b"\x00" * 100)
    proc, _ = _predict(photo, "--model", not_tflite)
    line = _one_line(proc.stderr)
    assert proc.returncode == 2 and str(not_tflite) in line and "not a TFLite model" in line
    truncated = tmp_path / "truncated.tflite"
    data = default_model_path().read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    proc, _ = _predict(photo, "--model", truncated)
    line = _one_line(proc.stderr)
    assert proc.returncode == 2 and str(truncated) in line
    saved = tmp_path / "savedmodel"
    shutil.copytree(REPO / "saved_models/idennet_ferplus/1", saved)
    pb = saved / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:2000])
    proc, _ = _predict(photo, "--model", saved)
    line = _one_line(proc.stderr)
    assert proc.returncode == 2 and f"Cannot load model {saved}" in line
    proc, _ = _predict(photo, "--model", saved, "--verbose")
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_annotate_without_suffix_writes_png_and_missing_folders_are_created(photo, tmp_path):
    annotated = tmp_path / "new" / "deeper" / "annotated"
    output = tmp_path / "reports" / "today" / "out.json"
    proc, report = _predict(photo, "--annotate", annotated, "--output", output)
    assert proc.returncode == 0 and proc.stdout == "" and report is None
    assert Image.open(annotated).format == "PNG" and Image.open(annotated).size == (512, 512)
    report = json.loads(output.read_text())
    assert len(report["results"][0]["faces"]) == 1
    assert sorted(p.name for p in output.parent.iterdir()) == ["out.json"]  # no temp file
    umask = os.umask(0o22)
    os.umask(umask)
    for written in (annotated, output):  # not the temporary file's private 0600
        assert written.stat().st_mode & 0o777 == 0o666 & ~umask


def test_unwritable_output_is_refused_before_work_and_old_file_kept(photo, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("I am a file")
    proc, _ = _predict(photo, "--output", blocker / "out.json")
    line = _one_line(proc.stderr)
    assert proc.returncode == 2 and "--output" in line and "choose another place" in line
    proc, _ = _predict(photo, "--output", tmp_path)
    assert proc.returncode == 2 and "is a folder" in _one_line(proc.stderr)
    proc, _ = _predict(photo, "--annotate", blocker / "x.png")
    assert proc.returncode == 2 and "--annotate" in _one_line(proc.stderr)
    proc, _ = _predict(photo, "--annotate", photo)
    assert proc.returncode == 2 and "overwrite the input" in _one_line(proc.stderr)
    assert blocker.read_text() == "I am a file"


def test_ctrl_c_writes_results_so_far(orl_dir, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for k in range(1, 41):
        for n in range(1, 6):
            shutil.copy(orl_dir / f"s{k}" / f"{n}.pgm", folder / f"s{k:02d}_{n}.pgm")
    output = tmp_path / "out.json"
    output.write_text('{"results": ["from the previous run"]}\n')
    annotated = tmp_path / "annotated"
    proc = subprocess.Popen(
        [*_command(), "predict", str(folder), "--batch_size=1", "--output", str(output),
         "--annotate", str(annotated)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and (
        not annotated.is_dir() or len([p for p in annotated.iterdir() if p.suffix == ".png"]) < 3
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    line = _one_line(stderr)
    assert "interrupted after" in line and str(output) in line
    report = json.loads(output.read_text())
    assert report["interrupted"] is True
    assert 3 <= len(report["results"]) < 200
    assert all(len(r["faces"]) == 1 for r in report["results"])
    pngs = sorted(annotated.iterdir())
    assert all(p.suffix == ".png" and not p.name.startswith(".") for p in pngs)
    for p in pngs:
        Image.open(p).load()  # every annotated image is complete
    assert os.listdir(tmp_path).count("out.json") == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
