"""Loads one of the repository's scripts (``tools/*.py``, ``benchmarks/*.py``: not packages)
as a module, for the tests of their functions."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_script(relative: str, name: str | None = None) -> ModuleType:
    """``load_script("tools/gpu_run.py")``: the script's module, executed once per call."""
    path = REPO / relative
    name = name or path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # Registered while it runs: a dataclass looks its module up in sys.modules.
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        if previous is None:
            del sys.modules[name]
        else:
            sys.modules[name] = previous
    return module
