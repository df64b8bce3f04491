"""Atomic writes: files and folders appear complete or not at all.

Every writer of the project that leaves something a later run trusts (results, histories,
checkpoints, ``inference.keras``, plots, exports, caches, pipeline metadata) writes through
this module: the content goes to a hidden temporary name beside the target and is renamed
onto it (``os.replace``, atomic on one filesystem). A process killed mid-write (``kill -9``,
out of memory, a lost machine) leaves the old target, or none, plus a hidden temporary that
the next write beside it removes.

Tests crash a process at a named point with ``KERAS_FER_CRASH_AT=<point>`` (see
:func:`crash_point`); the points are the moments just before each rename
(``rename:<file or folder name>``).

Only the standard library is imported here: the TFLite inference path uses it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional, Union

PathLike = Union[str, os.PathLike]

CRASH_ENV = "KERAS_FER_CRASH_AT"


_crash_counts: dict = {}


def crash_point(name: str) -> None:
    """Kills this process with SIGKILL when ``$KERAS_FER_CRASH_AT`` names this point
    (``<name>``: its first time; ``<name>#<n>``: its n-th time in this process).

    For crash tests only: the process dies as under ``kill -9`` (no cleanup, no ``finally``).
    """
    wanted = os.environ.get(CRASH_ENV)
    if not wanted or not wanted.startswith(name):
        return
    target, _, nth = wanted.partition("#")
    if target != name:
        return
    _crash_counts[name] = _crash_counts.get(name, 0) + 1
    if _crash_counts[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _suffixes(path: Path) -> str:
    # All of them: Keras picks the format of ``final.weights.h5`` from ``.weights.h5``.
    return "".join(path.suffixes) if path.name[:1] != "." else path.suffix


def current_umask() -> int:
    """The process's umask (read without changing it for longer than the call)."""
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: Optional[str] = None) -> Iterator[Path]:
    """Yields a temporary file path beside ``path``; renames it onto ``path`` on success.

    On any exception (``KeyboardInterrupt`` included) the temporary file is removed and
    ``path`` is left untouched.

    Args:
        path: the final file (its folder is created).
        suffix: the temporary file's suffix (default ``path``'s own, all of them), for
            writers that pick the format from it (Keras, NumPy, Pillow).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.name[: len(path.name) - len(_suffixes(path))] or path.name
    remove_stale(path.parent, stem)
    tmp = None
    try:  # from the temporary's creation on: an interrupt anywhere after it removes it
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.tmp-{os.getpid()}-",
                                   suffix=_suffixes(path) if suffix is None else suffix,
                                   dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        # mkstemp makes the file private (0600); the result gets the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~current_umask())
        crash_point(f"rename:{path.name}")
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise


def remove_own_temporaries(folder: PathLike) -> int:
    """Removes the temporaries this process left anywhere under ``folder`` (a ``Ctrl-C`` that
    lands between a temporary's creation and its ``try``); returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for entry in folder.rglob(f".*.tmp-{os.getpid()}-*"):
        if entry.is_file() or entry.is_symlink():
            with contextlib.suppress(OSError):
                entry.unlink()
                removed += 1
    return removed


def write_text(path: PathLike, text: str) -> Path:
    """Writes ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: PathLike, document: Any, indent: int = 1, sort_keys: bool = False,
               default=None) -> Path:
    """Writes ``document`` as JSON (with a final newline) to ``path`` atomically."""
    return write_text(path, json.dumps(document, indent=indent, sort_keys=sort_keys,
                                       default=default) + "\n")


def write_results(path: PathLike, document: Any, table: str, indent: int = 1) -> Path:
    """A benchmark's results: ``document`` as ``<path>.json`` and its markdown ``table`` as
    ``<path>.md``, each written atomically (the JSON first). Returns the JSON's path."""
    path = Path(path)
    out = write_json(path.with_suffix(".json"), document, indent=indent)
    write_text(path.with_suffix(".md"), table)
    return out


def save_npy(path: PathLike, array) -> Path:
    """``np.save`` to ``path`` atomically."""
    import numpy as np

    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)
    return Path(path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(folder: PathLike, name: str) -> None:
    """Removes the temporaries of ``name`` left in ``folder`` by dead processes of this host."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for entry in folder.glob(f".{name}.*-*"):
        kind, _, rest = entry.name[len(name) + 2:].partition("-")
        pid = rest.split("-")[0]
        if kind not in ("tmp", "old") or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()


def replace_dir(src: PathLike, dst: PathLike) -> Path:
    """Puts folder ``src`` in the place of ``dst`` (replacing any folder there)."""
    src, dst = Path(src), Path(dst)
    old = None
    if dst.is_dir() and not dst.is_symlink():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}-{os.urandom(4).hex()}")
        os.replace(dst, old)
    elif dst.exists() or dst.is_symlink():
        dst.unlink()
    crash_point(f"rename:{dst.name}")
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dst


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Yields an empty temporary folder beside ``path``; on success it replaces ``path``.

    Whatever was at ``path`` stays until the new folder is complete; a half-written folder
    from a killed process (``.<name>.tmp-<pid>-*``) is removed by the next call. On an
    exception the temporary folder is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, path.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
