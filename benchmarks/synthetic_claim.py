"""Does identity help? IDEnNet variants side by side on the synthetic faces, on CPU.

The synthetic dataset (:mod:`keras_fer.data.synthetic`) gives every subject a resting
expression offset that is mostly predictable from visible identity cues, so expression is
relative to the person's own baseline. The issue's claim to check: with the same folds,
seeds and training budget, IDEnNet_IF (identity stream fused in + identity head) beats
Original (expression stream only) on unseen test subjects.

Protocol: the trainer's ``synthetic`` dataset (40 subjects, ck7, 840 faces), 5
subject-disjoint folds, of which ``--run_folds`` are trained; every variant runs through the
shared runner (:func:`runner.train_and_evaluate`) with one :class:`TrainConfig` that differs
only in ``variant``. Pretraining stages that do not depend on the variant are trained once
per fold and copied into the other variants' folders before they start (the runner then
loads them), so all variants fine-tune from the *same* pretrained emotion stream, and F/IF
from the same identity stream: the comparison isolates what the identity parts add.

Run (about 20 minutes on 2 CPU cores shared with other jobs, with the defaults)::

    python benchmarks/synthetic_claim.py

writes ``benchmarks/results/synthetic_claim.json`` (every fold of every variant, the
settings, timings) and ``synthetic_claim.md`` (the table). Training runs go to
``--work_dir`` (default ``runs/synthetic_claim``, git-ignored).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from keras_fer import io_atomic  # noqa: E402
from keras_fer.training import runner  # noqa: E402
from keras_fer.training.config import TrainConfig  # noqa: E402
from keras_fer.data.experiments import Experiment, load_experiment  # noqa: E402
from keras_fer.training.idennet import (  # noqa: E402
    SHARED_STAGES,
    IDEnNetMethod,
    share_pretraining,
)

HERE = Path(__file__).resolve().parent


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Training budget flags shared with ``identity_fraction.py``."""
    add = parser.add_argument
    add("--depth", type=int, default=16)
    add("--folds", type=int, default=5, help="Subject-disjoint folds of the protocol.")
    add("--run_folds", type=int, default=3, help="Train folds 0..run_folds-1.")
    add("--pretrain_epochs", type=int, default=20)
    add("--epochs", type=int, default=10, help="Fine-tuning epochs.")
    add("--batch_size", type=int, default=32)
    add("--lr", type=float, default=0.01, help="Fine-tuning learning rate (paper: 0.01).")
    add("--pretrain_lr", type=float, default=0.1, help="Pretraining learning rate (paper: 0.1).")
    add("--seed", type=int, default=0)
    add("--extra", default="{}", help="IDEnNet settings as JSON (layers_per_block, ...).")


def base_config(args: argparse.Namespace, work_dir: Path) -> TrainConfig:
    """The one configuration every variant of the comparison shares."""
    return TrainConfig(
        method="idennet",
        variant="original",
        dataset="synthetic",
        model_dir=str(work_dir / "original"),
        depth=args.depth,
        folds=args.folds,
        epochs=args.epochs,
        pretrain_epochs=args.pretrain_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        pretrain_lr=args.pretrain_lr,
        seed=args.seed,
        extra=json.loads(args.extra),
    )


def check_same_settings(config: TrainConfig) -> None:
    """Refuses to resume a run folder trained with other settings (its folds would be reused)."""
    path = Path(config.model_dir) / "config.json"
    if not path.exists():
        return
    old = json.loads(path.read_text())
    new = json.loads(config.to_json())
    differ = sorted(k for k in new if k != "fold" and old.get(k) != new[k])
    if differ:
        raise ValueError(f"{path} was written with other settings ({differ}); its finished folds "
                         "would be reused. Use another --work_dir.")


def run_folds(config: TrainConfig, exp: Experiment, work_dir: Path, folds: Sequence[int],
              shared_stages: Sequence[str] = SHARED_STAGES) -> Dict:
    """Trains ``config`` on each of ``folds`` (resuming finished folds); per-fold results.

    ``work_dir`` is where finished pretraining stages are looked for (any variant's folder).
    """
    model_dir = Path(config.model_dir)
    check_same_settings(config)
    results, seconds = [], []
    for k in folds:
        copied = share_pretraining(work_dir, model_dir, k, shared_stages)
        if copied:
            print(f"[{config.variant}] fold {k}: reusing {copied}", flush=True)
        # Training time of the fold, kept so that a resumed run still reports it.
        timing = model_dir / f"fold_{k}" / "benchmark_seconds.json"
        trained_now = not (model_dir / f"fold_{k}" / "result.json").exists()
        start = time.time()
        doc = runner.train_and_evaluate(IDEnNetMethod(), dataclasses.replace(config, fold=k),
                                        experiment=exp)
        if trained_now:
            timing.write_text(json.dumps(round(time.time() - start, 1)))
        seconds.append(json.loads(timing.read_text()) if timing.exists() else None)
        results.extend(doc["folds"])
    acc = np.array([f["accuracy"] for f in results])
    return {
        "variant": config.variant,
        "identity_fraction": config.identity_fraction,
        "folds": [{k: f[k] for k in ("fold", "accuracy", "num_test", "confusion_matrix")}
                  for f in results],
        "mean_accuracy": float(acc.mean()),
        "std_accuracy": float(acc.std()),
        "correct": int(sum(round(f["accuracy"] * f["num_test"] / 100) for f in results)),
        "num_test": int(sum(f["num_test"] for f in results)),
        "seconds": seconds,
    }


def environment() -> Dict:
    """Machine and library versions recorded next to the figures."""
    import keras
    import tensorflow as tf

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU core(s), no GPU",
        "python": platform.python_version(),
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "backend": keras.backend.backend(),
    }


def settings(args: argparse.Namespace, exp: Experiment, folds: Sequence[int]) -> Dict:
    return {
        "dataset": "synthetic (keras_fer.data.synthetic.make_synthetic defaults: 40 subjects, "
        "3 frames per class, confound 1.0)",
        "protocol": exp.protocol,
        "classes": list(exp.class_names),
        "faces": int(len(exp.labels)),
        "folds_of_protocol": args.folds,
        "folds_run": list(folds),
        "depth": args.depth,
        "pretrain_epochs": args.pretrain_epochs,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "pretrain_lr": args.pretrain_lr,
        "seed": args.seed,
        "extra": json.loads(args.extra),
        "pretraining_shared_from": getattr(args, "share_from", "") or None,
    }


def train_seconds(seconds: Sequence[float | None]) -> str:
    """Total training seconds, "n/a" when a fold was trained by an earlier version."""
    return "n/a" if None in seconds else f"{sum(seconds):.0f}"


def markdown(doc: Dict) -> str:
    s = doc["settings"]
    lines = [
        "# IDEnNet variants on the synthetic faces (identity confounds expression)",
        "",
        f"{s['dataset']}; protocol {s['protocol']} ({len(s['classes'])} classes, "
        f"{s['faces']} faces); folds {s['folds_run']} of {s['folds_of_protocol']} "
        "subject-disjoint folds (test subjects never seen in training); depth "
        f"{s['depth']}; pretraining {s['pretrain_epochs']} epochs at lr {s['pretrain_lr']}, "
        f"fine-tuning {s['epochs']} epochs at lr {s['lr']}; batch {s['batch_size']}; seed "
        f"{s['seed']}. All variants fine-tune from the same pretrained streams of each fold"
        + (f" (pretraining from `{s['pretraining_shared_from']}`)"
           if s.get("pretraining_shared_from") else "")
        + f". {doc['environment']['machine']}, {doc['environment']['date']}. `train s`: wall "
        "seconds of the stages a variant trained itself (a stage copied from another variant "
        "counts there), on a machine shared with other jobs.",
        "",
        "| variant | " + " | ".join(f"fold {f}" for f in s["folds_run"])
        + " | mean ± std (%) | correct / test faces | train s |",
        "| --- |" + " --- |" * (len(s["folds_run"]) + 3),
    ]
    for row in doc["variants"]:
        accs = " | ".join(f"{f['accuracy']:.2f}" for f in row["folds"])
        lines.append(
            f"| {row['variant']} | {accs} | {row['mean_accuracy']:.2f} ± "
            f"{row['std_accuracy']:.2f} | {row['correct']} / {row['num_test']} | "
            f"{train_seconds(row['seconds'])} |"
        )
    if doc.get("notes"):
        lines += ["", "## Observations", "", *doc["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--variants", default="original,if",
                        help="Comma-separated, trained in this order.")
    parser.add_argument("--work_dir", default="runs/synthetic_claim")
    parser.add_argument("--share_from", default="",
                        help="Another --work_dir whose finished pretraining stages to reuse "
                        "(same --pretrain_epochs, --pretrain_lr, --batch_size and --seed), e.g. "
                        "to compare fine-tuning budgets on the same pretrained streams.")
    parser.add_argument("--out", default=str(HERE / "results" / "synthetic_claim"),
                        help="Output path without extension (.json and .md are written).")
    parser.add_argument("--notes", default="",
                        help="Observations appended to the table (re-running resumes every "
                        "finished fold, so this only re-renders).")
    args = parser.parse_args(argv)

    work_dir = Path(args.work_dir)
    base = base_config(args, work_dir)
    exp = load_experiment("synthetic", protocol="ck7", seed=args.seed)
    folds = list(range(args.run_folds))
    doc = {"settings": settings(args, exp, folds), "environment": environment(),
           "variants": [], "notes": [n for n in args.notes.split("\n") if n]}
    for variant in args.variants.split(","):
        config = dataclasses.replace(base, variant=variant,
                                     model_dir=str(work_dir / variant))
        doc["variants"].append(run_folds(config, exp, Path(args.share_from or work_dir), folds))
        print(markdown(doc), flush=True)

    io_atomic.write_results(args.out, doc, markdown(doc), indent=1)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return doc


if __name__ == "__main__":
    main(sys.argv[1:])
