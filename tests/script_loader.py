"""Loads one of the repository's scripts (``tools/*.py``, ``benchmarks/*.py``: not packages)
as a module, for the tests of their functions."""

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_script(relative: str, name: str | None = None) -> ModuleType:
    """``load_script("tools/gpu_run.py")``: the script's module, executed once per call."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
