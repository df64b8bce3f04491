"""FER+ split folders in both layouts: the mosaics in ``$FER_DATA_DIR``, the same faces
written out one PNG per face, and bad mosaics (wrong size, truncated, tile count mismatch)."""

import csv
import shutil

import numpy as np
import pytest
from PIL import Image

from keras_fer.data import readers
from keras_fer.data.ferplus_mosaic import TILE, TILES_PER_ROW, mosaic_tiles, write_mosaic
from keras_fer.data.readers import DatasetError

ROW = '"(0, 0, 48, 48)",{}\n'


def _label_names(label_csv):
    with open(label_csv, newline="") as fh:
        return [row[0] for row in csv.reader(fh) if row]


def _split(folder, faces, votes=None, mosaic="faces.png", **save_kwargs):
    """A FER+ split folder: ``label.csv`` of ``len(faces)`` rows (``votes`` or one
    happiness vote each) and the faces as ``mosaic`` (or one PNG per face if ``None``)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, _ in enumerate(faces):
        vote = votes[i] if votes is not None else "0,1,0,0,0,0,0,0,0,0"
        lines.append(f"fer{i:07d}.png," + ROW.format(vote))
    (folder / "label.csv").write_text("".join(lines))
    if mosaic is None:
        for i, face in enumerate(faces):
            Image.fromarray(face).save(folder / f"fer{i:07d}.png")
    else:
        write_mosaic(faces, folder / mosaic, **save_kwargs)
    return folder


def _faces(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, TILE, TILE), dtype=np.uint8)


def test_test_mosaic_holds_one_tile_per_label_row_and_is_decoded_once(ferplus_dir):
    folder = ferplus_dir / "FER2013Test"
    names = _label_names(folder / "label.csv")
    with Image.open(folder / "faces.png") as image:
        width, height = image.size
    assert width == TILES_PER_ROW * TILE and height == TILE * -(-len(names) // TILES_PER_ROW)
    tiles = mosaic_tiles(folder / "faces.png", len(names))
    assert tiles.shape == (3573, 48, 48) and not tiles.flags.writeable
    assert tiles[-1].std() > 10  # the last face is a face, not padding
    full = np.asarray(Image.open(folder / "faces.png"))
    assert not full[-TILE:, (len(names) % TILES_PER_ROW) * TILE:].any()  # black padding
    # Cached: the second call shares the first one's pixels.
    assert np.shares_memory(mosaic_tiles(folder / "faces.png", len(names)), tiles)
    table = readers.read_ferplus(ferplus_dir, splits=("test",))
    row = {name: i for i, name in enumerate(names)}
    for k in (0, 1, 1000, len(table) - 1):
        name = table.path[k].rsplit("/", 1)[-1]
        np.testing.assert_array_equal(table.images[k], tiles[row[name]])


@pytest.fixture(scope="module")
def per_image_root(ferplus_dir, tmp_path_factory):
    """The real Test split written out one PNG per face, as generate_training_data.py does."""
    root = tmp_path_factory.mktemp("ferplus_png") / "data"
    folder = root / "FER2013Test"
    folder.mkdir(parents=True)
    source = ferplus_dir / "FER2013Test"
    shutil.copy(source / "label.csv", folder / "label.csv")
    names = _label_names(source / "label.csv")
    for name, face in zip(names, mosaic_tiles(source / "faces.png", len(names))):
        Image.fromarray(face).save(folder / name)
    return root


def test_per_image_layout_reads_what_the_mosaic_reads(ferplus_dir, per_image_root):
    mosaic = readers.read_ferplus(ferplus_dir, splits=("test",))
    pngs = readers.read_ferplus(per_image_root, splits=("test",))
    assert len(pngs) == len(mosaic) == 3545 and pngs.skipped == []
    np.testing.assert_array_equal(pngs.images, mosaic.images)  # Test is lossless
    np.testing.assert_array_equal(pngs.expression, mosaic.expression)
    np.testing.assert_array_equal(pngs.soft_labels, mosaic.soft_labels)
    # Records keep label.csv's image names in both layouts.
    assert [p.rsplit("/", 1)[-1] for p in pngs.path] == [p.rsplit("/", 1)[-1] for p in mosaic.path]
    assert pngs.path[0] == str(per_image_root / "FER2013Test" / "fer0032220.png")


def test_fer2013_recovered_joins_both_layouts(fer2013_recovered_csv, ferplus_dir, per_image_root):
    mosaic = readers.read_fer2013_recovered(fer2013_recovered_csv, ferplus_dir, splits=("test",))
    pngs = readers.read_fer2013_recovered(fer2013_recovered_csv, per_image_root, splits=("test",))
    assert len(pngs) == len(mosaic) == 3573 and pngs.skipped == mosaic.skipped == []
    np.testing.assert_array_equal(pngs.images, mosaic.images)
    np.testing.assert_array_equal(pngs.expression, mosaic.expression)


def test_small_mosaic_padding_and_jpeg(tmp_path):
    faces = _faces(129)  # two rows of tiles: 127 padding tiles in the last
    _split(tmp_path / "FER2013Test", faces)
    _split(tmp_path / "FER2013Train", faces[:5], mosaic="faces.jpg", quality=85)
    table = readers.read_ferplus(tmp_path, splits=("test", "train"))
    assert len(table) == 134 and table.skipped == []
    np.testing.assert_array_equal(table.images[:129], faces)
    # JPEG is lossy: close to, not equal to, the faces (noise is JPEG's worst case).
    assert 0 < np.abs(table.images[129:].astype(int) - faces[:5]).mean() < 40
    assert table.path[129] == str(tmp_path / "FER2013Train" / "fer0000000.png")


def test_mosaic_wins_over_per_face_files_and_limit_keeps_the_tile_order(tmp_path):
    faces = _faces(10)
    folder = _split(tmp_path / "FER2013Test", faces, mosaic=None)
    write_mosaic(faces[::-1], folder / "faces.png")
    votes = ["0,1,0,0,0,0,0,0,0,0"] * 10
    votes[0] = "0,0,0,0,0,0,0,0,5,0"  # majority unknown: dropped, but it keeps its tile
    (folder / "label.csv").write_text(
        "image,box,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
        + "\n".join(f"fer{i:07d}.png," + ROW.format(v) for i, v in enumerate(votes))
    )
    table = readers.read_ferplus(tmp_path, splits="test", limit=4)
    np.testing.assert_array_equal(table.images, faces[::-1][1:4])
    assert table.skipped == []  # the per-face PNGs beside the mosaic are not inputs


def test_split_folder_without_faces_or_with_two_mosaics(tmp_path):
    folder = _split(tmp_path / "FER2013Test", _faces(3))
    (folder / "faces.png").unlink()
    with pytest.raises(DatasetError, match="FER2013Test holds no faces: expected a mosaic"):
        readers.read_ferplus(tmp_path, splits="test")
    csv_path = tmp_path / "recovered.csv"
    csv_path.write_text("folder,image,fer2013_label,match_rmse,ambiguous\n"
                        "FER2013Test,fer0000000.png,happy,1.0,0\n")
    with pytest.raises(DatasetError, match="holds no faces"):
        readers.read_fer2013_recovered(csv_path, tmp_path)
    write_mosaic(_faces(3), folder / "faces.png")
    write_mosaic(_faces(3), folder / "faces.jpg")
    with pytest.raises(DatasetError, match="two mosaics"):
        readers.read_ferplus(tmp_path, splits="test")


@pytest.mark.parametrize("width,height", [(6000, 48), (6144, 50), (48, 48)])
def test_mosaic_of_the_wrong_size(tmp_path, width, height):
    folder = _split(tmp_path / "FER2013Test", _faces(1))
    Image.fromarray(np.zeros((height, width), np.uint8)).save(folder / "faces.png")
    with pytest.raises(DatasetError, match=f"must be 6144 pixels wide .*Received: {width}x"
                                           f"{height}"):
        readers.read_ferplus(tmp_path, splits="test")


@pytest.mark.parametrize("name", ["faces.png", "faces.jpg"])
def test_truncated_mosaic(tmp_path, name):
    folder = _split(tmp_path / "FER2013Test", _faces(200), mosaic=name)
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=f"Cannot read FER\\+ mosaic .*{name}: corrupt or "
                                           "truncated"):
        readers.read_ferplus(tmp_path, splits="test")


@pytest.mark.parametrize("faces,rows", [(129, 1), (128, 2), (3, 2)])
def test_mosaic_tile_count_does_not_match_label_csv(tmp_path, faces, rows):
    folder = _split(tmp_path / "FER2013Test", _faces(faces))
    write_mosaic(_faces(rows * TILES_PER_ROW), folder / "faces.png")
    message = (f"room for {rows * TILES_PER_ROW} faces \\({rows} rows of 128 tiles\\), but its "
               f"label.csv lists {faces} faces")
    with pytest.raises(DatasetError, match=message):
        readers.read_ferplus(tmp_path, splits="test")
    csv_path = tmp_path / "recovered.csv"
    csv_path.write_text("folder,image,fer2013_label,match_rmse,ambiguous\n"
                        "FER2013Test,fer0000000.png,happy,1.0,0\n")
    with pytest.raises(DatasetError, match=message):
        readers.read_fer2013_recovered(csv_path, tmp_path)


def test_fer2013_recovered_on_a_mosaic_skips_names_without_a_row(tmp_path):
    folder = _split(tmp_path / "FER2013Valid", _faces(3))
    csv_path = tmp_path / "recovered.csv"
    csv_path.write_text("folder,image,fer2013_label,match_rmse,ambiguous\n"
                        "FER2013Valid,fer0000002.png,sad,1.0,0\n"
                        "FER2013Valid,fer0000009.png,sad,1.0,0\n")
    table = readers.read_fer2013_recovered(csv_path, tmp_path)
    np.testing.assert_array_equal(table.images, _faces(3)[2:])
    assert [s.reason for s in table.skipped] == [
        "image has no row in label.csv (no tile in the mosaic)"]
    (folder / "label.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DatasetError, match="Cannot place the faces of mosaic"):
        readers.read_fer2013_recovered(csv_path, tmp_path)
