"""Where the real datasets live: ``$FER_DATA_DIR`` (default ``../shared/data``)."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """Returns the root folder that holds ``ckplus48/``, ``ferplus/``, ``orl_faces/``..."""
    env = os.environ.get("FER_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()


def dataset_path(*parts: str) -> Path:
    """A path under :func:`data_dir`."""
    return data_dir().joinpath(*parts)
