"""A JSON-ready summary of a record table (what ``python -m keras_fer.data describe`` prints).

Kept apart from ``__main__`` so that importing it defines no absl flags (the trainers define
their own, and absl refuses a flag defined twice in one process).
"""

from __future__ import annotations

from collections import Counter

from keras_fer.data.records import RecordTable


def describe(table: RecordTable, show_skipped: int = 5) -> dict:
    """Summarises a record table as a JSON-ready dict.

    Returns:
        ``{"name", "images", "image_shape", "classes", "subjects", "splits", "frame_roles",
        "skipped": {"count", "first"}}``; ``image_shape`` is ``[H, W]`` or ``"mixed"``.
    """
    shape = list(table.images.shape[1:]) if table.images.dtype != object else "mixed"
    return {
        "name": table.name,
        "images": len(table),
        "image_shape": shape,
        "classes": table.class_counts(),
        "subjects": len(table.subjects),
        "splits": dict(sorted(Counter(s for s in table.split.tolist() if s).items())),
        "frame_roles": dict(sorted(Counter(table.frame_role.tolist()).items())),
        "skipped": {
            "count": len(table.skipped),
            "first": [str(s) for s in table.skipped[:show_skipped]],
        },
    }
