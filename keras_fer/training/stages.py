"""Resumable training stages.

A stage is one ``model.fit`` (pretraining a stream, fine-tuning, ...) in its own folder:
``history.csv`` (appended across restarts), TensorBoard logs (TensorFlow backend),
``backup/`` for mid-stage resume (Keras ``BackupAndRestore``: a killed run restarts at
the last finished epoch) and ``final.weights.h5`` once the stage is complete, after
which re-running the stage only loads the weights.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import keras


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
                        callbacks=stage_callbacks(stage_dir) + list(callbacks), verbose=verbose, **fit_kwargs)
    # Written beside and renamed, so a kill mid-save never leaves a half-written "complete"
    # stage behind.
    partial = stage_dir / "final.partial.weights.h5"
    model.save_weights(str(partial))
    os.replace(partial, final)
    return history
