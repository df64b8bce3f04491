"""Bad input: corrupt files and malformed rows become Skipped entries, bad paths DatasetError."""

import io
import logging

import numpy as np
import pytest
from PIL import Image

from keras_fer.data import readers
from keras_fer.data.imageio import ImageReadError, decode_gray_bytes, read_gray
from keras_fer.data.readers import DatasetError


def _png_bytes(value=128, shape=(48, 48)):
    buffer = io.BytesIO()
    Image.fromarray(np.full(shape, value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _png(path, value=128, shape=(48, 48)):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_png_bytes(value, shape))
    return path


@pytest.fixture
def ck_tree(tmp_path):
    """A CK+48-style tree with one good image per class folder plus three bad files."""
    root = tmp_path / "CK+48"
    _png(root / "anger" / "S001_001_00000010.png", 10)
    _png(root / "happy" / "S002_003_00000007.png", 20)
    truncated = _png_bytes(30)
    (root / "happy" / "S002_003_00000008.png").write_bytes(truncated[: len(truncated) // 2])
    (root / "anger" / "S001_001_00000011.png").write_text("this is not an image\n")
    _png(root / "anger" / "badname.png", 40)
    return root


def test_imageio_errors(tmp_path):
    good = _png_bytes()
    for data, reason in [
        (good[: len(good) // 2], "truncated"),
        (b"hello, world", "not an image"),
        (b"", "empty"),
    ]:
        with pytest.raises(ImageReadError, match=reason) as info:
            decode_gray_bytes(data, source="mem://x")
        assert info.value.path == "mem://x"
    with pytest.raises(ImageReadError, match="file not found"):
        read_gray(tmp_path / "missing.png")
    with pytest.raises(TypeError, match="Received: str"):
        decode_gray_bytes("not bytes")


def test_corrupt_files_are_skipped_with_warnings(ck_tree, caplog):
    with caplog.at_level(logging.WARNING, logger="keras_fer.data.readers"):
        table = readers.read_ckplus48(ck_tree)
    assert len(table) == 2
    assert table.images[0, 0, 0] == 10 and table.images[1, 0, 0] == 20
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in table.skipped}
    assert set(reasons) == {"S002_003_00000008.png", "S001_001_00000011.png", "badname.png"}
    assert "truncated" in reasons["S002_003_00000008.png"]
    assert "not an image" in reasons["S001_001_00000011.png"]
    assert "S<subject>_<sequence>_<frame>" in reasons["badname.png"]
    assert all(s.line is None for s in table.skipped)
    assert caplog.text.count("Skipped") == 3


def test_unknown_class_folder_and_stray_files(ck_tree):
    _png(ck_tree / "smirk" / "S003_001_00000001.png")
    _png(ck_tree / "loose.png")
    (ck_tree / "README.txt").write_text("notes")
    (ck_tree / "anger" / ".DS_Store").write_bytes(b"\0\0")
    table = readers.read_ckplus48(ck_tree)
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in table.skipped}
    assert "not a class" in reasons["smirk"] and "'smirk'" in reasons["smirk"]
    assert "not inside a class/subject folder" in reasons["loose.png"]
    assert "README.txt" not in reasons and ".DS_Store" not in reasons
    assert len(table) == 2


def test_empty_and_missing_directories(tmp_path):
    with pytest.raises(DatasetError, match=f"not found: {tmp_path / 'nope'}"):
        readers.read_ckplus48(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    for reader in (readers.read_ckplus48, readers.read_folder, readers.read_identity_folder):
        with pytest.raises(DatasetError, match=f"empty.*{tmp_path / 'empty'}"):
            reader(tmp_path / "empty")
    (tmp_path / "empty" / "anger").mkdir()
    with pytest.raises(DatasetError, match="empty"):
        readers.read_ckplus48(tmp_path / "empty")
    file = tmp_path / "file.txt"
    file.write_text("x")
    with pytest.raises(DatasetError, match="must be a directory"):
        readers.read_ferplus(file)


def test_all_images_unreadable_is_a_dataset_error(tmp_path):
    (tmp_path / "anger").mkdir()
    (tmp_path / "anger" / "S001_001_00000001.png").write_bytes(b"junk")
    with pytest.raises(DatasetError, match=r"No readable ckplus48 images.*1 inputs skipped"):
        readers.read_ckplus48(tmp_path)


def test_subject_regex_mismatch_and_bad_regex(tmp_path):
    _png(tmp_path / "anger" / "ann_1.png")
    _png(tmp_path / "anger" / "42.png")
    table = readers.read_folder(tmp_path, subject_regex=r"^([a-z]+)_")
    assert table.subject.tolist() == ["ann"]
    assert "does not match subject_regex" in table.skipped[0].reason
    with pytest.raises(ValueError, match="Invalid subject_regex"):
        readers.read_folder(tmp_path, subject_regex="(")
    with pytest.raises(ValueError, match="Unknown dataset 'xyz'"):
        readers.read_folder(tmp_path, dataset="xyz")


def _ferplus_root(tmp_path, label_text, images=("a.png", "b.png", "c.png")):
    folder = tmp_path / "data" / "FER2013Test"
    for i, name in enumerate(images):
        _png(folder / name, 50 + i)
    (folder / "label.csv").write_text(label_text)
    return tmp_path / "data"


def test_ferplus_malformed_rows(tmp_path, caplog):
    root = _ferplus_root(
        tmp_path,
        'a.png,"(0, 0, 48, 48)",1,8,0,0,0,0,0,1,0,0\n'
        'b.png,"(0, 0, 48, 48)",1,x,0,0,0,0,0,1,0,0\n'
        'c.png,"(0, 0, 48, 48)",1,2,3\n'
        '\n'
        'a.png,"(0, 0, 48, 48)",0,0,0,0,0,0,0,0,0,0\n'
        'b.png,"(0, 0, 48, 48)",1,0,0,0,0,0,0,0,6,3\n'
        'c.png,"(0, 0, 48, 48)",-1,3,0,0,0,0,0,0,0,0\n',
    )
    with caplog.at_level(logging.INFO, logger="keras_fer.data.readers"):
        table = readers.read_ferplus(root, splits="test")
    assert len(table) == 1 and table.path[0].endswith("a.png")
    np.testing.assert_allclose(table.soft_labels[0], [0.1, 0.8, 0, 0, 0, 0, 0, 0.1])
    by_line = {s.line: s.reason for s in table.skipped}
    assert set(by_line) == {2, 3, 5, 7}
    assert "non-negative integers" in by_line[2] and "non-negative integers" in by_line[7]
    assert "expected 12 columns" in by_line[3] and "Received 5" in by_line[3]
    assert by_line[5] == "no votes"
    # Row 6 (majority "unknown") is dropped by design: counted, not an error.
    assert "test: 2 valid label rows, 1 dropped" in caplog.text


def test_ferplus_missing_image_unlisted_image_and_header(tmp_path):
    root = _ferplus_root(
        tmp_path,
        "Image name,box,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
        'a.png,"(0, 0, 48, 48)",9,0,0,0,0,0,0,1,0,0\n'
        'gone.png,"(0, 0, 48, 48)",9,0,0,0,0,0,0,1,0,0\n',
        images=("a.png", "extra.png"),
    )
    table = readers.read_ferplus(root, splits=["test"])
    assert len(table) == 1
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in table.skipped}
    assert reasons == {"extra.png": "image has no row in label.csv", "gone.png": "file not found"}


def test_ferplus_unreadable_label_file_and_missing_split(tmp_path):
    root = _ferplus_root(tmp_path, "")
    (root / "FER2013Test" / "label.csv").write_bytes(b"\xff\xfe\x00bad")
    valid = root / "FER2013Valid"
    _png(valid / "v.png")
    (valid / "label.csv").write_text('v.png,"(0, 0, 48, 48)",0,0,5,0,0,0,0,0,0,0\n')
    table = readers.read_ferplus(root, splits=("valid", "test"))
    assert len(table) == 1 and table.split.tolist() == ["valid"]
    label_skips = [s for s in table.skipped if s.path.endswith("label.csv")]
    assert len(label_skips) == 1 and "cannot read FER+ label file" in label_skips[0].reason
    with pytest.raises(DatasetError, match="FER\\+ train split folder not found"):
        readers.read_ferplus(root, splits=("train",))
    with pytest.raises(DatasetError, match="No usable FER\\+ records"):
        readers.read_ferplus(root, splits=("test",))
    with pytest.raises(ValueError, match="splits must be among"):
        readers.read_ferplus(root, splits=("dev",))


def test_fer2013_csv_malformed_rows(tmp_path):
    ok = " ".join(["7"] * 2304)
    path = tmp_path / "fer2013.csv"
    path.write_text(
        "emotion,pixels,Usage\n"
        f"3,{ok},Training\n"
        f"3,{' '.join(['7'] * 2303)},Training\n"
        f"3,{ok[:-1]}x,Training\n"
        f"9,{ok},Training\n"
        f"3,{ok},Validation\n"
        f"2,{ok[:-1]}300,PublicTest\n"
        f"2,{ok}\n"
        f"5,{ok},PrivateTest\n"
    )
    table = readers.read_fer2013_csv(path)
    assert len(table) == 2 and table.images.shape == (2, 48, 48)
    assert (table.images == 7).all()
    assert table.path.tolist() == [f"{path}:2", f"{path}:9"]
    by_line = {s.line: s.reason for s in table.skipped}
    assert set(by_line) == {3, 4, 5, 6, 7, 8}
    assert "expected 2304 pixels" in by_line[3] and "Received 2303" in by_line[3]
    assert "space-separated integers" in by_line[4] and "'x'" in by_line[4]
    assert "emotion id must be 0..6" in by_line[5]
    assert "unknown Usage 'Validation'" in by_line[6]
    assert "0..255. Received 7..300" in by_line[7]
    assert "expected 3 columns" in by_line[8]
    assert all(s.path == str(path) for s in table.skipped)


def test_fer2013_csv_bad_files(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        readers.read_fer2013_csv(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DatasetError, match="empty"):
        readers.read_fer2013_csv(empty)
    no_pixels = tmp_path / "other.csv"
    no_pixels.write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match="lacks column.*pixels"):
        readers.read_fer2013_csv(no_pixels)
    only_bad = tmp_path / "bad.csv"
    only_bad.write_text("emotion,pixels\n1,1 2 3\n")
    with pytest.raises(DatasetError, match="No valid FER2013 rows.*:2: expected 2304"):
        readers.read_fer2013_csv(only_bad)


def test_fer2013_recovered_malformed_rows(tmp_path):
    root = _ferplus_root(tmp_path, "")
    csv_path = tmp_path / "recovered.csv"
    csv_path.write_text(
        "folder,image,fer2013_label,match_rmse,ambiguous\n"
        "FER2013Test,a.png,happy,1.0,0\n"
        "FER2013Test,b.png,grumpy,1.0,0\n"
        "FER2013Dev,c.png,sad,1.0,0\n"
        "FER2013Test,c.png,sad,1.0,maybe\n"
        "FER2013Test,c.png,4,1.0,1\n"
    )
    table = readers.read_fer2013_recovered(csv_path, root)
    assert len(table) == 2
    assert table.split.tolist() == ["test", "test"]
    by_line = {s.line: s.reason for s in table.skipped}
    assert set(by_line) == {3, 4, 5}
    assert "grumpy" in by_line[3] and "FER2013Dev" in by_line[4] and "maybe" in by_line[5]
    assert len(readers.read_fer2013_recovered(csv_path, root, drop_ambiguous=True)) == 1
