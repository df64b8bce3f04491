"""The two layouts of a FER+ split folder (``FER2013Train/``, ...) beside its ``label.csv``.

- one image per face, named by ``label.csv``'s ``image`` column: what Microsoft's
  ``generate_training_data.py`` writes from FER2013's ``fer2013.csv``;
- one mosaic, ``faces.png`` or ``faces.jpg``: 48x48 tiles, :data:`TILES_PER_ROW` to a row,
  row-major, tile ``i`` holding the face on the ``i``-th row of ``label.csv`` (blank lines
  and an optional header row do not count); tiles past the last face are padding.

The layout is detected from the files present (a mosaic wins over per-face files beside it).
A mosaic is decoded once and kept in memory, keyed by path, size and modification time, so
reading a split again (another reader, ``limit=``, a second experiment) costs no decoding.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Optional

import numpy as np

from keras_fer.data._reader_base import DatasetError, _is_image_name
from keras_fer.data.imageio import ImageReadError, read_gray

MOSAIC_NAMES = ("faces.png", "faces.jpg")
"""File names a split's mosaic may have (PNG lossless, JPEG lossy)."""

TILE = 48
"""Side of one face tile, in pixels."""

TILES_PER_ROW = 128
"""Tiles in one row of a mosaic (its width is ``TILES_PER_ROW * TILE`` pixels)."""


def find_mosaic(folder: Path) -> Optional[Path]:
    """The split folder's mosaic, or ``None`` when it holds one image per face.

    Raises:
        DatasetError: the folder holds both ``faces.png`` and ``faces.jpg``, or neither a
            mosaic nor any image file.
    """
    found = [folder / name for name in MOSAIC_NAMES if (folder / name).is_file()]
    if len(found) > 1:
        raise DatasetError(
            f"FER+ split folder {folder} holds two mosaics ({', '.join(MOSAIC_NAMES)}): "
            "keep one."
        )
    if found:
        return found[0]
    if any(_is_image_name(p) and p.is_file() for p in folder.iterdir()):
        return None
    raise DatasetError(
        f"FER+ split folder {folder} holds no faces: expected a mosaic "
        f"({' or '.join(MOSAIC_NAMES)}) or one image per face, as named in label.csv."
    )


def mosaic_tiles(path: Path, faces: int) -> np.ndarray:
    """The first ``faces`` tiles of a mosaic, as a read-only uint8 ``(faces, 48, 48)`` array.

    Args:
        path: the mosaic file.
        faces: the number of faces ``label.csv`` lists (its rows, header and blank lines aside).

    Raises:
        DatasetError: the mosaic cannot be decoded (corrupt, truncated), is not
            ``TILES_PER_ROW * 48`` pixels wide with a height a multiple of 48, or its rows of
            tiles do not fit ``faces`` (``ceil(faces / TILES_PER_ROW)`` rows expected).
    """
    stat = path.stat()
    tiles = _decoded_tiles(str(path), stat.st_mtime_ns, stat.st_size)
    rows = len(tiles) // TILES_PER_ROW
    if rows != math.ceil(faces / TILES_PER_ROW):
        raise DatasetError(
            f"FER+ mosaic {path} has room for {len(tiles)} faces ({rows} rows of "
            f"{TILES_PER_ROW} tiles), but its label.csv lists {faces} faces (which need "
            f"{math.ceil(faces / TILES_PER_ROW)} rows): the two do not belong together."
        )
    return tiles[:faces]


@functools.lru_cache(maxsize=4)
def _decoded_tiles(path: str, mtime_ns: int, size: int) -> np.ndarray:
    # mtime_ns and size are only cache keys: a rewritten mosaic is decoded afresh.
    del mtime_ns, size
    try:
        pixels = read_gray(path)
    except ImageReadError as err:
        raise DatasetError(f"Cannot read FER+ mosaic {path}: {err.reason}") from err
    height, width = pixels.shape
    if width != TILES_PER_ROW * TILE or height % TILE:
        raise DatasetError(
            f"FER+ mosaic {path} must be {TILES_PER_ROW * TILE} pixels wide "
            f"({TILES_PER_ROW} tiles of {TILE}) and a multiple of {TILE} pixels high. "
            f"Received: {width}x{height}"
        )
    tiles = (
        pixels.reshape(height // TILE, TILE, TILES_PER_ROW, TILE)
        .transpose(0, 2, 1, 3)
        .reshape(-1, TILE, TILE)
        .copy()
    )
    tiles.setflags(write=False)
    return tiles


def write_mosaic(faces: np.ndarray, path: Path, **save_kwargs) -> None:
    """Writes ``(N, 48, 48)`` uint8 faces as a mosaic (black padding tiles); the format
    follows the suffix, ``save_kwargs`` go to Pillow (``quality=85`` for JPEG)."""
    from PIL import Image

    faces = np.asarray(faces, dtype=np.uint8)
    if faces.ndim != 3 or faces.shape[1:] != (TILE, TILE):
        raise ValueError(f"faces must be (N, {TILE}, {TILE}). Received shape {faces.shape}")
    rows = math.ceil(len(faces) / TILES_PER_ROW)
    grid = np.zeros((rows * TILES_PER_ROW, TILE, TILE), dtype=np.uint8)
    grid[: len(faces)] = faces
    pixels = grid.reshape(rows, TILES_PER_ROW, TILE, TILE).transpose(0, 2, 1, 3)
    Image.fromarray(pixels.reshape(rows * TILE, TILES_PER_ROW * TILE)).save(path, **save_kwargs)
