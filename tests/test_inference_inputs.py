"""``keras-fer predict`` reads inputs by content (issue 21, item 5), on real faces."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from keras_fer.data.imageio import read_gray, read_rgb
from keras_fer.inference.inputs import IMAGE, VIDEO, list_folder, sniff


def _predict(*args):
    script = Path(sys.executable).with_name("keras-fer")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "keras_fer.cli"]
    proc = subprocess.run(
        [*command, "predict", *map(str, args)], capture_output=True, text=True, timeout=300
    )
    return proc, (json.loads(proc.stdout) if proc.stdout.strip() else None)


@pytest.fixture(scope="module")
def astronaut():
    return skdata.astronaut()


def _write_video(path, rgb, frames, fourcc="MJPG"):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10.0, rgb.shape[1::-1])
    for _ in range(frames):
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()


def test_sniff_by_magic_numbers(astronaut, tmp_path):
    for fmt, suffix in (("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"), ("BMP", "bmp"),
                        ("TIFF", "tif"), ("WEBP", "webp"), ("PPM", "ppm")):
        path = tmp_path / f"x.{suffix}"
        Image.fromarray(astronaut).save(path, format=fmt)
        assert sniff(path.read_bytes()[:256]) == IMAGE, fmt
    for fourcc, suffix in (("MJPG", "avi"), ("mp4v", "mp4")):
        path = tmp_path / f"v.{suffix}"
        _write_video(path, astronaut[:64, :64], 3, fourcc)
        assert sniff(path.read_bytes()[:256]) == VIDEO, suffix
    assert sniff(b"hello world, not an image" * 4) is None
    assert sniff(b"\x00" * 64) is None


def test_folder_of_extensionless_images_and_videos(astronaut, orl_dir, tmp_path):
    folder = tmp_path / "inbox"
    (folder / "sub").mkdir(parents=True)
    for k in (1, 2, 10):  # GIFs named like photo_001, natural order 1, 2, 10
        Image.open(orl_dir / f"s{k}" / "1.pgm").save(folder / f"photo_{k}", format="GIF")
    _write_video(folder / "clip.avi", astronaut, 4)
    (folder / "clip.avi").rename(folder / "clip")  # an AVI without a suffix
    (folder / "readme").write_text("plain text")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "dangling.png").symlink_to(tmp_path / "gone.png")
    Image.fromarray(astronaut).save(folder / "sub" / "deep.png")
    found, problems = list_folder(folder)
    assert [(p.name, k) for p, k in found] == [
        ("clip", VIDEO), ("photo_1", IMAGE), ("photo_2", IMAGE), ("photo_10", IMAGE)
    ]
    reasons = {p.name: r for p, r in problems}
    assert set(reasons) == {"readme", "empty.jpg", "dangling.png"}
    assert "broken symbolic link" in reasons["dangling.png"]
    assert reasons["empty.jpg"] == "empty file"

    annotated = tmp_path / "annotated"
    proc, report = _predict(folder, "--every", 2, "--annotate", annotated, "--recursive")
    assert proc.returncode == 0, proc.stderr
    rows = [(Path(r["path"]).name, r.get("frame"), len(r["faces"])) for r in report["results"]]
    assert rows == [
        ("clip", 0, 1), ("clip", 2, 1), ("photo_1", None, 1), ("photo_2", None, 1),
        ("photo_10", None, 1), ("deep.png", None, 1),
    ]
    assert {Path(e["path"]).name for e in report["errors"]} == {"readme", "empty.jpg",
                                                              "dangling.png"}
    for name in ("readme", "empty.jpg", "dangling.png"):
        assert name in proc.stderr
    assert sorted(p.name for p in (annotated / "clip").iterdir()) == [
        "frame_000000.png", "frame_000002.png"
    ]
    assert (annotated / "photo_10.png").is_file() and (annotated / "sub" / "deep.png").is_file()


def test_empty_or_unreadable_folder_is_exit_1(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc, report = _predict(empty)
    assert proc.returncode == 1 and report is None
    assert "holds no images or videos" in proc.stderr and "Traceback" not in proc.stderr
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    proc, report = _predict(junk)
    assert proc.returncode == 1 and report["results"] == []
    assert report["errors"][0]["path"] == str(junk / "a.jpg")


def test_sixteen_bit_images_are_scaled_not_clipped(astronaut, tmp_path):
    gray8 = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    png16 = tmp_path / "gray16.png"
    cv2.imwrite(str(png16), gray8.astype(np.uint16) * 257)
    assert Image.open(png16).mode == "I;16"
    np.testing.assert_array_equal(read_gray(png16), gray8)
    np.testing.assert_array_equal(read_rgb(png16)[..., 0], gray8)
    proc, report = _predict(png16)
    assert proc.returncode == 0, proc.stderr
    assert len(report["results"][0]["faces"]) == 1

    from keras_fer.inference.predictor import as_image_array

    np.testing.assert_array_equal(as_image_array(gray8.astype(np.uint16) * 257), gray8)
    np.testing.assert_array_equal(as_image_array(Image.open(png16))[..., 0], gray8)


def test_truncated_video_is_an_error_entry(astronaut, tmp_path):
    video = tmp_path / "clip.avi"
    _write_video(video, astronaut, 30)
    data = video.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 3])
    proc, report = _predict(cut, "--every", 5)
    assert proc.returncode == 0, proc.stderr
    frames = [r["frame"] for r in report["results"]]
    assert frames and frames[-1] < 25
    [error] = report["errors"]
    assert error["path"] == str(cut) and "of the 30 frames" in error["error"]
