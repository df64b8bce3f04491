"""Runs the FER pipeline (ExampleGen -> Transform -> Trainer -> Evaluator -> Pusher).

Quick start (synthetic faces, DirectRunner with two worker processes, a few minutes on CPU):

    python -m keras_fer.pipeline --flagfile=trainers/flagfiles/pipeline_quickstart.flags

Beam options for ExampleGen follow a ``--`` (or come as ``--beam_arg=...``), e.g. on Flink:

    python -m keras_fer.pipeline --flagfile=trainers/flagfiles/pipeline_ckplus.flags -- \\
        --runner=FlinkRunner --flink_master=localhost:8081 --environment_type=LOOPBACK

Components whose inputs, config and code are unchanged are taken from the cache; a run that
was killed is finished by running the same command again. A mistake in the flags, a dataset
that cannot be read or a root in use by another run is one ``error:`` line and exit status 2
(the traceback with ``--verbose``).
"""

import json
import sys
from pathlib import Path

from absl import app, flags

from keras_fer.pipeline.example_gen import DETECT_MODES

_ROOT = flags.DEFINE_string("pipeline_root", "runs/pipeline", "Artifact root.")
_FORMAT = flags.DEFINE_string("dataset_format", "synthetic",
                              "synthetic, or a reader: ckplus48, ckplus_neutral, ferplus, "
                              "fer2013_csv, fer2013_recovered, folder.")
_PATH = flags.DEFINE_string("dataset_path", "", "Dataset folder or CSV.")
_READER_KWARGS = flags.DEFINE_string("reader_kwargs", "{}", "Reader arguments as JSON.")
_DETECT = flags.DEFINE_enum("detect", "auto", list(DETECT_MODES),
                            "Face detection + alignment: auto skips it for crop datasets.")
_FOLDS = flags.DEFINE_integer("folds", 5, "Subject-disjoint folds.")
_EVAL_FOLD = flags.DEFINE_integer("eval_fold", 0, "Fold held out as the eval split.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of folds, validation split and training.")
_BEAM_ARG = flags.DEFINE_multi_string("beam_arg", [], "A Beam pipeline option (repeatable).")
_STAGING = flags.DEFINE_string("beam_staging_dir", "", "URI the Beam workers write to when "
                               "they cannot reach --pipeline_root (Dataflow: gs://...).")
_METHOD = flags.DEFINE_enum("method", "idennet", ["idennet", "tfe", "idferm", "ifgan"],
                            "Trainer method (python -m trainers.<method>).")
_PROTOCOL = flags.DEFINE_string("protocol", "", "Class protocol (default: the dataset's).")
_TRAINER_FLAG = flags.DEFINE_multi_string(
    "trainer_flag", [], "A flag for the trainer CLI, e.g. "
    "--trainer_flag=--flagfile=trainers/flagfiles/quickstart.flags (repeatable).")
_VAL_FRACTION = flags.DEFINE_float("val_fraction", 0.1, "Validation share of train subjects.")
_SERVING_DIR = flags.DEFINE_string("serving_dir", "saved_models", "TF Serving root.")
_MODEL_NAME = flags.DEFINE_string("model_name", "fer", "Served model name.")
_MIN_ACCURACY = flags.DEFINE_float("min_accuracy", 0.0, "Blessing threshold (percent).")
_VERBOSE = flags.DEFINE_bool("verbose", False, "On an error, print the full traceback instead "
                             "of one line.")
_MAX_REGRESSION = flags.DEFINE_float("max_regression", 1.0, "Largest accepted accuracy drop "
                                     "against the served model (percentage points).")


def _reader_kwargs() -> dict:
    try:
        value = json.loads(_READER_KWARGS.value or "{}")
    except ValueError as err:
        raise app.UsageError(f"--reader_kwargs is not valid JSON ({err}): "
                             f"{_READER_KWARGS.value[:80]!r}") from None
    if not isinstance(value, dict):
        raise app.UsageError("--reader_kwargs must be a JSON object, e.g. "
                             "'{\"subject_regex\": \"^(S[0-9]+)_\"}'")
    return value


def check_flags() -> None:
    """The flags a run depends on, checked before any component starts (UsageError)."""
    from keras_fer.data import registry

    fmt = _FORMAT.value
    if registry.dataset_for_format(fmt) is None:
        formats = sorted(f for d in registry.REGISTRY.values() for f in d.formats)
        raise app.UsageError(f"--dataset_format={fmt}: not a format the trainers can train on; "
                             f"valid: {', '.join(formats)}.")
    if fmt != "synthetic":
        if not _PATH.value:
            raise app.UsageError(f"--dataset_path is required for --dataset_format={fmt} (the "
                                 "dataset's own folder or CSV, e.g. .../ckplus48/CK+48).")
        if not Path(_PATH.value).exists():
            raise app.UsageError(f"--dataset_path={_PATH.value} does not exist.")
        own = registry.folder_under_root(fmt, _PATH.value)
        if own is not None:
            raise app.UsageError(f"--dataset_path={_PATH.value} is the data root (the trainers' "
                                 f"--data_dir); the pipeline reads the dataset itself: "
                                 f"--dataset_path={own}")
    if _FOLDS.value < 2 or not 0 <= _EVAL_FOLD.value < _FOLDS.value:
        raise app.UsageError(f"--folds={_FOLDS.value} --eval_fold={_EVAL_FOLD.value}: need "
                             "folds >= 2 and 0 <= eval_fold < folds.")


def main(argv):
    from keras_fer.pipeline.pipeline import PipelineConfig, run_pipeline

    check_flags()
    config = PipelineConfig(
        pipeline_root=_ROOT.value,
        dataset_format=_FORMAT.value,
        dataset_path=_PATH.value,
        reader_kwargs=_reader_kwargs(),
        detect=_DETECT.value,
        folds=_FOLDS.value,
        eval_fold=_EVAL_FOLD.value,
        seed=_SEED.value,
        beam_args=tuple(_BEAM_ARG.value) + tuple(argv[1:]),
        beam_staging_dir=_STAGING.value,
        method=_METHOD.value,
        protocol=_PROTOCOL.value,
        trainer_flags=tuple(_TRAINER_FLAG.value),
        val_fraction=_VAL_FRACTION.value,
        serving_dir=_SERVING_DIR.value,
        model_name=_MODEL_NAME.value,
        min_accuracy=_MIN_ACCURACY.value,
        max_regression=_MAX_REGRESSION.value,
    )
    result = run_pipeline(config)
    print(f"[pipeline] executed {result.executed}, cached {result.cached}; log {result.run_log}")
    pushed = json.loads(result.artifacts["Pusher"].path("pushed_file").read_text())
    print(f"[pipeline] {pushed['reason']}")


def guarded(argv):
    """``main`` with user mistakes as one ``error:`` line and exit status 2."""
    from keras_fer.data.readers import DatasetError
    from keras_fer.pipeline.runner import PipelineLockedError

    try:
        return main(argv)
    except (app.UsageError, DatasetError, PipelineLockedError, FileNotFoundError) as err:
        if _VERBOSE.value:
            raise
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    app.run(guarded)
