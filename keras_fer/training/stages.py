"""Resumable training stages.

A stage is one ``model.fit`` (pretraining a stream, fine-tuning, ...) in its own folder:
``history.csv`` (one row per finished epoch, across restarts), TensorBoard logs (TensorFlow
backend),
``backup/`` for mid-stage resume (Keras ``BackupAndRestore``: a killed run restarts at
the last finished epoch), ``timing.json`` (epoch times, compile overhead, examples per
second) and ``final.weights.h5`` once the stage is complete, after which re-running the
stage only loads the weights. Every file is written atomically (:mod:`keras_fer.io_atomic`):
a run killed at any moment resumes from the last complete epoch, and ``history.csv`` never
holds a row twice.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np

from keras_fer import io_atomic
from keras_fer.data.augment import FaceBatches


def examples_per_epoch(data) -> int | None:
    """Training examples one epoch of ``data`` feeds: its ``samples_per_epoch`` if it has
    one, else ``len(data.faces)`` capped at ``len(data) * data.batch_size`` (``FaceBatches``
    and the like); ``None`` when unknown."""
    if hasattr(data, "samples_per_epoch"):
        return int(data.samples_per_epoch)
    faces, batch_size = getattr(data, "faces", None), getattr(data, "batch_size", None)
    if faces is None or batch_size is None:
        return None
    return int(min(len(faces), len(data) * batch_size))


class StageTimer(keras.callbacks.Callback):
    """Writes ``timing.json`` at the end of a stage's ``fit``: every epoch's seconds, the
    median, the first epoch's excess over the median (compilation, mostly) and examples
    per second at the median epoch time. An epoch's time includes its validation pass, when
    the stage has one."""

    def __init__(self, path: Path, examples: int | None):
        super().__init__()
        self.path, self.examples, self.seconds = Path(path), examples, []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)

    def on_train_end(self, logs=None):
        if not self.seconds:
            return
        median = float(np.median(self.seconds))
        io_atomic.write_json(self.path, {
            "backend": keras.backend.backend(),
            "epochs": len(self.seconds),
            "epoch_seconds": [round(s, 3) for s in self.seconds],
            "median_epoch_seconds": median,
            "first_epoch_excess_seconds": self.seconds[0] - median,
            "examples_per_epoch": self.examples,
            "examples_per_second": (self.examples / median
                                    if self.examples and median > 0 else None),
        })


class HistoryCSV(keras.callbacks.Callback):
    """``history.csv`` as Keras' ``CSVLogger`` writes it (``epoch`` 0-based, then the logs'
    keys sorted), rewritten atomically after every epoch.

    A resumed ``fit`` drops the rows of the epochs it trains again (those after the backup
    it resumed from), so a row is never there twice, whatever the moment of a kill.
    """

    def __init__(self, path: str | Path):
        super().__init__()
        self.path, self.rows, self.keys = Path(path), None, None

    def on_epoch_begin(self, epoch, logs=None):
        if self.rows is not None:
            return
        self.rows, self.keys = [], None
        if self.path.is_file():
            with open(self.path, newline="") as handle:
                reader = csv.DictReader(handle)
                self.keys = [k for k in (reader.fieldnames or []) if k != "epoch"] or None
                self.rows = [row for row in reader if int(row["epoch"]) < epoch]

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.keys is None:
            self.keys = sorted(logs)
        self.rows.append({"epoch": epoch, **{k: logs.get(k, "NA") for k in self.keys}})
        text = io.StringIO()
        writer = csv.DictWriter(text, ["epoch", *self.keys], lineterminator="\n",
                                extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        io_atomic.write_text(self.path, text.getvalue())


class Backup(keras.callbacks.BackupAndRestore):
    """Keras' ``BackupAndRestore`` whose backup (weights and epoch) is replaced as one folder,
    so a kill mid-save leaves the previous epoch's backup whole; kept after ``fit`` (the
    stage removes it once its ``final.weights.h5`` is in place)."""

    def __init__(self, backup_dir: str):
        super().__init__(backup_dir, delete_checkpoint=False)

    def _save_model(self):
        with io_atomic.atomic_dir(self.backup_dir) as tmp:
            self.model.save_weights(os.path.join(tmp, "latest.weights.h5"))
            io_atomic.write_json(os.path.join(tmp, "training_metadata.json"),
                                 {"epoch": self._current_epoch, "batch": self._last_batch_seen})


def validation_batches(config, faces: np.ndarray, labels) -> FaceBatches | None:
    """A fold's validation batches for ``fit``, or ``None`` with no validation faces or under
    a distribution (where Keras would split each batch across replicas)."""
    if not len(faces) or config.distribution != "none":
        return None
    return FaceBatches(faces, labels, config.batch_size)


def stage_callbacks(stage_dir: Path):
    """History, mid-stage backup and (TensorFlow backend) TensorBoard callbacks."""
    callbacks = [HistoryCSV(stage_dir / "history.csv"), Backup(str(stage_dir / "backup"))]
    if keras.backend.backend() == "tensorflow":
        callbacks.append(keras.callbacks.TensorBoard(str(stage_dir / "tensorboard")))
    return callbacks


def fit_stage(model: keras.Model, stage_dir: str | Path, data, epochs: int,
              validation_data=None, verbose=None, callbacks=(), **fit_kwargs):
    """Fits ``model`` for ``epochs`` unless the stage already finished; resumable.

    Args:
        model: a compiled model.
        stage_dir: the stage's folder (created).
        data: anything ``model.fit`` takes as ``x`` (a ``keras.utils.PyDataset`` here).
        epochs: total epochs of the stage (a resumed run trains only the rest).
        validation_data: passed to ``fit``.
        callbacks: extra callbacks (e.g. a per-epoch image grid) after the stage's own.
        verbose: ``fit`` verbosity; default a progress bar on a terminal, one line per
            epoch in logs (CI, the GPU machine).

    Returns:
        The ``History`` of this call, or ``None`` when the stage was already complete.
    """
    stage_dir = Path(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    final = stage_dir / "final.weights.h5"
    if final.exists():
        logging.info("stage %s already complete: loading %s", stage_dir.name, final)
        try:
            model.load_weights(str(final))
            shutil.rmtree(stage_dir / "backup", ignore_errors=True)
            return None
        except (OSError, ValueError) as err:
            # Written by a run killed mid-save before saves were atomic: train the stage again
            # (its backup/ still resumes it) and keep the broken file for inspection.
            broken = final.with_name("final.corrupt.h5")
            os.replace(final, broken)
            logging.warning("stage %s: %s unreadable (%s); moved to %s, training the stage",
                            stage_dir.name, final, err, broken)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    history = model.fit(data, epochs=epochs, validation_data=validation_data,
                        callbacks=stage_callbacks(stage_dir) + list(callbacks)
                        + [StageTimer(stage_dir / "timing.json", examples_per_epoch(data))],
                        verbose=verbose, **fit_kwargs)
    # Atomic, so a kill mid-save never leaves a half-written "complete" stage behind.
    with io_atomic.atomic_path(final) as tmp:
        model.save_weights(str(tmp))
    shutil.rmtree(stage_dir / "backup", ignore_errors=True)
    return history
