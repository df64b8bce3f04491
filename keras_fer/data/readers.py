"""Dataset readers: one function per on-disk layout, each returning a :class:`RecordTable`.

Every reader maps its dataset's label names to canonical indices (``labels.CANONICAL``) and
follows one policy for bad input:

- a corrupt, truncated or non-image file, an unreadable label file, or a malformed label or
  CSV row becomes a :class:`~keras_fer.data.records.Skipped` entry in ``table.skipped``
  (with the line number for rows) and a logged warning: never a crash, never a silent drop;
- a missing dataset path, or one that yields no usable record at all, raises one
  :class:`DatasetError` naming the path; so does a FER+ split folder with no faces, or a
  mosaic (every face of a split in one image) that is unreadable, of the wrong size, or does
  not fit its ``label.csv``.

Hidden files (names starting with ``.``, such as ``.DS_Store``) are not dataset inputs and are
ignored. Images keep their stored size: the ``images`` column is a dense ``(N, H, W)`` array
when all share one size and an object array otherwise; pass ``size=`` to resize every image
to one size (bilinear) at read time instead.

``load(format, path, **kw)`` dispatches through :data:`READERS` by name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from keras_fer.data._reader_base import (  # noqa: F401  (DatasetError, Size: public here)
    DatasetError,
    PathLike,
    Size,
    _build,
    _Entry,
    _is_image_name,
    _listdir,
    _natural_key,
    _require_dir,
    _skip,
    log,
)
from keras_fer.data.fer_readers import (  # noqa: F401  (re-exported: readers.read_ferplus, ...)
    FER2013_USAGE,
    FERPLUS_FOLDERS,
    FERPLUS_VOTE_COLUMNS,
    read_fer2013_csv,
    read_fer2013_recovered,
    read_ferplus,
)
from keras_fer.data.labels import CANONICAL, DATASET_LABELS, NO_LABEL, canonical_index
from keras_fer.data.records import RecordTable, Skipped

_CK_FILENAME = re.compile(r"^(S\d+)_(\d+)_(\d+)\.[A-Za-z0-9]+$")


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
