"""Resumable training stages.

A stage is one ``model.fit`` (pretraining a stream, fine-tuning, ...) in its own folder:
``history.csv`` (appended across restarts), TensorBoard logs (TensorFlow backend),
``backup/`` for mid-stage resume (Keras ``BackupAndRestore``: a killed run restarts at
the last finished epoch), ``timing.json`` (epoch times, compile overhead, examples per
second) and ``final.weights.h5`` once the stage is complete, after which re-running the
stage only loads the weights.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np


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
        self.path.write_text(json.dumps({
            "backend": keras.backend.backend(),
            "epochs": len(self.seconds),
            "epoch_seconds": [round(s, 3) for s in self.seconds],
            "median_epoch_seconds": median,
            "first_epoch_excess_seconds": self.seconds[0] - median,
            "examples_per_epoch": self.examples,
            "examples_per_second": (self.examples / median
                                    if self.examples and median > 0 else None),
        }, indent=1))


def stage_callbacks(stage_dir: Path):
    """CSV history, mid-stage backup and (TensorFlow backend) TensorBoard callbacks."""
    callbacks = [
        keras.callbacks.CSVLogger(str(stage_dir / "history.csv"), append=True),
        keras.callbacks.BackupAndRestore(str(stage_dir / "backup")),
    ]
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
    # Written beside and renamed, so a kill mid-save never leaves a half-written "complete"
    # stage behind.
    partial = stage_dir / "final.partial.weights.h5"
    model.save_weights(str(partial))
    os.replace(partial, final)
    return history
