"""Readers on the real datasets: counts, labels, subjects, and the FER+ vote arithmetic."""

import csv
import io

import numpy as np
import pytest
from PIL import Image

from keras_fer.data import readers
from keras_fer.data.imageio import decode_gray_bytes, read_gray
from keras_fer.data.labels import CANONICAL, NO_LABEL


def _votes(label_csv):
    with open(label_csv, newline="") as fh:
        return [(row[0], np.array([int(v) for v in row[2:]])) for row in csv.reader(fh)]


def test_read_gray_and_bytes_agree(ckplus48_dir):
    path = ckplus48_dir / "anger" / "S010_004_00000017.png"
    image = read_gray(path)
    assert image.shape == (48, 48) and image.dtype == np.uint8
    np.testing.assert_array_equal(decode_gray_bytes(path.read_bytes()), image)


def test_read_gray_converts_colour_to_luminance(tmp_path):
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red -> L = 299 * 255 / 1000 = 76.2
    Image.fromarray(rgb).save(tmp_path / "red.png")
    gray = read_gray(tmp_path / "red.png")
    assert gray.shape == (4, 6)
    assert (gray == 76).all()


def test_ckplus48(ckplus48_dir):
    table = readers.read_ckplus48(ckplus48_dir)
    assert len(table) == 981
    assert table.images.shape == (981, 48, 48) and table.images.dtype == np.uint8
    assert len(table.subjects) == 118
    assert table.class_counts() == {
        "anger": 135,
        "contempt": 54,
        "disgust": 177,
        "fear": 75,
        "happiness": 207,
        "sadness": 84,
        "surprise": 249,
    }
    assert len(set(table.sequence.tolist())) == 327
    assert set(table.frame_role.tolist()) == {"peak"}
    assert table.skipped == []
    row = int(np.flatnonzero(np.char.endswith(table.path, "S010_004_00000017.png"))[0])
    assert table.subject[row] == "S010" and table.sequence[row] == "S010_004"
    assert CANONICAL[table.expression[row]] == "anger"
    np.testing.assert_array_equal(table.images[row], read_gray(table.path[row]))


def test_ckplus_neutral_and_pairs(ckplus48_dir, ckplus_neutral_dir):
    neutral = readers.read_ckplus_neutral(ckplus_neutral_dir)
    assert len(neutral) == 890
    assert len(neutral.subjects) == 123
    assert neutral.class_counts()["neutral"] == 575
    is_neutral = neutral.expression == CANONICAL.index("neutral")
    assert (neutral.frame_role[is_neutral] == "neutral").all()
    assert (neutral.frame_role[~is_neutral] == "peak").all()

    peak = readers.read_ckplus48(ckplus48_dir)
    pairs = readers.neutral_pairs(peak, neutral)
    assert pairs.shape == (981,) and pairs.dtype == np.int64
    assert len(set(peak.sequence[pairs >= 0].tolist())) == 318
    assert len(set(peak.sequence[pairs < 0].tolist())) == 9
    matched = pairs[pairs >= 0]
    np.testing.assert_array_equal(neutral.sequence[matched], peak.sequence[pairs >= 0])
    assert (neutral.frame_role[matched] == "neutral").all()


def test_identity_folder(orl_dir):
    table = readers.read_identity_folder(orl_dir)
    assert table.images.shape == (400, 112, 92)
    assert len(table.subjects) == 40
    assert (table.expression == NO_LABEL).all()
    assert table.class_counts() == {}
    assert table.subject[0] == "s1" and table.subject[10] == "s2"  # natural order
    assert table.skipped == []  # the README at the root is not an image


def test_identity_folder_resize(orl_dir):
    table = readers.read_identity_folder(orl_dir, size=(56, 46))
    assert table.images.shape == (400, 56, 46)


def test_ferplus_test_split(ferplus_dir):
    label_csv = ferplus_dir / "FER2013Test" / "label.csv"
    votes = _votes(label_csv)
    assert len(votes) == 3573
    kept = [(name, v) for name, v in votes if v.argmax() < 8]
    table = readers.read_ferplus(ferplus_dir, splits=("test",))
    assert len(table) == len(kept) == 3545
    assert set(table.split.tolist()) == {"test"}
    assert table.soft_labels.shape == (3545, 8) and table.soft_labels.dtype == np.float32
    np.testing.assert_allclose(table.soft_labels.sum(axis=1), 1.0, rtol=1e-6)
    assert table.skipped == []
    assert len(table.subjects) == 0
    # First row by hand: votes 0,0,0,0,2,1,0,7 (+0,0) -> contempt, soft 0.2/0.1/0.7.
    assert table.path[0].endswith("fer0032220.png")
    assert CANONICAL[table.expression[0]] == "contempt"
    np.testing.assert_allclose(table.soft_labels[0], [0, 0, 0, 0, 0.2, 0.1, 0, 0.7], atol=1e-6)
    np.testing.assert_array_equal(table.expression, [v.argmax() for _, v in kept])


def test_ferplus_limit_and_summary(ferplus_dir, caplog):
    caplog.set_level("INFO", logger="keras_fer.data.readers")
    table = readers.read_ferplus(ferplus_dir, splits=("valid", "train"), limit=50)
    dropped = {}
    for split, folder in (("valid", "FER2013Valid"), ("train", "FER2013Train")):
        votes = _votes(ferplus_dir / folder / "label.csv")[:50]
        dropped[split] = sum(v.argmax() >= 8 for _, v in votes)
        assert (table.split == split).sum() == 50 - dropped[split]
    assert table.split[0] == "valid"  # splits are read in the order asked
    assert f"valid: 50 valid label rows, {dropped['valid']} dropped" in caplog.text


def test_fer2013_recovered(fer2013_recovered_csv, ferplus_dir):
    table = readers.read_fer2013_recovered(
        fer2013_recovered_csv, ferplus_dir, splits=("test",), limit=200
    )
    assert len(table) == 200 and set(table.split.tolist()) == {"test"}
    assert set(table.expression.tolist()) <= {CANONICAL.index(n) for n in CANONICAL[:7]}
    assert table.soft_labels is None
    with open(fer2013_recovered_csv, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["folder"] == "FER2013Test"][:200]
    names = {"angry": "anger", "sad": "sadness", "happy": "happiness"}
    expected = [CANONICAL.index(names.get(r["fer2013_label"], r["fer2013_label"])) for r in rows]
    np.testing.assert_array_equal(table.expression, expected)


def test_fer2013_recovered_drop_ambiguous(fer2013_recovered_csv):
    with open(fer2013_recovered_csv, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["folder"] == "FER2013Valid"]
    ambiguous = sum(r["ambiguous"] == "1" for r in rows)
    assert ambiguous > 0
    # ferplus_root defaults to data/ next to the CSV.
    table = readers.read_fer2013_recovered(
        fer2013_recovered_csv, splits=("valid",), drop_ambiguous=True
    )
    assert len(table) == len(rows) - ambiguous
    assert set(table.split.tolist()) == {"valid"}


def test_fer2013_csv_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, size=(3, 48, 48), dtype=np.uint8)
    text = io.StringIO()
    text.write("emotion,pixels,Usage\n")
    for emotion, face, usage in zip((0, 3, 6), faces, ("Training", "PublicTest", "PrivateTest")):
        text.write(f"{emotion},{' '.join(map(str, face.ravel()))},{usage}\n")
    path = tmp_path / "fer2013.csv"
    path.write_text(text.getvalue())
    table = readers.read_fer2013_csv(path)
    np.testing.assert_array_equal(table.images, faces)
    assert [CANONICAL[e] for e in table.expression] == ["anger", "happiness", "neutral"]
    assert table.split.tolist() == ["train", "valid", "test"]
    assert table.path.tolist() == [f"{path}:{i}" for i in (2, 3, 4)]
    assert table.skipped == []


def test_folder_with_subject_regex(tmp_path):
    for cls, names in {"happiness": ["ann_01.png", "bob_01.png"], "anger": ["ann_02.jpg"]}.items():
        (tmp_path / cls).mkdir()
        for i, name in enumerate(names):
            Image.fromarray(np.full((10, 8), 10 * i, dtype=np.uint8)).save(tmp_path / cls / name)
    table = readers.read_folder(tmp_path, subject_regex=r"^(?P<subject>[a-z]+)_")
    assert table.images.shape == (3, 10, 8)
    assert table.class_counts() == {"happiness": 2, "anger": 1}
    assert sorted(table.subject.tolist()) == ["ann", "ann", "bob"]
    assert readers.read_folder(tmp_path, subject_regex=r"[a-z]+").subjects.tolist() == [
        "ann",
        "bob",
    ]


def test_folder_dataset_mapping_and_mixed_sizes(tmp_path):
    (tmp_path / "happy").mkdir()
    Image.fromarray(np.zeros((10, 8), np.uint8)).save(tmp_path / "happy" / "a.png")
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "happy" / "b.png")
    table = readers.read_folder(tmp_path, dataset="ckplus48")
    assert table.images.dtype == object and len(table) == 2
    assert [im.shape for im in table.images] == [(10, 8), (12, 12)]
    assert CANONICAL[table.expression[0]] == "happiness"
    resized = readers.read_folder(tmp_path, dataset="ckplus48", size=16)
    assert resized.images.shape == (2, 16, 16) and resized.images.dtype == np.uint8


def test_load_registry(ckplus48_dir):
    assert set(readers.READERS) >= {
        "ckplus48",
        "ckplus_neutral",
        "ferplus",
        "fer2013_csv",
        "folder",
        "identity_folder",
    }
    table = readers.load("folder", ckplus48_dir, dataset="ckplus48", subject_regex=r"^(S\d+)_")
    assert len(table) == 981 and len(table.subjects) == 118
    with pytest.raises(ValueError, match="Unknown dataset format 'nope'"):
        readers.load("nope", ckplus48_dir)
