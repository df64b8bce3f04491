"""``keras-fer predict`` end to end (subprocess) on a photo, a folder with bad files and a video."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from keras_fer import cli
from keras_fer.data.labels import PROTOCOLS
from keras_fer.inference.cli import parse_class_names

CLASSES = list(PROTOCOLS["ck7"])
FACE_KEYS = {"box", "score", "class", "class_id", "probabilities"}


def _command():
    script = Path(sys.executable).with_name("keras-fer")
    return [str(script)] if script.exists() else [sys.executable, "-m", "keras_fer.cli"]


def _predict(*args):
    proc = subprocess.run(
        [*_command(), "predict", *map(str, args)], capture_output=True, text=True, timeout=300
    )
    report = json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc, report


def _check_face(face, width, height):
    assert set(face) == FACE_KEYS
    x, y, w, h = face["box"]
    assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= width and y + h <= height
    assert list(face["probabilities"]) == CLASSES
    assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert face["class"] == max(face["probabilities"], key=face["probabilities"].get)
    assert CLASSES[face["class_id"]] == face["class"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import keras

    from keras_fer.export.savedmodel import export_savedmodel
    from keras_fer.export.tflite import convert

    keras.utils.set_random_seed(1)
    image = keras.Input((48, 48, 1), name="image")
    x = keras.layers.Conv2D(4, 5, strides=4, activation="relu", name="cli_conv")(image)
    x = keras.layers.Flatten(name="cli_flatten")(x)
    out = keras.layers.Dense(7, activation="softmax", name="cli_probabilities")(x)
    model = keras.Model(image, out, name="cli_tiny")
    root = tmp_path_factory.mktemp("cli_models")
    saved = export_savedmodel(model, CLASSES, root / "savedmodel")
    tflite = convert(model, "float32", root / "cli_float32.tflite")
    (root / "class_names.txt").write_text("\n".join(CLASSES) + "\n")
    return saved, tflite


@pytest.fixture(scope="module")
def astronaut():
    return skdata.astronaut()


def test_help_lists_predict(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    assert "predict" in capsys.readouterr().out


def test_class_names_flag():
    assert parse_class_names("ck7") == CLASSES
    assert parse_class_names(" a, b ,c") == ["a", "b", "c"]
    assert parse_class_names(None) is None
    with pytest.raises(ValueError, match="empty"):
        parse_class_names(" , ")


@pytest.mark.slow
def test_photo_with_annotation(models, astronaut, tmp_path):
    saved, _ = models
    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(astronaut).save(photo, quality=95)
    out = tmp_path / "annotated.png"
    proc, report = _predict(photo, "--model", saved, "--annotate", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert report["class_names"] == CLASSES and report["errors"] == []
    assert report["model"] == str(saved) and report["input"] == str(photo)
    [result] = report["results"]
    assert result["path"] == str(photo) and len(result["faces"]) == 1
    _check_face(result["faces"][0], 512, 512)
    x, y, w, h = result["faces"][0]["box"]
    assert 150 <= x <= 200 and 60 <= y <= 110 and 70 <= w <= 130
    drawn = np.asarray(Image.open(out))
    assert drawn.shape == (512, 512, 3)
    assert np.abs(drawn.astype(int) - astronaut).max() > 100  # a box and label were drawn


def test_folder_with_corrupt_files(models, astronaut, orl_dir, tmp_path):
    _, tflite = models
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(astronaut).save(folder / "a_astronaut.png")
    for k in (1, 2, 3):
        (folder / f"orl_s{k}.pgm").write_bytes((orl_dir / f"s{k}" / "1.pgm").read_bytes())
    Image.fromarray(np.full((80, 80), 200, np.uint8)).save(folder / "blank.png")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(200)))
    png = (folder / "a_astronaut.png").read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 3])
    (folder / "notes.txt").write_text("not an image: listed under errors")
    annotated = tmp_path / "annotated"
    proc, report = _predict(
        folder, "--model", tflite, "--annotate", annotated, "--batch_size", 2, "--quiet"
    )
    assert proc.returncode == 0, proc.stderr
    errors = {Path(e["path"]).name: e["error"] for e in report["errors"]}
    assert set(errors) == {"corrupt.jpg", "truncated.png", "notes.txt"}
    assert "unrecognised content" in errors["notes.txt"]
    assert "corrupt.jpg" in proc.stderr and "truncated.png" in proc.stderr
    by_name = {Path(r["path"]).name: r["faces"] for r in report["results"]}
    assert list(by_name) == [
        "a_astronaut.png", "blank.png", "orl_s1.pgm", "orl_s2.pgm", "orl_s3.pgm"
    ]
    assert by_name["blank.png"] == []
    assert len(by_name["a_astronaut.png"]) == 1
    _check_face(by_name["a_astronaut.png"][0], 512, 512)
    for k in (1, 2, 3):
        assert len(by_name[f"orl_s{k}.pgm"]) == 1
        _check_face(by_name[f"orl_s{k}.pgm"][0], 92, 112)
    written = sorted(p.name for p in annotated.iterdir())
    assert written == ["a_astronaut.png", "blank.png", "orl_s1.png", "orl_s2.png", "orl_s3.png"]
    assert Image.open(annotated / "orl_s1.png").size == (92, 112)


@pytest.mark.slow
def test_video_every_second_frame(models, astronaut, tmp_path):
    saved, _ = models
    video = tmp_path / "clip.avi"
    bgr = cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (512, 512))
    for shift in range(6):  # the face moves 4 px right per frame
        writer.write(np.roll(bgr, 4 * shift, axis=1))
    writer.release()
    annotated = tmp_path / "clip_annotated.avi"
    proc, report = _predict(
        video, "--model", saved, "--every", 2, "--annotate", annotated, "--batch_size", 2,
        "--progress",
    )
    assert proc.returncode == 0, proc.stderr
    assert "predict" in proc.stderr  # the progress bar
    assert [r["frame"] for r in report["results"]] == [0, 2, 4]
    assert [r["time_s"] for r in report["results"]] == [0.0, 0.2, 0.4]
    xs = []
    for result in report["results"]:
        assert len(result["faces"]) == 1
        _check_face(result["faces"][0], 512, 512)
        xs.append(result["faces"][0]["box"][0])
    assert 4 <= xs[1] - xs[0] <= 12 and 4 <= xs[2] - xs[1] <= 12  # 8 px per kept frame
    capture = cv2.VideoCapture(str(annotated))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    assert frames == 3


def test_unreadable_inputs(models, tmp_path):
    saved, tflite = models
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"GIF89a nope")
    proc, report = _predict(bad, "--model", tflite, "--quiet")
    assert proc.returncode == 1
    assert report["results"] == [] and report["errors"][0]["path"] == str(bad)
    bad_video = tmp_path / "bad.mp4"
    bad_video.write_bytes(b"\x00" * 64)
    proc, report = _predict(bad_video, "--model", tflite, "--quiet")
    assert proc.returncode == 1 and report["errors"][0]["path"] == str(bad_video)
    proc, report = _predict(tmp_path / "missing.png", "--model", saved)
    assert proc.returncode == 2 and "input not found" in proc.stderr and report is None
    proc, report = _predict(bad, "--model", tmp_path / "missing.tflite")
    assert proc.returncode == 2 and "Model not found" in proc.stderr
    assert "give a SavedModel folder" in proc.stderr and proc.stderr.count("\n") == 1


def test_video_frames_folder_and_max_frames_in_process(models, astronaut, tmp_path):
    from keras_fer.inference.cli import predict_path
    from keras_fer.inference.predictor import Predictor

    _, tflite = models
    video = tmp_path / "still.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (512, 512))
    for _ in range(7):
        writer.write(cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    writer.release()
    frames_dir = tmp_path / "frames"
    with Predictor(tflite) as predictor:
        report = predict_path(
            predictor, video, every=3, max_frames=2, annotate=frames_dir, progress=False
        )
        with pytest.raises(ValueError, match="batch_size"):
            predict_path(predictor, video, batch_size=0)
    assert [(r["frame"], r["time_s"]) for r in report["results"]] == [(0, 0.0), (3, 0.6)]
    assert all(len(r["faces"]) == 1 for r in report["results"]) and report["errors"] == []
    assert sorted(p.name for p in frames_dir.iterdir()) == ["frame_000000.png", "frame_000003.png"]
