"""Runs the FER pipeline (ExampleGen -> Transform -> Trainer -> Evaluator -> Pusher).

Quick start (synthetic faces, DirectRunner with two worker processes, a few minutes on CPU):

    python -m keras_fer.pipeline --flagfile=trainers/flagfiles/pipeline_quickstart.flags

Beam options for ExampleGen follow a ``--`` (or come as ``--beam_arg=...``), e.g. on Flink:

    python -m keras_fer.pipeline --flagfile=trainers/flagfiles/pipeline_ckplus.flags -- \\
        --runner=FlinkRunner --flink_master=localhost:8081 --environment_type=LOOPBACK

Components whose inputs, config and code are unchanged are taken from the cache; a run that
was killed is finished by running the same command again.
"""

import json

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
_MAX_REGRESSION = flags.DEFINE_float("max_regression", 1.0, "Largest accepted accuracy drop "
                                     "against the served model (percentage points).")


def main(argv):
    from keras_fer.pipeline.pipeline import PipelineConfig, run_pipeline

    config = PipelineConfig(
        pipeline_root=_ROOT.value,
        dataset_format=_FORMAT.value,
        dataset_path=_PATH.value,
        reader_kwargs=json.loads(_READER_KWARGS.value),
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


if __name__ == "__main__":
    app.run(main)
