"""The two steps every plot of the package shares: a headless pyplot, and writing the PNG."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (CI, servers, the GPU box)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Lays out ``fig``, writes it to ``path`` atomically (parent folders created) and
    closes it."""
    from keras_fer.io_atomic import atomic_path

    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=path.suffix[1:] or "png")
    finally:
        pyplot().close(fig)
    return path
