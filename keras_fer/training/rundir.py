"""A run directory is owned: one process at a time, one configuration per folder.

``owned_run_dir(config, overwrite)`` takes ``<model_dir>/.lock`` with ``fcntl.flock`` (the
kernel releases it when the process dies, however it dies), so a second trainer on the same
``--model_dir`` stops at once with one line naming the holder (pid, host, start time). Then
the effective config is compared with the ``config.json`` a previous run left: a difference in
anything that changes what is trained refuses to reuse the folder (one line listing the
differences) unless ``--overwrite`` asks to start over, which empties the folder first.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Dict, Iterator, List

from keras_fer.training.config import TrainConfig

LOCK_FILE = ".lock"
CONFIG_FILE = "config.json"

# Settings that say where or what to write, not what is trained: a rerun may change them.
# ``fold`` picks which fold this process trains (one process per fold shares the folder),
# ``data_dir`` where the same dataset lies on this machine.
NOT_COMPARED = ("model_dir", "data_dir", "fold", "export", "heatmaps")
# ``extra`` keys that say when a process stops, not what is trained (IDFERM's ``stop_after``:
# one process runs a fold's HNG, a later one its RML stages in the same folder).
EXTRA_NOT_COMPARED = ("stop_after",)


class RunDirError(ValueError):
    """A ``--model_dir`` that cannot be used as asked; the message says why and what to do."""


def _holder(lock: Path) -> str:
    try:
        info = json.loads(lock.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return (f"pid {info.get('pid')} on {info.get('host')} "
            f"(since {info.get('started', '?')})")


def _fold_lock(fold: int) -> str:
    return f"{LOCK_FILE}_fold_{fold}"


def _live_fold_holders(model_dir: Path) -> List[str]:
    """``["fold 3: pid 12 on host (since ...)", ...]`` for the fold locks held right now.

    Single-fold runs share ``.lock`` without naming themselves there; each names itself in
    its ``.lock_fold_<k>``, which a finished run leaves behind unlocked: a lock that can be
    taken here is stale and not listed.
    """
    live = []
    for path in sorted(model_dir.glob(f"{LOCK_FILE}_fold_*")):
        try:
            with open(path, "a+") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    live.append(f"fold {path.name.rsplit('_', 1)[-1]}: {_holder(path)}")
        except OSError:
            continue
    return live


@contextlib.contextmanager
def _flock(path: Path, exclusive: bool, model_dir: Path) -> Iterator[None]:
    try:
        handle = open(path, "a+")
    except OSError as err:
        raise RunDirError(f"--model_dir={model_dir}: cannot write there "
                          f"({err.strerror or err}); choose another folder.") from err
    try:
        try:
            fcntl.flock(handle, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            holders = _live_fold_holders(model_dir) if path.name == LOCK_FILE else []
            holder = ("single-fold runs: " + ", ".join(holders)) if holders else _holder(path)
            raise RunDirError(
                f"--model_dir={model_dir} is in use by {holder}; wait "
                "for that run to finish or choose another --model_dir.") from None
        if exclusive:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                     "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
            handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


@contextlib.contextmanager
def locked(model_dir: str | Path, fold: int = -1) -> Iterator[Path]:
    """Holds the run directory for the ``with`` block (the folder is created).

    A run of every fold (``fold=-1``) holds ``<model_dir>/.lock`` alone. A run of one fold
    (``--fold=k``: the GPU machine trains a protocol as one process per fold, side by side in
    one folder) shares ``.lock`` with the other single-fold runs and holds
    ``.lock_fold_<k>`` alone: two processes on one fold, or a whole run beside a single-fold
    one, stop at once with one line naming the holder.

    Raises:
        RunDirError: ``model_dir`` is a file, cannot be created, or another live process
            holds the lock.
    """
    model_dir = Path(model_dir)
    if model_dir.exists() and not model_dir.is_dir():
        raise RunDirError(f"--model_dir={model_dir} is a file; give a folder (new or a "
                          "previous run's).")
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"--model_dir={model_dir}: cannot write there "
                          f"({err.strerror or err}); choose another folder.") from err
    if fold < 0:
        with _flock(model_dir / LOCK_FILE, True, model_dir):
            yield model_dir
        return
    # A whole run names itself in .lock; single-fold runs name themselves in their fold's.
    with _flock(model_dir / LOCK_FILE, False, model_dir), \
            _flock(model_dir / _fold_lock(fold), True, model_dir):
        yield model_dir


def _compared_extra(extra):
    if not isinstance(extra, dict):
        return extra
    return {k: v for k, v in extra.items() if k not in EXTRA_NOT_COMPARED}


def differences(config: TrainConfig, previous: Dict) -> List[str]:
    """``["depth 40 -> 16", ...]``: what the run would change of a previous ``config.json``."""
    current = json.loads(config.to_json())
    out = []
    for key in sorted(set(current) | set(previous)):
        if key in NOT_COMPARED:
            continue
        old, new = previous.get(key, "(unset)"), current.get(key, "(unset)")
        if key == "extra":
            old, new = (_compared_extra(v) for v in (old, new))
        if old != new:
            out.append(f"{key} {json.dumps(old)} -> {json.dumps(new)}")
    return out


def prepare(config: TrainConfig, overwrite: bool = False) -> None:
    """Checks the locked ``config.model_dir`` against ``config``; with ``overwrite``, empties it.

    Raises:
        RunDirError: the folder holds a run of another configuration (and not ``overwrite``),
            or an unreadable ``config.json``.
    """
    model_dir = Path(config.model_dir)
    path = model_dir / CONFIG_FILE
    if overwrite:
        if path.exists():
            for entry in model_dir.iterdir():
                if entry.name.startswith(LOCK_FILE):
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        return
    if not path.exists():
        return
    try:
        previous = json.loads(path.read_text())
    except ValueError as err:
        raise RunDirError(f"{path} is not valid JSON ({err}); rerun with --overwrite to start "
                          "over.") from err
    diff = differences(config, previous)
    if diff:
        raise RunDirError(
            f"--model_dir={model_dir} holds a run with another config ({path}): "
            f"{'; '.join(diff)}. Rerun with --overwrite to start over, or choose another "
            "--model_dir.")


def remove_if_only_lock(model_dir: str | Path) -> None:
    """Removes a folder this run created and left empty but for its lock (an early error)."""
    model_dir = Path(model_dir)
    with contextlib.suppress(OSError):
        if all(p.name.startswith(LOCK_FILE) for p in model_dir.iterdir()):
            shutil.rmtree(model_dir)

