"""Artifacts, fingerprints, code versions and lineage metadata of the local pipeline runner.

Each component run owns one directory ``<pipeline_root>/<Component>/<key>/`` where ``key``
is the first 16 hex digits of the run's cache key. The directory is written under a hidden
temporary name beside it and renamed into place (``os.rename``, atomic on one filesystem)
with ``metadata.json`` already inside: a directory with that name exists only once its
component finished, so a killed run can never leave a half-written artifact that a later run
would trust.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import subprocess
from pathlib import Path
from typing import Dict, Iterable, Mapping

from keras_fer import io_atomic

METADATA_FILE = "metadata.json"
TMP_PREFIX = ".tmp-"


@dataclasses.dataclass(frozen=True)
class Artifact:
    """The output of one finished component run.

    Attributes:
        component: the component's name (``ExampleGen``, ``Trainer``...).
        uri: its artifact directory.
        fingerprint: SHA-256 over every file in ``uri`` except ``metadata.json``.
        properties: what the component reported (paths inside ``uri``, counts, verdicts).
    """

    component: str
    uri: Path
    fingerprint: str
    properties: Dict[str, object]

    def path(self, key: str) -> Path:
        """Absolute path of the relative path stored in ``properties[key]``."""
        return self.uri / str(self.properties[key])


def fingerprint_dir(root: str | Path, exclude: Iterable[str] = (METADATA_FILE,)) -> str:
    """SHA-256 of a directory's files: relative path, size and contents, in sorted order."""
    root = Path(root)
    excluded = set(exclude)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in excluded:
            continue
        digest.update(f"{rel}\0{path.stat().st_size}\0".encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of one file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_files(modules: Iterable[str]) -> list[Path]:
    """The ``.py`` files of modules or packages (a package contributes all of its files)."""
    files: set[Path] = set()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"Cannot find the source of module {name!r}.")
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            files.update(origin.parent.rglob("*.py"))
        else:
            files.add(origin)
    return sorted(files)


def source_hash(modules: Iterable[str]) -> str:
    """SHA-256 over the source of ``modules``: a component's code version for caching."""
    digest = hashlib.sha256()
    for path in source_files(modules):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def git_describe() -> str:
    """``git describe --always --dirty`` of the package's checkout, or ``""`` outside one.

    Recorded for lineage only: the cache key uses source hashes instead, so a commit that
    does not touch a component's code keeps its cache.
    """
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def cache_key(
    component: str,
    config: Mapping[str, object],
    inputs: Mapping[str, str],
    external: Mapping[str, object],
    code: str,
) -> str:
    """SHA-256 of everything a component's output depends on (JSON with sorted keys)."""
    document = {
        "component": component,
        "config": config,
        "inputs": dict(sorted(inputs.items())),
        "external": external,
        "code": code,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def read_metadata(uri: str | Path) -> Dict[str, object] | None:
    """The metadata of a finished artifact directory, or ``None`` when it is not finished."""
    path = Path(uri) / METADATA_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def write_json_atomic(path: str | Path, document: object) -> Path:
    """Writes JSON to ``path`` atomically (:func:`keras_fer.io_atomic.write_json`)."""
    return io_atomic.write_json(path, document, indent=1, sort_keys=True, default=str)
