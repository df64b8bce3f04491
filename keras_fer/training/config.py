"""The effective configuration of one training run (what ``config.json`` records)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, Tuple

from keras_fer import io_atomic
from keras_fer.export import parse_formats


def parse_export(value: str | Tuple[str, ...] | None) -> Tuple[str, ...]:
    """``"all"`` / ``"savedmodel,tflite_int8"`` / ``""`` -> a validated tuple of formats.

    The exporter's own parser (:func:`keras_fer.export.parse_formats`), as a tuple for the
    frozen config.
    """
    return tuple(parse_formats(value))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a trainer run depends on; written to ``<model_dir>/config.json``.

    Attributes:
        method: ``idennet``, ``tfe``, ``idferm`` or ``ifgan``.
        variant: method variant (IDEnNet ``original|i|f|if``; ``baseline`` etc. elsewhere).
        dataset: ``synthetic``, ``ckplus48``, ``ckplus_neutral``, ``ferplus`` or ``fer2013``.
        protocol: class subset (``ck7``, ``ck8``, ``ferplus8``...); ``""`` = dataset default.
        folds: number of subject-disjoint folds (ignored for fixed-split datasets).
        fold: run only this fold (``-1`` = all folds).
        epochs: fine-tuning / main-stage epochs; ``pretrain_epochs`` for pretraining stages.
        distribution: ``none``, ``data_parallel`` (JAX), ``mirrored`` or ``multi_worker``
            (TensorFlow): see :mod:`keras_fer.training.distribute`; ``batch_size`` is global.
        seed: seeds initialisation and augmentation, and the folds unless ``fold_seed``.
        fold_seed: seeds the subject-disjoint folds (and each fold's validation subjects);
            ``-1`` = ``seed``. Fixed across seeds, it runs several seeds over the same folds,
            so that a method and its baseline can be compared fold by fold.
        accuracy is reported in percent everywhere.
    """

    method: str
    variant: str = "original"
    dataset: str = "synthetic"
    data_dir: str = ""
    model_dir: str = "runs/default"
    protocol: str = ""
    depth: int = 40
    folds: int = 10
    fold: int = -1
    epochs: int = 30
    pretrain_epochs: int = 30
    batch_size: int = 128
    lr: float = 0.01
    pretrain_lr: float = 0.1
    seed: int = 0
    fold_seed: int = -1
    val_fraction: float = 0.1
    identity_fraction: float = 1.0
    use_orl: bool = True
    heatmaps: int = 0
    export: Tuple[str, ...] = ()
    limit: int = 0
    distribution: str = "none"
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def split_seed(self) -> int:
        """The seed of the folds: ``fold_seed``, or ``seed`` when it is ``-1``."""
        return self.seed if self.fold_seed < 0 else self.fold_seed

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def write(self, model_dir: str | Path) -> Path:
        return io_atomic.write_text(Path(model_dir) / "config.json", self.to_json() + "\n")
