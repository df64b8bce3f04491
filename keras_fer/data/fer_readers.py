"""FER+ and FER2013 readers (CSV label files and the FER+ image folders); see
:mod:`keras_fer.data.readers` for the policy on bad input, shared by every reader, and
:mod:`keras_fer.data.ferplus_mosaic` for the two layouts of a FER+ split folder."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm.auto import tqdm

from keras_fer.data._reader_base import (
    DatasetError,
    PathLike,
    Size,
    _build,
    _Entry,
    _first_skipped,
    _is_image_name,
    _listdir,
    _require_dir,
    _require_file,
    _skip,
    log,
)
from keras_fer.data.ferplus_mosaic import find_mosaic, mosaic_tiles
from keras_fer.data.labels import CANONICAL, FER2013_IDS, NO_LABEL, canonical_index
from keras_fer.data.records import RecordTable, Skipped

FERPLUS_FOLDERS: Dict[str, str] = {
    "train": "FER2013Train",
    "valid": "FER2013Valid",
    "test": "FER2013Test",
}
"""FER+ split name -> folder under the FER+ data root."""

FERPLUS_VOTE_COLUMNS: Tuple[str, ...] = CANONICAL + ("unknown", "NF")
"""The ten vote columns of a FER+ ``label.csv`` (after ``image`` and ``box``), in file order."""

FER2013_USAGE: Dict[str, str] = {"training": "train", "publictest": "valid", "privatetest": "test"}
"""FER2013 ``Usage`` column -> split (PublicTest is FER+ Valid, PrivateTest is FER+ Test)."""


def _read_text(path: Path, skipped: List[Skipped], what: str) -> Optional[str]:
    """The file's UTF-8 text without a byte-order mark; a byte that is not UTF-8 stays in the
    text as a lone surrogate, so that :func:`_csv_rows` rejects its row, not the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        _skip(skipped, path, f"{what} is missing")
        return None
    except OSError as err:
        _skip(skipped, path, f"cannot read {what}: {err}")
        return None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        _skip(skipped, path, f"cannot read {what}: UTF-16 text; save it as UTF-8")
        return None
    return data.decode("utf-8-sig", errors="surrogateescape")


def _bad_byte(row: List[str]) -> Optional[str]:
    for field in row:
        for char in field:
            if "\udc80" <= char <= "\udcff":
                return f"0x{ord(char) - 0xDC00:02x}"
    return None


def _csv_rows(text: str, path: Path, skipped: List[Skipped]):
    """Yields ``(line, row)`` of non-blank CSV rows; a row the csv module rejects, or that
    holds a byte that is not UTF-8, is skipped."""
    reader = csv.reader(io.StringIO(text, newline=""))
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            _skip(skipped, path, f"malformed CSV row: {err}", reader.line_num)
            continue
        bad = _bad_byte(row)
        if bad is not None:
            _skip(skipped, path, f"not UTF-8 text (byte {bad})", reader.line_num)
            continue
        if any(field.strip() for field in row):
            yield reader.line_num, row


def _csv_with_header(path: Path, skipped: List[Skipped], what: str):
    """``(header row, iterator of the remaining (line, row))`` of a CSV file that must be
    readable and hold at least one row; raises :class:`DatasetError` naming ``what``."""
    text = _read_text(path, skipped, what)
    if text is None:
        raise DatasetError(f"Cannot read {what} {path}: {skipped[-1].reason}")
    rows = _csv_rows(text, path, skipped)
    header = next(rows, None)
    if header is None:
        raise DatasetError(f"{what[0].upper()}{what[1:]} is empty: {path}")
    return header[1], rows


def _label_rows(text: str, path: Path, skipped: List[Skipped]) -> List[Tuple[int, List[str]]]:
    """``(line, row)`` of a FER+ ``label.csv``'s face rows: one per face (and per mosaic
    tile), without blank lines or an optional header row."""
    rows = list(_csv_rows(text, path, skipped))
    if rows and rows[0][0] == 1 and rows[0][1][0].strip().lower() in ("image", "image name"):
        rows = rows[1:]
    return rows


def _parse_votes(row: List[str]) -> np.ndarray:
    if len(row) != 2 + len(FERPLUS_VOTE_COLUMNS):
        raise ValueError(
            f"expected {2 + len(FERPLUS_VOTE_COLUMNS)} columns (image, box, "
            f"{', '.join(FERPLUS_VOTE_COLUMNS)}). Received {len(row)} columns"
        )
    if not row[0].strip():
        raise ValueError("empty image name")
    try:
        votes = np.array([int(v) for v in row[2:]], dtype=np.int64)
    except ValueError as err:
        raise ValueError(f"votes must be non-negative integers. Received {row[2:]}") from err
    if (votes < 0).any():
        raise ValueError(f"votes must be non-negative integers. Received {row[2:]}")
    if votes.sum() == 0:
        raise ValueError("no votes")
    return votes


def _check_splits(splits: Sequence[str]) -> Tuple[str, ...]:
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    unknown = [s for s in splits if s not in FERPLUS_FOLDERS]
    if unknown or not splits:
        raise ValueError(f"splits must be among {tuple(FERPLUS_FOLDERS)}. Received: {splits}")
    return splits


def read_ferplus(
    root: PathLike,
    splits: Sequence[str] = ("train", "valid", "test"),
    limit: Optional[int] = None,
    size: Size = None,
) -> RecordTable:
    """Reads FER+: ``<root>/FER2013{Train,Valid,Test}/label.csv`` plus the faces.

    Each split folder holds its faces either as one image per face or as one mosaic
    (``faces.png`` / ``faces.jpg``, see :mod:`keras_fer.data.ferplus_mosaic`), detected from
    the files present. Either way a record's ``path`` is ``<split folder>/<image name from
    label.csv>`` (for a mosaic tile: the face's name, not a file on disk).

    ``label.csv`` has no header; its columns are ``image, box`` and the ten crowd vote counts
    ``neutral .. contempt, unknown, NF``. The majority label is the argmax over all ten
    columns (ties go to the earlier column); images whose top vote is ``unknown`` or ``NF``
    are dropped and counted in a logged summary (they are not errors). ``soft_labels`` is the
    vote distribution over the eight emotion columns, summing to 1.

    Args:
        root: the FER+ data folder (``.../ferplus/data``).
        splits: which of ``train``, ``valid``, ``test`` to read, in this order.
        limit: read only the first ``limit`` valid rows of each split's ``label.csv`` (tests).
        size: optional ``int`` or ``(height, width)`` to resize every image to.

    Returns:
        A RecordTable named ``ferplus`` with ``split`` set and no subjects.

    Raises:
        DatasetError: ``root`` or a split folder is missing, a split folder holds no faces,
            a mosaic is unreadable, of the wrong size or does not fit its ``label.csv``, or
            nothing could be read.
        ValueError: an unknown split name.
    """
    root = _require_dir(root, "FER+ data directory")
    splits = _check_splits(splits)
    to_canonical = [canonical_index(c, "ferplus") for c in FERPLUS_VOTE_COLUMNS[:8]]
    entries: List[_Entry] = []
    skipped: List[Skipped] = []
    for split in splits:
        folder = _require_dir(root / FERPLUS_FOLDERS[split], f"FER+ {split} split folder")
        mosaic = find_mosaic(folder)
        label_file = folder / "label.csv"
        text = _read_text(label_file, skipped, "FER+ label file")
        if text is None:
            continue
        label_rows = _label_rows(text, label_file, skipped)
        tiles = None if mosaic is None else mosaic_tiles(mosaic, len(label_rows))
        listed, dropped, rows = set(), 0, 0
        for tile, (line, row) in enumerate(label_rows):
            if limit is not None and rows >= limit:
                break
            # An image whose row is malformed is reported once, for its row.
            listed.add(row[0].strip())
            try:
                votes = _parse_votes(row)
            except ValueError as err:
                _skip(skipped, label_file, str(err), line)
                continue
            rows += 1
            image = row[0].strip()
            top = int(np.argmax(votes))
            if top >= 8:
                dropped += 1
                continue
            soft = np.zeros(len(CANONICAL), dtype=np.float32)
            soft[to_canonical] = votes[:8] / votes[:8].sum()
            entries.append(_Entry(str(folder / image), to_canonical[top], split=split, soft=soft,
                                  image=None if tiles is None else tiles[tile]))
        if limit is None and mosaic is None:
            for file in _listdir(folder):
                if _is_image_name(file) and file.name not in listed:
                    _skip(skipped, file, f"image has no row in {label_file.name}")
        log.info(
            "FER+ %s: %d valid label rows, %d dropped (majority vote unknown/NF)",
            split,
            rows,
            dropped,
        )
    if not entries:
        raise DatasetError(f"No usable FER+ records in {root}{_first_skipped(skipped)}")
    return _build(entries, skipped, "ferplus", root, size)


def _fer2013_label(value: str) -> int:
    value = value.strip()
    if value.isdigit():
        if int(value) >= len(FER2013_IDS):
            raise ValueError(f"FER2013 emotion id must be 0..6. Received {value!r}")
        value = FER2013_IDS[int(value)]
    return canonical_index(value, "fer2013")


def _parse_pixels(text: str) -> np.ndarray:
    tokens = text.split()
    if len(tokens) != 48 * 48:
        raise ValueError(f"expected 2304 pixels (48x48). Received {len(tokens)}")
    try:
        pixels = np.array(tokens, dtype=np.int64)
    except ValueError as err:
        raise ValueError(f"pixels must be space-separated integers ({err})") from err
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"pixel values must be in 0..255. Received {pixels.min()}..{pixels.max()}")
    return pixels


def _header_index(header: List[str], path: Path, required: Sequence[str]) -> Dict[str, int]:
    columns = {h.strip().lower(): i for i, h in enumerate(header)}
    missing = [c for c in required if c not in columns]
    if missing:
        shown = [h if len(h) <= 24 else h[:21] + "..." for h in header[:6]]
        more = f" + {len(header) - 6} more field(s)" if len(header) > 6 else ""
        raise DatasetError(f"{path} lacks column(s) {missing}: its first row must be the header "
                           f"(e.g. emotion,pixels,Usage). Received first row: {shown}{more}")
    return columns


def read_fer2013_csv(path: PathLike) -> RecordTable:
    """Reads the FER2013 CSV (``emotion,pixels,Usage``; 48x48 pixels, space separated).

    ``emotion`` (ids 0..6 in ``labels.FER2013_IDS`` order) and ``Usage`` are optional columns:
    without them records get ``NO_LABEL`` and split ``""``. Usage ``Training`` /
    ``PublicTest`` / ``PrivateTest`` becomes split ``train`` / ``valid`` / ``test``. A
    malformed row (wrong pixel count, non-integer or out-of-range pixel, bad emotion id,
    unknown Usage) is skipped with its line number.

    Args:
        path: the CSV file.

    Returns:
        A RecordTable named ``fer2013`` of ``(N, 48, 48)`` images, ``path`` = ``<csv>:<line>``.

    Raises:
        DatasetError: the file is missing, unreadable, lacks a ``pixels`` column, or has no
            valid row.
    """
    path = _require_file(path, "FER2013 CSV")
    skipped: List[Skipped] = []
    header, rows = _csv_with_header(path, skipped, "FER2013 CSV")
    columns = _header_index(header, path, ["pixels"])
    images, expressions, splits, paths = [], [], [], []
    for line, row in tqdm(rows, desc="reading fer2013", unit="row", disable=None):
        try:
            if len(row) != len(header):
                raise ValueError(f"expected {len(header)} columns. Received {len(row)}")
            pixels = _parse_pixels(row[columns["pixels"]])
            expression = NO_LABEL
            if "emotion" in columns:
                expression = _fer2013_label(row[columns["emotion"]])
            split = ""
            if "usage" in columns:
                usage = row[columns["usage"]].strip()
                if usage.lower() not in FER2013_USAGE:
                    raise ValueError(f"unknown Usage {usage!r}. Known: {sorted(FER2013_USAGE)}")
                split = FER2013_USAGE[usage.lower()]
        except ValueError as err:
            _skip(skipped, path, str(err), line)
            continue
        images.append(pixels.reshape(48, 48).astype(np.uint8))
        expressions.append(expression)
        splits.append(split)
        paths.append(f"{path}:{line}")
    if not images:
        raise DatasetError(f"No valid FER2013 rows in {path}{_first_skipped(skipped)}")
    n = len(images)
    return RecordTable(
        images=np.stack(images),
        expression=expressions,
        subject=[""] * n,
        sequence=[""] * n,
        frame_role=["unknown"] * n,
        path=paths,
        split=splits,
        skipped=skipped,
        name="fer2013",
    )


def read_fer2013_recovered(
    csv_path: PathLike,
    ferplus_root: Optional[PathLike] = None,
    drop_ambiguous: bool = False,
    splits: Sequence[str] = ("train", "valid", "test"),
    limit: Optional[int] = None,
    size: Size = None,
) -> RecordTable:
    """Reads the FER+ faces with their original FER2013 7-class labels.

    The faces come from the FER+ split folders in either layout (see :func:`read_ferplus`);
    a mosaic's tiles are found by image name through the split's ``label.csv``.

    ``csv_path`` has columns ``folder,image,fer2013_label,match_rmse,ambiguous`` (label names
    ``angry, disgust, ...`` or ids 0..6). ``FER2013Train`` / ``FER2013Valid`` (PublicTest) /
    ``FER2013Test`` (PrivateTest) become split ``train`` / ``valid`` / ``test``.

    Args:
        csv_path: ``.../ferplus/fer2013_original_labels_recovered.csv``.
        ferplus_root: the FER+ data folder; defaults to ``data/`` next to ``csv_path``.
        drop_ambiguous: leave out rows flagged ``ambiguous=1`` (near-duplicate matches).
        splits: which splits to read.
        limit: read only the first ``limit`` rows of each split (for tests).
        size: optional ``int`` or ``(height, width)`` to resize every image to.

    Returns:
        A RecordTable named ``fer2013_recovered``.

    Raises:
        DatasetError: a path is missing, the CSV lacks a required column, a split folder
            holds no faces, a mosaic is unreadable, of the wrong size or does not fit its
            ``label.csv`` (or that file is unreadable), or nothing is read.
    """
    csv_path = _require_file(csv_path, "FER2013 recovered-labels CSV")
    root = Path(ferplus_root) if ferplus_root is not None else csv_path.parent / "data"
    root = _require_dir(root, "FER+ data directory")
    splits = _check_splits(splits)
    split_of = {folder.lower(): split for split, folder in FERPLUS_FOLDERS.items()}
    skipped: List[Skipped] = []
    header, rows = _csv_with_header(csv_path, skipped, "recovered-labels CSV")
    required = ["folder", "image", "fer2013_label", "ambiguous"]
    columns = _header_index(header, csv_path, required)
    entries: List[_Entry] = []
    tiles_by_name: Dict[str, Optional[Dict[str, np.ndarray]]] = {}
    taken = {s: 0 for s in splits}
    ambiguous = 0
    for line, row in rows:
        try:
            if len(row) != len(header):
                raise ValueError(f"expected {len(header)} columns. Received {len(row)}")
            folder = row[columns["folder"]].strip()
            if folder.lower() not in split_of:
                known = list(FERPLUS_FOLDERS.values())
                raise ValueError(f"unknown folder {folder!r}. Known: {known}")
            expression = _fer2013_label(row[columns["fer2013_label"]])
            flag = row[columns["ambiguous"]].strip()
            if flag not in ("0", "1"):
                raise ValueError(f"ambiguous must be 0 or 1. Received {flag!r}")
        except ValueError as err:
            _skip(skipped, csv_path, str(err), line)
            continue
        split = split_of[folder.lower()]
        if split not in taken or (limit is not None and taken[split] >= limit):
            continue
        taken[split] += 1
        if flag == "1" and drop_ambiguous:
            ambiguous += 1
            continue
        if split not in tiles_by_name:
            tiles_by_name[split] = _mosaic_faces(root / FERPLUS_FOLDERS[split], split, skipped)
        image = root / FERPLUS_FOLDERS[split] / row[columns["image"]].strip()
        tile = None
        if tiles_by_name[split] is not None:
            tile = tiles_by_name[split].get(image.name)
            if tile is None:
                _skip(skipped, image, "image has no row in label.csv (no tile in the mosaic)")
                continue
        entries.append(_Entry(str(image), expression, split=split, image=tile))
    if drop_ambiguous:
        log.info("FER2013 recovered labels: dropped %d ambiguous rows", ambiguous)
    if not entries:
        raise DatasetError(f"No usable rows in {csv_path}{_first_skipped(skipped)}")
    return _build(entries, skipped, "fer2013_recovered", root, size)


def _mosaic_faces(
    folder: Path, split: str, skipped: List[Skipped]
) -> Optional[Dict[str, np.ndarray]]:
    """Image name -> face of a split folder's mosaic; ``None`` for one image per face."""
    folder = _require_dir(folder, f"FER+ {split} split folder")
    mosaic = find_mosaic(folder)
    if mosaic is None:
        return None
    label_file = folder / "label.csv"
    text = _read_text(label_file, skipped, "FER+ label file")
    if text is None:
        raise DatasetError(
            f"Cannot place the faces of mosaic {mosaic}: {label_file}: {skipped[-1].reason}"
        )
    rows = _label_rows(text, label_file, skipped)
    tiles = mosaic_tiles(mosaic, len(rows))
    faces: Dict[str, np.ndarray] = {}
    for tile, (_, row) in zip(tiles, rows):
        faces.setdefault(row[0].strip(), tile)
    return faces
