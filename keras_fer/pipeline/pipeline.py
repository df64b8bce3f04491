"""The FER pipeline: ExampleGen -> Transform -> Trainer -> Evaluator -> Pusher.

:class:`PipelineConfig` is everything the run depends on; :func:`build_components` turns it
into the DAG that :func:`keras_fer.pipeline.runner.run_components` executes with caching, and
:func:`run_pipeline` does both. Beam options (and the staging URI) are not part of any cache key:
the same examples come out of every runner, so switching runners reuses the cache.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from keras_fer.pipeline import artifacts
from keras_fer.pipeline.artifacts import Artifact
from keras_fer.pipeline.runner import Component, PipelineResult, run_components

COMPONENTS = ("ExampleGen", "Transform", "Trainer", "Evaluator", "Pusher")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Settings of one pipeline (the ``python -m keras_fer.pipeline`` flags).

    Attributes:
        pipeline_root: artifact root (one folder per component, ``runs/`` logs).
        dataset_format: ``synthetic`` or a key of ``keras_fer.data.readers.READERS``.
        dataset_path: the dataset folder or CSV (unused for ``synthetic``).
        reader_kwargs: extra reader (or ``make_synthetic``) arguments.
        detect: ``auto``, ``always`` or ``never`` (see ``ExampleGenConfig``).
        folds: subject-disjoint folds; ``eval_fold`` is the evaluation split.
        eval_fold: the fold held out as ``eval``.
        seed: seed of the folds, the validation split and training.
        beam_args: Beam pipeline options for ExampleGen (``--runner=...``).
        beam_staging_dir: a URI the Beam workers write to when they cannot reach the
            pipeline root (Dataflow: ``gs://...``); see ``run_example_gen``.
        method: trainer method (``idennet``, ``tfe``, ``idferm``, ``ifgan``).
        protocol: class protocol (``""`` = the dataset's default).
        trainer_flags: extra trainer flags, e.g. ``("--flagfile=trainers/flagfiles/x.flags",)``.
        val_fraction: share of training subjects held out for validation.
        serving_dir: TF Serving root the Pusher writes to and the Evaluator compares with.
        model_name: the served model's name.
        min_accuracy: the Evaluator's blessing threshold, percent.
        max_regression: the largest accepted drop against the served model, percentage points.
    """

    pipeline_root: str = "runs/pipeline"
    dataset_format: str = "synthetic"
    dataset_path: str = ""
    reader_kwargs: Mapping[str, object] = dataclasses.field(default_factory=dict)
    detect: str = "auto"
    folds: int = 5
    eval_fold: int = 0
    seed: int = 0
    beam_args: Tuple[str, ...] = ()
    beam_staging_dir: str = ""
    method: str = "idennet"
    protocol: str = ""
    trainer_flags: Tuple[str, ...] = ()
    val_fraction: float = 0.1
    serving_dir: str = "saved_models"
    model_name: str = "fer"
    min_accuracy: float = 0.0
    max_regression: float = 1.0


def dataset_fingerprint(path: str) -> Dict[str, object]:
    """Cheap fingerprint of a dataset on disk: relative path, size and mtime of every file."""
    import hashlib

    if not path:
        return {"dataset": None}
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"Dataset path not found: {root}")
    digest = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for p in files:
        stat = p.stat()
        rel = p.relative_to(root.parent)
        digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return {"dataset": str(root.resolve()), "files": len(files), "stat_sha256": digest.hexdigest()}


def _flagfile_hashes(flags: Tuple[str, ...]) -> Dict[str, str]:
    """SHA-256 of each ``--flagfile=`` among trainer flags: their contents change the model."""
    out = {}
    for flag in flags:
        match = re.fullmatch(r"--flagfile=(.+)", flag)
        if match:
            out[match.group(1)] = artifacts.file_sha256(match.group(1))
    return out


def _trainer_dataset(config: PipelineConfig) -> str:
    """The trainers' ``--dataset`` (which picks the default protocol and labels
    ``results.json``) of the ExampleGen format, from the one dataset registry."""
    from keras_fer.data import registry

    dataset = registry.dataset_for_format(config.dataset_format)
    if dataset is None:
        supported = sorted(f for d in registry.REGISTRY.values() for f in d.formats)
        raise ValueError(
            f"The trainers have no --dataset for dataset_format={config.dataset_format!r}. "
            f"Supported: {supported}"
        )
    return dataset


def build_components(config: PipelineConfig) -> List[Component]:
    """The five components of ``config``, in order."""
    from keras_fer.pipeline import evaluator as evaluator_lib
    from keras_fer.pipeline.example_gen import ExampleGenConfig

    gen_config = ExampleGenConfig(
        dataset_format=config.dataset_format, dataset_path=config.dataset_path,
        reader_kwargs=dict(config.reader_kwargs), detect=config.detect, folds=config.folds,
        eval_fold=config.eval_fold, seed=config.seed)
    custom = {
        "method": config.method,
        "dataset": _trainer_dataset(config),
        "protocol": config.protocol,
        "trainer_flags": list(config.trainer_flags),
        "val_fraction": config.val_fraction,
        "seed": config.seed,
    }
    eval_config = evaluator_lib.EvalConfig(config.min_accuracy, config.max_regression)
    serving = {"serving_dir": str(Path(config.serving_dir).resolve()),
               "model_name": config.model_name}

    def example_gen(inputs: Mapping[str, Artifact], out: Path) -> Dict[str, object]:
        from keras_fer.pipeline.example_gen import run_example_gen

        return run_example_gen(gen_config, out, config.beam_args, config.beam_staging_dir)

    def transform(inputs: Mapping[str, Artifact], out: Path) -> Dict[str, object]:
        from keras_fer.pipeline.transform import run_transform

        return run_transform(inputs["ExampleGen"].uri, out)

    def trainer(inputs: Mapping[str, Artifact], out: Path) -> Dict[str, object]:
        from keras_fer.pipeline.trainer import run_trainer

        return run_trainer(inputs["ExampleGen"].uri, inputs["Transform"].uri, out, custom)

    def evaluator(inputs: Mapping[str, Artifact], out: Path) -> Dict[str, object]:
        return evaluator_lib.run_evaluator(
            inputs["ExampleGen"].uri, inputs["Trainer"].path("serving_model"), out,
            eval_config, **serving)

    def pusher(inputs: Mapping[str, Artifact], out: Path) -> Dict[str, object]:
        from keras_fer.pipeline.pusher import run_pusher

        return run_pusher(inputs["Trainer"].path("serving_model"), inputs["Evaluator"].uri,
                          out, **serving)

    def served() -> Mapping[str, object]:
        return evaluator_lib.served_model(**serving)

    return [
        Component("ExampleGen", example_gen, (),
                  dataclasses.asdict(gen_config),
                  ("keras_fer.pipeline.example_gen", "keras_fer.data"),
                  external=lambda: dataset_fingerprint(config.dataset_path)),
        Component("Transform", transform, ("ExampleGen",), {},
                  ("keras_fer.pipeline.transform", "keras_fer.export.savedmodel",
                   "keras_fer.data.preprocess")),
        Component("Trainer", trainer, ("ExampleGen", "Transform"),
                  dict(custom, flagfiles=_flagfile_hashes(config.trainer_flags)),
                  ("keras_fer.pipeline.trainer", "keras_fer.training", "keras_fer.models",
                   "keras_fer.layers", "keras_fer.losses", "keras_fer.export", "trainers"),
                  resumable=True),
        Component("Evaluator", evaluator, ("ExampleGen", "Trainer"),
                  dict(dataclasses.asdict(eval_config), **serving),
                  ("keras_fer.pipeline.evaluator",), external=served),
        Component("Pusher", pusher, ("Trainer", "Evaluator"), serving,
                  ("keras_fer.pipeline.pusher", "keras_fer.export.serving"), external=served),
    ]


def run_pipeline(config: PipelineConfig,
                 components: Optional[List[Component]] = None) -> PipelineResult:
    """Runs the pipeline of ``config`` (or the given ``components``) under its root."""
    return run_components(components or build_components(config), config.pipeline_root)
