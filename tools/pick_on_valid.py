"""Prints the run folder whose fold-0 ``result.json`` has the highest FER+ Valid accuracy.

Used on the GPU machine to bring back only the model chosen on validation data (files come
back from there in at most 8 parts of 16 MiB, too few for every candidate):

    python3 tools/pick_on_valid.py runs/a runs/b   # -> runs/b/fold_0
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def pick(run_dirs: list[str]) -> Path:
    """The ``<run>/fold_0`` with the best ``valid_accuracy`` (missing runs are skipped)."""
    scored = []
    for run in run_dirs:
        result = Path(run) / "fold_0" / "result.json"
        if result.is_file():
            scored.append((json.loads(result.read_text())["valid_accuracy"], result.parent))
    if not scored:
        raise SystemExit(f"none of {run_dirs} has a fold_0/result.json")
    return max(scored, key=lambda s: s[0])[1]


if __name__ == "__main__":
    print(pick(sys.argv[1:]))
