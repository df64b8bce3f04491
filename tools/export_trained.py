"""Exports a model trained on the GPU machine into the repo's ``saved_models/`` (TF Serving
layout) with its TFLite variants and a parity/accuracy report on the held-out split.

The GPU machine trains with Keras on JAX and sends back ``inference.keras``; this loads it
under TensorFlow, rebuilds the fold's (or FER+'s fixed) test split from the same data pack
the run used, and calls :func:`keras_fer.export.export_fold`:

    python tools/export_trained.py --model=runs/.../fold_0/inference.keras \\
        --dataset=ferplus --data_dir=.devdata --name=idennet_ferplus

Writes ``saved_models/<name>/<version>/`` (pushed only if it passes the parity check),
``saved_models/<name>_tflite/`` (TFLite files and ``export_report.json``/``.md``). A wrong
argument (model file, dataset, data folder, formats, fold) is one ``error:`` line and exit
status 2, checked before anything is loaded (the traceback with ``--verbose``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]


def _relative(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _relative_report_paths(report_path: Path, pushed) -> None:
    """Repo-relative paths in the committed report (the SavedModel copy lives in ``pushed``)."""
    if not report_path.exists():
        return
    report = json.loads(report_path.read_text())
    for name, entry in report.get("variants", {}).items():
        path = pushed if (name == "savedmodel" and pushed is not None) else entry["path"]
        entry["path"] = _relative(path)
    report_path.write_text(json.dumps(report, indent=1) + "\n")


class ArgumentError(ValueError):
    """A command-line argument that cannot work; the message names it and the fix."""


def check_args(args) -> None:
    """Raises ArgumentError (or ``settings.ConfigError``) for a wrong argument."""
    from keras_fer.data import registry
    from keras_fer.export import parse_formats
    from keras_fer.training import settings

    if not Path(args.model).is_file():
        raise ArgumentError(f"--model={args.model} is not a file; give a trainer run's "
                            "fold_<k>/inference.keras.")
    if args.dataset not in registry.REGISTRY:
        raise ArgumentError(f"--dataset={args.dataset}: valid: {', '.join(registry.DATASETS)}.")
    try:
        parse_formats(args.formats)
    except ValueError as err:
        raise ArgumentError(f"--formats={args.formats}: {err}") from None
    if args.fold < 0:
        raise ArgumentError(f"--fold={args.fold}: give the fold the model was trained on (>= 0).")
    settings.check_data_dir(args.dataset, args.data_dir)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="inference.keras from a trainer run")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data_dir", default="")
    parser.add_argument("--protocol", default="")
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--fold", type=int, default=0, help="the fold the model was trained on")
    parser.add_argument("--val_fraction", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", required=True, help="model name under saved_models/")
    parser.add_argument("--formats", default="savedmodel,tflite_float32,tflite_float16,"
                        "tflite_dynamic,tflite_int8")
    parser.add_argument("--serving_dir", default=str(REPO / "saved_models"))
    parser.add_argument("--qat_epochs", type=int, default=1,
                        help="fine-tuning epochs of tflite_qat on the training split")
    parser.add_argument("--source", default="", help="where the model came from, for "
                        "source.json (default: the --model path)")
    parser.add_argument("--verbose", action="store_true",
                        help="on an error, print the full traceback instead of one line")
    args = parser.parse_args(argv)
    from keras_fer.data.readers import DatasetError
    from keras_fer.training.settings import ConfigError

    try:
        check_args(args)
        export(args)
    except (ArgumentError, ConfigError, DatasetError, FileNotFoundError) as err:
        if args.verbose:
            raise
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


def export(args) -> None:
    """Loads the model and the fold's data, exports, pushes and writes ``source.json``."""
    from keras_fer.export import export_fold
    from keras_fer.models.loading import load_model
    from keras_fer.data.experiments import fold_indices, load_experiment, make_fold

    model = load_model(args.model)
    exp = load_experiment(args.dataset, args.data_dir, args.protocol, seed=args.seed)
    idx = fold_indices(exp, args.folds, args.seed, args.val_fraction)
    fold = min(args.fold, len(idx) - 1)
    data = make_fold(exp, fold, idx[fold], seed=args.seed)
    out_dir = Path(args.serving_dir) / f"{args.name}_tflite"
    result = export_fold(
        model,
        data,
        args.formats,
        out_dir,
        representative_count=500,
        qat_epochs=args.qat_epochs,
        serving_base_dir=args.serving_dir if "savedmodel" in args.formats else None,
        model_name=args.name if "savedmodel" in args.formats else None,
    )
    # The pushed version is the SavedModel: no second copy beside the TFLite files.
    if result.pushed is not None and (out_dir / "savedmodel").exists():
        shutil.rmtree(out_dir / "savedmodel")
    _relative_report_paths(out_dir / "export_report.json", result.pushed)
    (out_dir / "source.json").write_text(json.dumps({
        "trained_model": args.source or str(args.model), "dataset": args.dataset,
        "protocol": exp.protocol, "fold": fold, "test_faces": int(len(data.y_test)),
        "pushed": None if result.pushed is None else _relative(result.pushed),
    }, indent=1) + "\n")
    print(json.dumps(result.report, indent=1) if result.report else "no report")
    print(f"pushed: {result.pushed}")


if __name__ == "__main__":
    sys.exit(main())
