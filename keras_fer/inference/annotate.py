"""Drawing predicted faces (box + "class probability" label) onto an image with PIL."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Colour-blind-safe palette (Okabe-Ito), one colour per class id.
PALETTE = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
    (255, 255, 255),
)


def face_label(face: Dict) -> str:
    """``"happiness 0.93"`` for one predicted face dict."""
    return f"{face['class']} {face['probabilities'][face['class']]:.2f}"


def draw_faces(image: Union[np.ndarray, Image.Image], faces: Sequence[Dict]) -> Image.Image:
    """Draws each face's box and label.

    Args:
        image: uint8 gray ``(H, W)`` or RGB ``(H, W, 3)`` array, or a PIL image.
        faces: predicted face dicts with ``box`` ``[x, y, w, h]``, ``class``, ``class_id``
            and ``probabilities`` (as returned by :meth:`Predictor.predict_image`).

    Returns:
        A new RGB PIL image.
    """
    canvas = (image if isinstance(image, Image.Image) else Image.fromarray(image)).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    # Lines and text scale with the image so labels stay legible on large photos.
    width = max(1, round(min(canvas.size) / 200))
    font = ImageFont.load_default(size=max(10, round(min(canvas.size) / 30)))
    for face in faces:
        x, y, w, h = face["box"]
        colour = PALETTE[int(face["class_id"]) % len(PALETTE)]
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=colour, width=width)
        text = face_label(face)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        text_h = bottom - top + 2 * width
        # Above the box when there is room, else inside its top edge.
        ty = y - text_h if y >= text_h else y
        draw.rectangle([x, ty, x + right - left + 2 * width, ty + text_h], fill=colour)
        draw.text((x + width - left, ty + width - top), text, fill=(0, 0, 0), font=font)
    return canvas


def save_annotated(
    image: Union[np.ndarray, Image.Image], faces: Sequence[Dict], path: Union[str, Path]
) -> Path:
    """Draws the faces (see :func:`draw_faces`) and saves the image; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_faces(image, faces).save(path)
    return path
