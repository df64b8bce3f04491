"""Shared pieces of the dataset readers (``readers`` and ``fer_readers``): the bad-input
policy (:class:`DatasetError`, ``Skipped`` entries), path checks, parallel decoding with a
progress bar, and building a :class:`~keras_fer.data.records.RecordTable` from entries."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from keras_fer.data.imageio import ImageReadError, read_gray
from keras_fer.data.records import RecordTable, Skipped

log = logging.getLogger("keras_fer.data.readers")

PathLike = Union[str, "os.PathLike[str]"]
Size = Union[int, Tuple[int, int], None]

_IMAGE_SUFFIXES = frozenset(Image.registered_extensions())


class DatasetError(Exception):
    """A dataset path that is missing, is of the wrong kind, or holds no usable records."""


@dataclasses.dataclass
class _Entry:
    """One record waiting for its image to be decoded (``image`` set: already decoded,
    as a FER+ mosaic tile is; ``path`` then names the face rather than a file)."""

    path: str
    expression: int
    subject: str = ""
    sequence: str = ""
    frame_role: str = "unknown"
    split: str = ""
    soft: Optional[np.ndarray] = None
    image: Optional[np.ndarray] = None


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
    # A reason quotes the input; a short quote is enough (a FER2013 row holds 2,304 pixels).
    item = Skipped(str(path), reason if len(reason) <= 300 else reason[:297] + "...", line)
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
    pending = [e.path for e in entries if e.image is None]
    decoded = iter(_decode_all(pending, desc=f"reading {name}") if pending else [])
    kept, images = [], []
    for entry in entries:
        result = entry.image if entry.image is not None else next(decoded)
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
