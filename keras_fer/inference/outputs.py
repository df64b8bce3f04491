"""Output files that never lie: checked before work starts, written whole or not at all.

Every file ``keras-fer predict`` writes (the JSON report, annotated images, annotated videos)
goes to a temporary file in the target's folder and is renamed over the target with
``os.replace`` once complete, so a reader never sees a half-written file, and a failed or
interrupted write leaves the previous file as it was (or no file at all).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union

from keras_fer import io_atomic
from keras_fer.io_atomic import atomic_path

PathLike = Union[str, "os.PathLike[str]"]

# Pillow's writers by suffix; ``--annotate`` files outside this list are refused up front.
IMAGE_OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
VIDEO_OUTPUT_SUFFIXES = (".avi", ".mp4")


class OutputError(ValueError):
    """An output path that cannot be written; the message names it and says what to do."""


def _why(err: OSError) -> str:
    if isinstance(err, (FileExistsError, NotADirectoryError)):
        return "a file stands where a folder is needed"
    return err.strerror or str(err)


def prepare_file(path: PathLike, what: str) -> Path:
    """Creates ``path``'s folder and checks that a file can be written there.

    Args:
        path: the file to be written later.
        what: the flag or role, for the message (``"--output"``).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        OutputError: ``path`` is a folder, or its folder cannot be created or written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(
            f"{what} {path}: cannot write in {path.parent} ({_why(err)}); "
            "choose another place"
        ) from err
    return path


def prepare_folder(path: PathLike, what: str) -> Path:
    """Creates folder ``path`` (and parents) and checks that files can be written in it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file; give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise OutputError(
            f"{what} {path}: cannot write there ({_why(err)}); choose another place"
        ) from err
    return path


_umask = io_atomic.current_umask


def write_text(path: PathLike, text: str) -> Path:
    """Writes ``text`` to ``path`` atomically (see :func:`keras_fer.io_atomic.atomic_path`)."""
    return io_atomic.write_text(path, text)


def save_image(image, path: PathLike) -> Path:
    """Saves a PIL image atomically; a path without a known image suffix is written as PNG."""
    path = Path(path)
    fmt = None if path.suffix.lower() in IMAGE_OUTPUT_SUFFIXES else "PNG"
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt)
    return path
