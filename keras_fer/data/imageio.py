"""Decoding face images to grayscale uint8 arrays, with one clear error for bad files.

Every reader decodes through :func:`read_gray` / :func:`decode_gray_bytes`, so a corrupt,
truncated or non-image file always surfaces as an :class:`ImageReadError` naming the file,
which the readers turn into a ``Skipped`` record instead of a crash.

16-bit and 32-bit images (Pillow modes ``I;16*``, ``I``, ``F``) are scaled to 8 bits
(:func:`to_8bit`), as TensorFlow's ``decode_png`` does in the serving graph, instead of being
clipped to white by Pillow's ``convert``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps

PathLike = Union[str, "os.PathLike[str]"]


class ImageReadError(Exception):
    """An image file (or byte string) that cannot be decoded.

    Attributes:
        path: the file (or ``source`` label) that failed.
        reason: why, in words (the decoder's own message included).
    """

    def __init__(self, path: PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Cannot read image {self.path}: {reason}")


def to_8bit(image: Image.Image) -> Image.Image:
    """A Pillow image with more than 8 bits per sample -> mode ``L``, scaled, not clipped.

    ``I;16*`` and ``I`` hold 16-bit samples: 0..65535 maps to 0..255 (``round(v / 257)``,
    TensorFlow's conversion). ``F`` in [0, 1] maps to 0..255; other ``F`` / ``I`` ranges are
    clipped after the same scaling. Other modes are returned unchanged.
    """
    if not (image.mode.startswith("I") or image.mode == "F"):
        return image
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F" and values.size and np.nanmax(values) <= 1.0:
        values = values * 255.0
    else:
        values = values / 257.0
    values = np.clip(np.nan_to_num(np.round(values)), 0, 255).astype(np.uint8)
    return Image.fromarray(values, mode="L")


def _decode(fp: Union[BinaryIO, PathLike], source: str, mode: str = "L",
            exif_transpose: bool = False) -> np.ndarray:
    """Decodes to a uint8 array in Pillow ``mode`` ("L" gray, "RGB"), mapping every failure
    to one :class:`ImageReadError`; ``exif_transpose`` applies the camera's orientation."""
    try:
        with Image.open(fp) as image:
            # Image.open only parses the header; load() decodes the pixels, which is where a
            # truncated or corrupt file fails.
            image.load()
            if exif_transpose:
                image = ImageOps.exif_transpose(image)
            converted = to_8bit(image).convert(mode)
    except Image.DecompressionBombError as err:
        raise ImageReadError(source, f"image too large ({err})") from err
    except FileNotFoundError as err:
        raise ImageReadError(source, "file not found") from err
    except PermissionError as err:
        raise ImageReadError(source, "permission denied") from err
    except IsADirectoryError as err:
        raise ImageReadError(source, "is a directory, not an image file") from err
    except Image.UnidentifiedImageError as err:
        raise ImageReadError(source, "not an image file (unrecognised format)") from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        # Pillow reports truncation as OSError and broken chunks as SyntaxError/ValueError.
        raise ImageReadError(source, f"corrupt or truncated image ({err})") from err
    array = np.asarray(converted, dtype=np.uint8)
    if array.ndim != (2 if mode == "L" else 3) or array.size == 0:
        raise ImageReadError(source, f"decoded to an empty image of shape {array.shape}")
    return array


def read_gray(path: PathLike) -> np.ndarray:
    """Reads an image file (PNG, JPEG, PGM, BMP, TIFF...) as grayscale.

    Args:
        path: the image file.

    Returns:
        uint8 array ``(H, W)``.

    Raises:
        ImageReadError: the file is missing, is not an image, or is corrupt or truncated.
    """
    return _decode(Path(path), str(path))


def read_rgb(path: PathLike) -> np.ndarray:
    """Reads an image file as RGB uint8 ``(H, W, 3)``, upright per its EXIF orientation.

    Raises:
        ImageReadError: as :func:`read_gray`.
    """
    return _decode(Path(path), str(path), mode="RGB", exif_transpose=True)


def decode_gray_bytes(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decodes an encoded image held in memory as grayscale.

    Args:
        data: the encoded file contents.
        source: a label for error messages (a path or URL).

    Returns:
        uint8 array ``(H, W)``.

    Raises:
        ImageReadError: ``data`` is not a decodable image.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode_gray_bytes expects bytes. Received: {type(data).__name__}")
    if len(data) == 0:
        raise ImageReadError(source, "empty data")
    return _decode(io.BytesIO(bytes(data)), source)
