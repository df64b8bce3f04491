"""Trainer: ``run_fn(fn_args)``, the TFX trainer contract, backed by the project's trainers.

``run_fn`` turns the ExampleGen splits into an experiment pack (the format
:func:`keras_fer.data.experiments.load_experiment` reads before any dataset), decoding every
crop through the Transform artifact, and then runs ``python -m trainers.<method>`` on it:
the very command line a user types, with ``--data_dir`` pointing at the pack. Training,
evaluation, checkpoints, resume and export are therefore the CLI's own code, and the two
cannot drift.

The pack's fixed split is ExampleGen's: ``train`` (less a subject-disjoint validation share)
for fitting, ``eval`` as the test set, so the run has one fold. After the user's trainer flags the
pipeline appends ``--dataset --protocol --data_dir --model_dir --seed --val_fraction`` (its
own settings) and ``--fold=-1 --limit=0 --nouse_orl --export=savedmodel`` (the pack holds the
pipeline's data only, and the Pusher needs the SavedModel); these win over a flagfile.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import numpy as np

from keras_fer.data import labels as labels_lib
from keras_fer.data import splits, tfrecords
from keras_fer.pipeline.transform import TRANSFORM_DIR, TransformGraph

METHODS = ("idennet", "tfe", "idferm", "ifgan")
SERVING_MODEL = "serving_model"
MODEL_RUN = "model_run"


@dataclasses.dataclass(frozen=True)
class FnArgs:
    """What the Trainer component hands to :func:`run_fn` (TFX's ``FnArgs``, the parts used).

    Attributes:
        train_files: TFRecord shards of the training split.
        eval_files: TFRecord shards of the evaluation split (the run's test set).
        transform_output: the Transform artifact directory.
        serving_model_dir: where the exported SavedModel must end up.
        model_run_dir: the trainer's ``--model_dir`` (checkpoints, results.json, plots).
        custom_config: ``method`` (one of :data:`METHODS`), ``dataset`` (a trainer dataset
            name), ``protocol`` (``""`` = the dataset's default), ``trainer_flags`` (list of
            extra command-line flags, e.g. ``--flagfile=...``), ``val_fraction``, ``seed``.
    """

    train_files: List[str]
    eval_files: List[str]
    transform_output: str
    serving_model_dir: str
    model_run_dir: str
    custom_config: Mapping[str, object]


def build_experiment(fn_args: FnArgs):
    """The :class:`~keras_fer.data.experiments.Experiment` of the ExampleGen splits."""
    from keras_fer.data.experiments import Experiment
    from keras_fer.data.registry import DEFAULT_PROTOCOL

    cfg = fn_args.custom_config
    dataset = str(cfg["dataset"])
    protocol = str(cfg.get("protocol") or DEFAULT_PROTOCOL[dataset])
    class_names = labels_lib.protocol_classes(protocol)
    graph = TransformGraph(Path(fn_args.transform_output) / TRANSFORM_DIR)

    def columns(files: Sequence[str]) -> Dict[str, np.ndarray]:
        return tfrecords.records_to_columns(
            tfrecords.parse_example(r) for r in tfrecords.iter_records(files))

    train, evaluation = columns(fn_args.train_files), columns(fn_args.eval_files)
    merged = {k: np.concatenate([train[k], evaluation[k]]) for k in train}
    is_eval = np.arange(len(merged["subject"])) >= len(train["subject"])
    faces = graph.decode_faces(merged[tfrecords.IMAGE_KEY])
    neutral = merged["frame_role"] == "neutral"
    y = labels_lib.to_protocol(merged["expression"], class_names)
    keep = np.flatnonzero(y >= 0)
    subjects, y, is_eval = merged["subject"][keep], y[keep].astype(np.int64), is_eval[keep]
    fit_idx = np.flatnonzero(~is_eval)
    missing = bool((np.char.strip(subjects) == "").any())
    train_idx, val_idx = splits.train_val_split(
        fit_idx, subjects, y, val_fraction=float(cfg.get("val_fraction", 0.1)),
        seed=int(cfg.get("seed", 0)), allow_missing_subjects=missing)
    return Experiment(
        name=dataset,
        protocol=protocol,
        class_names=class_names,
        faces=faces[keep],
        labels=y,
        subjects=subjects,
        fixed_split=(train_idx, val_idx, np.flatnonzero(is_eval)),
        neutral_faces=faces[neutral] if neutral.any() else None,
        neutral_subjects=merged["subject"][neutral] if neutral.any() else None,
    )


def trainer_command(fn_args: FnArgs, data_dir: str | Path) -> List[str]:
    """The ``python -m trainers.<method>`` command line the Trainer runs."""
    cfg = fn_args.custom_config
    method = str(cfg["method"])
    if method not in METHODS:
        raise ValueError(f"Unknown trainer method {method!r}. Known: {METHODS}")
    return [
        sys.executable, "-m", f"trainers.{method}",
        *[str(f) for f in cfg.get("trainer_flags", ())],
        f"--dataset={cfg['dataset']}",
        f"--protocol={cfg.get('protocol', '')}",
        f"--data_dir={data_dir}",
        f"--model_dir={fn_args.model_run_dir}",
        f"--seed={int(cfg.get('seed', 0))}",
        f"--val_fraction={float(cfg.get('val_fraction', 0.1))}",
        "--fold=-1", "--limit=0", "--nouse_orl", "--export=savedmodel",
    ]


def _die_with_parent() -> None:
    """Linux: the trainer is killed when the pipeline process dies.

    Otherwise a killed pipeline would leave the trainer running as an orphan, still writing
    into the directory that the next run resumes from.
    """
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except OSError:
        pass  # not Linux: an orphaned trainer can outlive a killed pipeline there


def run_fn(fn_args: FnArgs) -> Dict[str, object]:
    """Trains on the pipeline's examples with the method's CLI and exports the SavedModel.

    A rerun with the same ``model_run_dir`` resumes: the CLI skips finished folds and
    restarts interrupted stages from their checkpoints.

    Returns:
        The trainer's ``results.json`` document.

    Raises:
        subprocess.CalledProcessError: the trainer exited with an error.
    """
    from keras_fer.data.packs import pack_name, save_pack

    run_dir = Path(fn_args.model_run_dir)
    data_dir = run_dir / "data"
    exp = build_experiment(fn_args)
    pack = data_dir / pack_name(exp.name, exp.protocol, 0, use_orl=False)
    if not pack.exists():
        save_pack(exp, data_dir, limit=0, use_orl=False)
    # An interrupted earlier attempt may have exported already; the CLI refuses to
    # overwrite, and re-exports the finished fold's model anyway.
    shutil.rmtree(run_dir / "export", ignore_errors=True)
    env = dict(os.environ, KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "tensorflow"))
    subprocess.run(trainer_command(fn_args, data_dir), check=True, env=env,
                   preexec_fn=_die_with_parent)
    serving = Path(fn_args.serving_model_dir)
    shutil.rmtree(serving, ignore_errors=True)
    os.rename(run_dir / "export" / "savedmodel", serving)
    return json.loads((run_dir / "results.json").read_text())


def run_trainer(examples_dir: str | Path, transform_dir: str | Path, output_dir: str | Path,
                custom_config: Mapping[str, object]) -> Dict[str, object]:
    """The Trainer component: builds :class:`FnArgs` from the artifacts and calls ``run_fn``."""
    output_dir = Path(output_dir)
    fn_args = FnArgs(
        train_files=sorted(glob.glob(tfrecords.split_pattern(str(examples_dir), "train"))),
        eval_files=sorted(glob.glob(tfrecords.split_pattern(str(examples_dir), "eval"))),
        transform_output=str(transform_dir),
        serving_model_dir=str(output_dir / SERVING_MODEL),
        model_run_dir=str(output_dir / MODEL_RUN),
        custom_config=dict(custom_config),
    )
    if not fn_args.train_files or not fn_args.eval_files:
        raise FileNotFoundError(f"ExampleGen artifact {examples_dir} lacks train or eval shards.")
    results = run_fn(fn_args)
    return {
        "serving_model": SERVING_MODEL,
        "model_run": MODEL_RUN,
        "results": f"{MODEL_RUN}/results.json",
        "mean_accuracy": results["mean_accuracy"],
        "classes": results["classes"],
    }
