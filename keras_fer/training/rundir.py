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


@contextlib.contextmanager
def locked(model_dir: str | Path) -> Iterator[Path]:
    """Holds ``<model_dir>/.lock`` for the ``with`` block (the folder is created).

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
        handle = open(model_dir / LOCK_FILE, "a+")
    except OSError as err:
        raise RunDirError(f"--model_dir={model_dir}: cannot write there "
                          f"({err.strerror or err}); choose another folder.") from err
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirError(
                f"--model_dir={model_dir} is in use by {_holder(model_dir / LOCK_FILE)}; wait "
                "for that run to finish or choose another --model_dir.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
        handle.flush()
        yield model_dir
    finally:
        handle.close()  # releases the lock


def differences(config: TrainConfig, previous: Dict) -> List[str]:
    """``["depth 40 -> 16", ...]``: what the run would change of a previous ``config.json``."""
    current = json.loads(config.to_json())
    out = []
    for key in sorted(set(current) | set(previous)):
        if key in NOT_COMPARED:
            continue
        old, new = previous.get(key, "(unset)"), current.get(key, "(unset)")
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
                if entry.name == LOCK_FILE:
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
        if {p.name for p in model_dir.iterdir()} <= {LOCK_FILE}:
            shutil.rmtree(model_dir)

