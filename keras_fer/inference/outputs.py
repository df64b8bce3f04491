"""Output files that never lie: checked before work starts, written whole or not at all.

Every file ``keras-fer predict`` writes (the JSON report, annotated images, annotated videos)
goes to a temporary file in the target's folder and is renamed over the target with
``os.replace`` once complete, so a reader never sees a half-written file, and a failed or
interrupted write leaves the previous file as it was (or no file at all).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Union

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


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: Optional[str] = None) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` on success.

    On any exception (``KeyboardInterrupt`` included) the temporary file is removed and
    ``path`` is left untouched.

    Args:
        path: the final file.
        suffix: the temporary file's suffix (default ``path``'s own), for writers that pick
            the format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=path.suffix if suffix is None else suffix, dir=path.parent
    )
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); the result gets the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def write_text(path: PathLike, text: str) -> Path:
    """Writes ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def save_image(image, path: PathLike) -> Path:
    """Saves a PIL image atomically; a path without a known image suffix is written as PNG."""
    path = Path(path)
    fmt = None if path.suffix.lower() in IMAGE_OUTPUT_SUFFIXES else "PNG"
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt)
    return path
