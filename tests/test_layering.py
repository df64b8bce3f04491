"""The package's layering: no module imports upward, and no module grows past 450 lines.

Every ``import keras_fer...`` / ``from keras_fer... import`` in ``keras_fer/`` (top level or
inside a function: both are dependencies) is read with ``ast``. A module may import its own
package and the packages *below* it in :data:`LAYERS`, never one above: data never knows
models, models never know how they are trained, training never knows the predictor, and so
on (docs/architecture.md, "Layering").
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "keras_fer"

# Lowest first. The entry points (``keras_fer/__init__.py``, ``keras_fer/cli.py``) sit above
# everything; ``io_atomic`` (the atomic writer) below everything.
LAYERS = (
    "io_atomic",
    "data",
    "layers",
    "losses",
    "models",
    "evaluation",
    "export",
    "training",
    "inference",
    "pipeline",
    "cli",
)
ENTRY_POINTS = ("__init__", "cli")

MAX_LINES = 450


def _unit(path: Path) -> str:
    """The layer a file of ``keras_fer/`` belongs to (its subpackage, or its module name)."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def _imported_units(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "keras_fer":  # from keras_fer import data, models
                names = [f"keras_fer.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "keras_fer" and len(parts) > 1:
                yield node.lineno, parts[1]


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_unit_of_the_package_has_a_layer():
    units = {_unit(p) for p in _modules()} - set(ENTRY_POINTS)
    assert units <= set(LAYERS), f"give these a place in LAYERS: {sorted(units - set(LAYERS))}"


def test_no_module_imports_upward():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = []
    for path in _modules():
        unit = _unit(path)
        if unit in ENTRY_POINTS:
            continue
        for lineno, target in _imported_units(path):
            if target in rank and rank[target] > rank[unit]:
                upward.append(f"{path.relative_to(REPO)}:{lineno} ({unit}) imports {target}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_training_defines_no_model_class():
    """Train-step models (``keras.Model`` subclasses) live in models/, beside what they
    train; training/ holds the procedures that fit them."""
    found = []
    for path in sorted((PACKAGE / "training").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b) for b in node.bases}
                if bases & {"keras.Model", "Model", "MultiOptimizerModel", "keras.models.Model"}:
                    found.append(f"{path.relative_to(REPO)}: {node.name}")
    assert not found, found


def _sources():
    for folder in ("keras_fer", "trainers"):
        yield from sorted(p for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", list(_sources()), ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_exceeds_450_lines(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines (> {MAX_LINES}): split it"
