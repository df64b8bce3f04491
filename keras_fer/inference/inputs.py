"""What ``keras-fer predict`` reads: files are images or videos by their bytes, not their name.

:func:`sniff` looks at a file's first bytes (the formats' magic numbers); :func:`list_folder`
walks a folder and returns the images and videos it holds, and one reason for every other
entry (broken link, unreadable, neither image nor video), so nothing is skipped silently.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List, Optional, Tuple

IMAGE = "image"
VIDEO = "video"
UNKNOWN_CONTENT = "neither an image nor a video (unrecognised content)"

# (offset, magic) -> kind. ISO media (``ftyp``) is decided by its brand below.
_MAGIC = (
    (0, b"\x89PNG\r\n\x1a\n", IMAGE),
    (0, b"\xff\xd8\xff", IMAGE),
    (0, b"GIF87a", IMAGE),
    (0, b"GIF89a", IMAGE),
    (0, b"BM", IMAGE),
    (0, b"II*\x00", IMAGE),
    (0, b"MM\x00*", IMAGE),
    (0, b"\x00\x00\x01\x00", IMAGE),  # ICO
    (0, b"\x1aE\xdf\xa3", VIDEO),  # Matroska / WebM
    (0, b"\x00\x00\x01\xba", VIDEO),  # MPEG program stream
    (0, b"\x00\x00\x01\xb3", VIDEO),  # MPEG-1/2 video
    (0, b"0&\xb2u\x8ef\xcf\x11", VIDEO),  # ASF / WMV
    (0, b"FLV", VIDEO),
)
_IMAGE_BRANDS = (b"avif", b"avis", b"heic", b"heix", b"mif1", b"msf1")
_NETPBM = re.compile(rb"^P[1-7]\s")


def sniff(head: bytes) -> Optional[str]:
    """``IMAGE``, ``VIDEO`` or ``None`` for a file starting with ``head`` (>= 16 bytes)."""
    if head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"AVI "):
        return IMAGE if head[8:12] == b"WEBP" else VIDEO
    if head[4:8] == b"ftyp":
        return IMAGE if head[8:12] in _IMAGE_BRANDS else VIDEO
    if head[:1] == b"\x47" and len(head) > 188 and head[188:189] == b"\x47":
        return VIDEO  # MPEG transport stream: a sync byte every 188 bytes
    if _NETPBM.match(head):
        return IMAGE
    for offset, magic, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    return None


def file_kind(path: Path) -> Tuple[Optional[str], Optional[str]]:
    """``(kind, None)`` for a readable image or video file, else ``(None, reason)``."""
    if path.is_symlink() and not path.exists():
        return None, f"broken symbolic link (to {os.readlink(path)})"
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except IsADirectoryError:
        return None, "is a folder"
    except OSError as err:
        return None, f"cannot be read ({err.strerror or err})"
    if not head:
        return None, "empty file"
    kind = sniff(head)
    return (kind, None) if kind else (None, UNKNOWN_CONTENT)


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


def list_folder(
    root: Path, recursive: bool = False
) -> Tuple[List[Tuple[Path, str]], List[Tuple[Path, str]]]:
    """The images and videos of a folder, and the entries that are neither.

    Hidden entries (names starting with ``.``) are left out; sub-folders are entered only
    with ``recursive``.

    Args:
        root: the folder.
        recursive: include files in sub-folders (at any depth).

    Returns:
        ``(found, problems)``: ``found`` is ``[(path, IMAGE or VIDEO)]`` in natural name order
        (``img2`` before ``img10``), ``problems`` is ``[(path, reason)]``.

    Raises:
        OSError: ``root`` itself cannot be listed.
    """
    found, problems = [], []
    pending = [root]
    while pending:
        folder = pending.pop()
        entries = list(os.scandir(folder))  # raises for the root; sub-folders reported below
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if entry.is_dir():
                if recursive:
                    try:
                        os.listdir(path)
                        pending.append(path)
                    except OSError as err:
                        problems.append((path, f"folder cannot be read ({err.strerror})"))
                continue
            kind, reason = file_kind(path)
            if kind:
                found.append((path, kind))
            else:
                problems.append((path, reason))
    found.sort(key=lambda item: _natural_key(item[0]))
    problems.sort(key=lambda item: _natural_key(item[0]))
    return found, problems
