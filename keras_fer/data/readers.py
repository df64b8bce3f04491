"""Dataset readers: one function per on-disk layout, each returning a :class:`RecordTable`.

Every reader maps its dataset's label names to canonical indices (``labels.CANONICAL``) and
follows one policy for bad input:

- a corrupt, truncated or non-image file, an unreadable label file, or a malformed label or
  CSV row becomes a :class:`~keras_fer.data.records.Skipped` entry in ``table.skipped``
  (with the line number for rows) and a logged warning: never a crash, never a silent drop;
- a missing dataset path, or one that yields no usable record at all, raises one
  :class:`DatasetError` naming the path.

Hidden files (names starting with ``.``, such as ``.DS_Store``) are not dataset inputs and are
ignored. Images keep their stored size: the ``images`` column is a dense ``(N, H, W)`` array
when all share one size and an object array otherwise; pass ``size=`` to resize every image
to one size (bilinear) at read time instead.

``load(format, path, **kw)`` dispatches through :data:`READERS` by name.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from keras_fer.data.imageio import ImageReadError, read_gray
from keras_fer.data.labels import (
    CANONICAL,
    DATASET_LABELS,
    FER2013_IDS,
    NO_LABEL,
    canonical_index,
)
from keras_fer.data.records import RecordTable, Skipped

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
Size = Union[int, Tuple[int, int], None]

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

_IMAGE_SUFFIXES = frozenset(Image.registered_extensions())
_CK_FILENAME = re.compile(r"^(S\d+)_(\d+)_(\d+)\.[A-Za-z0-9]+$")


class DatasetError(Exception):
    """A dataset path that is missing, is of the wrong kind, or holds no usable records."""


@dataclasses.dataclass
class _Entry:
    """One record waiting for its image to be decoded."""

    path: str
    expression: int
    subject: str = ""
    sequence: str = ""
    frame_role: str = "unknown"
    split: str = ""
    soft: Optional[np.ndarray] = None


# --------------------------------------------------------------------------- shared helpers


def _natural_key(text: str) -> list:
    # s2 before s10, and frame 9 before frame 10.
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def _listdir(path: Path) -> List[Path]:
    return sorted(
        (p for p in path.iterdir() if not p.name.startswith(".")),
        key=lambda p: _natural_key(p.name),
    )


def _require_dir(root: PathLike, what: str) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(f"{what} not found: {path}")
    if not path.is_dir():
        raise DatasetError(f"{what} must be a directory. Received a file: {path}")
    return path


def _require_file(path: PathLike, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"{what} not found: {path}")
    if not path.is_file():
        raise DatasetError(f"{what} must be a file. Received a directory: {path}")
    return path


def _skip(skipped: List[Skipped], path: PathLike, reason: str, line: Optional[int] = None):
    item = Skipped(str(path), reason, line)
    skipped.append(item)
    log.warning("Skipped %s", item)


def _target_size(size: Size) -> Optional[Tuple[int, int]]:
    if size is None:
        return None
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be positive (height, width). Received: size={size}")
    return int(height), int(width)


def _try_read(path: str) -> Union[np.ndarray, ImageReadError]:
    try:
        return read_gray(path)
    except ImageReadError as err:
        return err


def _decode_all(paths: Sequence[str], desc: str) -> list:
    # Pillow releases the GIL while inflating PNGs and the rest is file I/O, so threads
    # give a real speed-up on the 35k-file FER+ folders.
    workers = min(16, 4 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(_try_read, paths)
        return list(tqdm(results, total=len(paths), desc=desc, unit="img", disable=None))


def _stack(images: List[np.ndarray], size: Optional[Tuple[int, int]]) -> np.ndarray:
    if size is not None:
        height, width = size
        images = [
            im
            if im.shape == size
            else np.asarray(Image.fromarray(im).resize((width, height), Image.BILINEAR))
            for im in images
        ]
    if len({im.shape for im in images}) == 1:
        return np.stack(images).astype(np.uint8, copy=False)
    array = np.empty(len(images), dtype=object)
    for i, im in enumerate(images):
        array[i] = im
    return array


def _first_skipped(skipped: List[Skipped], n: int = 3) -> str:
    if not skipped:
        return ""
    shown = "; ".join(str(s) for s in skipped[:n])
    return f" ({len(skipped)} inputs skipped, first: {shown})"


def _build(
    entries: List[_Entry], skipped: List[Skipped], name: str, root: Path, size: Size
) -> RecordTable:
    """Decodes the entries' images and assembles the table; unreadable images are skipped."""
    target = _target_size(size)
    decoded = _decode_all([e.path for e in entries], desc=f"reading {name}")
    kept, images = [], []
    for entry, result in zip(entries, decoded):
        if isinstance(result, ImageReadError):
            _skip(skipped, entry.path, result.reason)
        else:
            kept.append(entry)
            images.append(result)
    if not kept:
        raise DatasetError(f"No readable {name} images in {root}{_first_skipped(skipped)}")
    soft = None
    if all(e.soft is not None for e in kept):
        soft = np.stack([e.soft for e in kept]).astype(np.float32)
    return RecordTable(
        images=_stack(images, target),
        expression=[e.expression for e in kept],
        subject=[e.subject for e in kept],
        sequence=[e.sequence for e in kept],
        frame_role=[e.frame_role for e in kept],
        path=[e.path for e in kept],
        soft_labels=soft,
        split=[e.split for e in kept],
        skipped=skipped,
        name=name,
    )


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in _IMAGE_SUFFIXES


def _read_tree(
    root: Path,
    name: str,
    group_of: Callable[[Path, List[Skipped]], Optional[int]],
    describe: Callable[[str, str, int], Tuple[str, str, str]],
    size: Size,
) -> RecordTable:
    """Reads ``root/<group>/<file>``.

    ``group_of(folder, skipped)`` gives the folder's expression index (or None to skip it);
    ``describe(filename, folder_name, expression)`` gives ``(subject, sequence, frame_role)``
    or raises ValueError with the reason the file cannot be used.
    """
    entries: List[_Entry] = []
    skipped: List[Skipped] = []
    children = _listdir(root)
    for child in children:
        if not child.is_dir():
            # A README next to the class folders is not an input; a stray image is.
            if _is_image_name(child):
                _skip(skipped, child, "image is not inside a class/subject folder")
            continue
        expression = group_of(child, skipped)
        if expression is None:
            continue
        for file in _listdir(child):
            if file.is_dir():
                _skip(skipped, file, "nested folder (only <root>/<folder>/<file> is read)")
                continue
            try:
                subject, sequence, role = describe(file.name, child.name, expression)
            except ValueError as err:
                _skip(skipped, file, str(err))
                continue
            entries.append(_Entry(str(file), expression, subject, sequence, role))
    if not entries and not skipped:
        raise DatasetError(f"Dataset directory is empty (no <folder>/<image> files): {root}")
    return _build(entries, skipped, name, root, size)


def _class_of(dataset: Optional[str]) -> Callable[[Path, List[Skipped]], Optional[int]]:
    def group_of(folder: Path, skipped: List[Skipped]) -> Optional[int]:
        try:
            return canonical_index(folder.name, dataset)
        except ValueError as err:
            _skip(skipped, folder, f"folder is not a class: {err}")
            return None

    return group_of


# --------------------------------------------------------------------------- CK+ and folders


def _ck_describe(neutral_folder: bool) -> Callable[[str, str, int], Tuple[str, str, str]]:
    neutral = CANONICAL.index("neutral")

    def describe(filename: str, folder: str, expression: int) -> Tuple[str, str, str]:
        match = _CK_FILENAME.match(filename)
        if match is None:
            raise ValueError(
                "file name does not follow CK+ S<subject>_<sequence>_<frame>.<ext> "
                f"(e.g. S010_004_00000017.png). Received: {filename!r}"
            )
        subject = match.group(1)
        role = "neutral" if neutral_folder and expression == neutral else "peak"
        return subject, f"{subject}_{match.group(2)}", role

    return describe


def read_ckplus48(root: PathLike, size: Size = None) -> RecordTable:
    """Reads CK+48: ``<root>/<class>/S<subj>_<seq>_<frame>.png`` (the last 3 frames per sequence).

    Class folders use the CK+48 names (``happy`` -> ``happiness``). Every record is a peak
    frame; ``subject`` is ``S010``, ``sequence`` is ``S010_004``.

    Args:
        root: the folder holding ``anger/``, ``contempt/``, ... (``.../ckplus48/CK+48``).
        size: optional ``int`` or ``(height, width)`` to resize every image to.

    Returns:
        A RecordTable named ``ckplus48``.

    Raises:
        DatasetError: ``root`` is missing, empty, or yields no readable image.
    """
    root = _require_dir(root, "CK+48 directory")
    return _read_tree(root, "ckplus48", _class_of("ckplus48"), _ck_describe(False), size)


def read_ckplus_neutral(root: PathLike, size: Size = None) -> RecordTable:
    """Reads the CK+ copy with neutral first frames: ``<root>/<class>/S<subj>_<seq>_<frame>.png``.

    Class folders use canonical names, ``neutral`` included; records from ``neutral/`` get
    frame_role ``"neutral"``, all others ``"peak"``.

    Args:
        root: the folder holding ``neutral/``, ``anger/``, ... (``.../ckplus_neutral/CK+``).
        size: optional ``int`` or ``(height, width)`` to resize every image to.

    Returns:
        A RecordTable named ``ckplus_neutral``.

    Raises:
        DatasetError: ``root`` is missing, empty, or yields no readable image.
    """
    root = _require_dir(root, "CK+ (neutral) directory")
    return _read_tree(
        root, "ckplus_neutral", _class_of("ckplus_neutral"), _ck_describe(True), size
    )


def neutral_pairs(peak_table: RecordTable, neutral_table: RecordTable) -> np.ndarray:
    """For each record of ``peak_table``, the row of its sequence's neutral frame.

    Matches on ``sequence`` (``S<subj>_<seq>``) against the records of ``neutral_table``
    whose frame_role is ``"neutral"``; when a sequence has several, the earliest frame wins.

    Args:
        peak_table: e.g. :func:`read_ckplus48`.
        neutral_table: e.g. :func:`read_ckplus_neutral`.

    Returns:
        int64 ``(len(peak_table),)``: a row index into ``neutral_table``, or -1 when the
        sequence has no neutral frame there.
    """
    first: Dict[str, int] = {}
    rows = np.flatnonzero(neutral_table.frame_role == "neutral")
    for row in sorted(rows, key=lambda r: _natural_key(os.path.basename(neutral_table.path[r]))):
        sequence = neutral_table.sequence[row]
        if sequence:
            first.setdefault(sequence, int(row))
    return np.array([first.get(s, -1) if s else -1 for s in peak_table.sequence], dtype=np.int64)


def _subject_describe(
    pattern: Optional[re.Pattern],
) -> Callable[[str, str, int], Tuple[str, str, str]]:
    def describe(filename: str, folder: str, expression: int) -> Tuple[str, str, str]:
        if pattern is None:
            return "", "", "unknown"
        match = pattern.search(filename)
        if match is None:
            raise ValueError(f"file name does not match subject_regex {pattern.pattern!r}")
        if "subject" in pattern.groupindex:
            subject = match.group("subject")
        else:
            subject = match.group(1) if pattern.groups else match.group(0)
        if not subject:
            raise ValueError(f"subject_regex {pattern.pattern!r} matched an empty subject")
        return subject, "", "unknown"

    return describe


def read_folder(
    root: PathLike,
    subject_regex: Optional[str] = None,
    dataset: Optional[str] = None,
    size: Size = None,
) -> RecordTable:
    """Reads a generic ``<root>/<class>/<image>`` layout.

    Args:
        root: the folder holding one sub-folder per class.
        subject_regex: optional regular expression searched in each file name; the named
            group ``subject`` (else the first group, else the whole match) is the subject
            id. A file that does not match is skipped.
        dataset: optional key of ``labels.DATASET_LABELS`` to map the folder names through
            (e.g. ``"ckplus48"`` for ``happy``); by default folder names must be canonical.
        size: optional ``int`` or ``(height, width)`` to resize every image to.

    Returns:
        A RecordTable named ``folder`` (frame_role ``"unknown"``).

    Raises:
        DatasetError: ``root`` is missing, empty, or yields no readable image.
        ValueError: ``subject_regex`` does not compile or ``dataset`` is unknown.
    """
    root = _require_dir(root, "Image folder")
    pattern = None
    if subject_regex:
        try:
            pattern = re.compile(subject_regex)
        except re.error as err:
            raise ValueError(f"Invalid subject_regex {subject_regex!r}: {err}") from err
    if dataset is not None and dataset not in DATASET_LABELS:
        raise ValueError(f"Unknown dataset {dataset!r}. Known: {sorted(DATASET_LABELS)}")
    return _read_tree(root, "folder", _class_of(dataset), _subject_describe(pattern), size)


def read_identity_folder(root: PathLike, size: Size = None) -> RecordTable:
    """Reads identity-only data laid out as ``<root>/<subject>/<image>`` (AT&T/ORL faces).

    Args:
        root: e.g. ``.../orl_faces`` holding ``s1/1.pgm`` ... ``s40/10.pgm``.
        size: optional ``int`` or ``(height, width)``; by default ORL stays ``(N, 112, 92)``.

    Returns:
        A RecordTable named ``identity_folder`` with expression ``NO_LABEL`` and subject the
        folder name (``s1``).

    Raises:
        DatasetError: ``root`` is missing, empty, or yields no readable image.
    """
    root = _require_dir(root, "Identity folder")
    return _read_tree(
        root,
        "identity_folder",
        lambda folder, skipped: NO_LABEL,
        lambda filename, folder, expression: (folder, "", "unknown"),
        size,
    )


# --------------------------------------------------------------------------- FER+ and FER2013


def _read_text(path: Path, skipped: List[Skipped], what: str) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        _skip(skipped, path, f"{what} is missing")
    except (OSError, UnicodeDecodeError) as err:
        _skip(skipped, path, f"cannot read {what}: {err}")
    return None


def _csv_rows(text: str, path: Path, skipped: List[Skipped]):
    """Yields ``(line, row)`` of non-blank CSV rows; a row the csv module rejects is skipped."""
    reader = csv.reader(io.StringIO(text, newline=""))
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            _skip(skipped, path, f"malformed CSV row: {err}", reader.line_num)
            continue
        if any(field.strip() for field in row):
            yield reader.line_num, row


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
    """Reads FER+: ``<root>/FER2013{Train,Valid,Test}/label.csv`` plus the PNGs.

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
        DatasetError: ``root`` or a split folder is missing, or nothing could be read.
        ValueError: an unknown split name.
    """
    root = _require_dir(root, "FER+ data directory")
    splits = _check_splits(splits)
    to_canonical = [canonical_index(c, "ferplus") for c in FERPLUS_VOTE_COLUMNS[:8]]
    entries: List[_Entry] = []
    skipped: List[Skipped] = []
    for split in splits:
        folder = _require_dir(root / FERPLUS_FOLDERS[split], f"FER+ {split} split folder")
        label_file = folder / "label.csv"
        text = _read_text(label_file, skipped, "FER+ label file")
        if text is None:
            continue
        listed, dropped, rows = set(), 0, 0
        for line, row in _csv_rows(text, label_file, skipped):
            if limit is not None and rows >= limit:
                break
            # An image whose row is malformed is reported once, for its row.
            listed.add(row[0].strip())
            try:
                votes = _parse_votes(row)
            except ValueError as err:
                if line == 1 and row and row[0].strip().lower() in ("image", "image name"):
                    continue  # an optional header row
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
            entries.append(_Entry(str(folder / image), to_canonical[top], split=split, soft=soft))
        if limit is None:
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
        raise DatasetError(f"{path} lacks column(s) {missing}. Received header: {header}")
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
    text = _read_text(path, skipped, "FER2013 CSV")
    if text is None:
        raise DatasetError(f"Cannot read FER2013 CSV {path}: {skipped[-1].reason}")
    rows = _csv_rows(text, path, skipped)
    header = next(rows, None)
    if header is None:
        raise DatasetError(f"FER2013 CSV is empty: {path}")
    columns = _header_index(header[1], path, ["pixels"])
    images, expressions, splits, paths = [], [], [], []
    for line, row in tqdm(rows, desc="reading fer2013", unit="row", disable=None):
        try:
            if len(row) != len(header[1]):
                raise ValueError(f"expected {len(header[1])} columns. Received {len(row)}")
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
    """Reads the FER+ PNGs with their original FER2013 7-class labels.

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
        DatasetError: a path is missing, the CSV lacks a required column, or nothing is read.
    """
    csv_path = _require_file(csv_path, "FER2013 recovered-labels CSV")
    root = Path(ferplus_root) if ferplus_root is not None else csv_path.parent / "data"
    root = _require_dir(root, "FER+ data directory")
    splits = _check_splits(splits)
    split_of = {folder.lower(): split for split, folder in FERPLUS_FOLDERS.items()}
    skipped: List[Skipped] = []
    text = _read_text(csv_path, skipped, "recovered-labels CSV")
    if text is None:
        raise DatasetError(f"Cannot read {csv_path}: {skipped[-1].reason}")
    rows = _csv_rows(text, csv_path, skipped)
    header = next(rows, None)
    if header is None:
        raise DatasetError(f"Recovered-labels CSV is empty: {csv_path}")
    required = ["folder", "image", "fer2013_label", "ambiguous"]
    columns = _header_index(header[1], csv_path, required)
    entries: List[_Entry] = []
    taken = {s: 0 for s in splits}
    ambiguous = 0
    for line, row in rows:
        try:
            if len(row) != len(header[1]):
                raise ValueError(f"expected {len(header[1])} columns. Received {len(row)}")
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
        image = root / FERPLUS_FOLDERS[split] / row[columns["image"]].strip()
        entries.append(_Entry(str(image), expression, split=split))
    if drop_ambiguous:
        log.info("FER2013 recovered labels: dropped %d ambiguous rows", ambiguous)
    if not entries:
        raise DatasetError(f"No usable rows in {csv_path}{_first_skipped(skipped)}")
    return _build(entries, skipped, "fer2013_recovered", root, size)


# --------------------------------------------------------------------------- registry

READERS: Dict[str, Callable[..., RecordTable]] = {
    "ckplus48": read_ckplus48,
    "ckplus_neutral": read_ckplus_neutral,
    "ferplus": read_ferplus,
    "fer2013_csv": read_fer2013_csv,
    "fer2013_recovered": read_fer2013_recovered,
    "folder": read_folder,
    "identity_folder": read_identity_folder,
}
"""Reader name -> function taking the dataset path first; see :func:`load`."""


def load(format: str, path: PathLike, **kwargs) -> RecordTable:
    """Reads a dataset with the reader registered as ``format`` in :data:`READERS`.

    Args:
        format: a key of :data:`READERS` (``"ckplus48"``, ``"ferplus"``, ...).
        path: the dataset folder (or CSV file for the CSV readers).
        **kwargs: passed to the reader (``subject_regex=``, ``limit=``, ``size=``...).

    Raises:
        ValueError: unknown format.
    """
    if format not in READERS:
        raise ValueError(f"Unknown dataset format {format!r}. Known: {sorted(READERS)}")
    return READERS[format](path, **kwargs)
