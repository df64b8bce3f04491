"""Flags shared by every trainer (the project-wide trainer contract).

Every trainer accepts ``--flagfile=...`` (built into absl); any flag given on the command
line after it overrides the flagfile's value. Every setting is checked before anything is
written (:func:`keras_fer.training.settings.validate`); a user mistake (a bad flag value, an
unknown ``--extra`` key, a wrong ``--data_dir``, a ``--model_dir`` in use or holding another
configuration) ends the run with one line on stderr and exit status 2, the traceback only
with ``--verbose``. Each trainer's ``main`` is :func:`trainer_main`.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from keras_fer.data import registry
from keras_fer.inference.quiet import native_stderr_back

_DATASET = flags.DEFINE_enum(
    "dataset", "synthetic", list(registry.DATASETS),
    "Dataset to train and evaluate on (keras_fer.data.registry).")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", "", "Folder holding ckplus48/, ckplus_neutral/, ferplus/, orl_faces/ "
    "(default: $FER_DATA_DIR or ../shared/data).")
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Output folder (config, checkpoints, "
                                 "history, results.json, plots, exports).", required=True)
_VARIANT = flags.DEFINE_string("variant", None, "Method variant (see the trainer's --help).")
_PROTOCOL = flags.DEFINE_string("protocol", "", "Class subset: ck7, ck8, ck6, ferplus8, fer2013 "
                                "(default: the dataset's own).")
_DEPTH = flags.DEFINE_integer("depth", 40, "Backbone depth.")
_FOLDS = flags.DEFINE_integer("folds", 10, "Subject-disjoint folds (CK+, synthetic).")
_FOLD = flags.DEFINE_integer("fold", -1, "Run only this fold (0-based); -1 = all folds.")
_EPOCHS = flags.DEFINE_integer("epochs", 30, "Epochs of the main (fine-tuning) stage.")
_PRETRAIN_EPOCHS = flags.DEFINE_integer("pretrain_epochs", 30, "Epochs of each pretraining stage.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_LR = flags.DEFINE_float("lr", None, "Learning rate of the main stage (default: the paper's).")
_PRETRAIN_LR = flags.DEFINE_float("pretrain_lr", None, "Learning rate of pretraining stages.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for initialisation and augmentation, and for the "
                             "folds unless --fold_seed is given.")
_FOLD_SEED = flags.DEFINE_integer("fold_seed", -1, "Seed for the subject-disjoint folds; -1 = "
                                  "--seed. Keep it fixed to run several --seed values over the "
                                  "same folds (paired comparisons).")
_VAL_FRACTION = flags.DEFINE_float("val_fraction", 0.1, "Share of training subjects held out "
                                   "for validation (subject-disjoint); 0 = none, as in the papers' protocols.")
_EXPORT = flags.DEFINE_string("export", "", "Comma-separated export formats: savedmodel, "
                              "tflite_float32, tflite_float16, tflite_dynamic, tflite_int8, "
                              "tflite_qat, or all.")
_LIMIT = flags.DEFINE_integer("limit", 0, "Use at most this many images per split (FER+, "
                              "FER2013) for a quick run; 0 = all.")
_USE_ORL = flags.DEFINE_bool("use_orl", True, "Add ORL identities to identity pretraining.")
_EXTRA = flags.DEFINE_string("extra", "{}", "Method-specific settings as JSON.")
_DISTRIBUTION = flags.DEFINE_enum(
    "distribution", "none", ["none", "data_parallel", "mirrored", "multi_worker"],
    "Data parallelism (IDEnNet): data_parallel (JAX, all local GPUs), mirrored (TensorFlow, "
    "local GPUs), multi_worker (TensorFlow, cluster from TF_CONFIG). --batch_size is global.")
OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Start over: delete what --model_dir holds (a previous run of another "
    "configuration) before training. Without it, a rerun with the same settings resumes.")
VERBOSE = flags.DEFINE_bool("verbose", False, "On an error, print the full traceback "
                            "instead of one line.")
AGGREGATE_ONLY = flags.DEFINE_bool(
    "aggregate_only", False, "Train nothing: write results.json and the plots from the folds "
    "already finished in --model_dir (e.g. after one process per --fold).")


def train_config(method: str, default_variant: str, default_lr: float,
                 default_pretrain_lr: float, **overrides):
    """Builds the frozen :class:`TrainConfig` from the parsed shared flags.

    Raises:
        keras_fer.training.settings.ConfigError: malformed ``--extra`` or ``--export``.
    """
    from keras_fer.training import settings
    from keras_fer.training.config import TrainConfig, parse_export

    try:
        export = parse_export(_EXPORT.value)
    except ValueError as err:
        raise settings.ConfigError(f"--export={_EXPORT.value}: {err}") from None

    values = dict(
        method=method,
        variant=_VARIANT.value or default_variant,
        dataset=_DATASET.value,
        data_dir=_DATA_DIR.value or os.environ.get("FER_DATA_DIR", ""),
        model_dir=_MODEL_DIR.value,
        protocol=_PROTOCOL.value,
        depth=_DEPTH.value,
        folds=_FOLDS.value,
        fold=_FOLD.value,
        epochs=_EPOCHS.value,
        pretrain_epochs=_PRETRAIN_EPOCHS.value,
        batch_size=_BATCH_SIZE.value,
        lr=_LR.value if _LR.value is not None else default_lr,
        pretrain_lr=_PRETRAIN_LR.value if _PRETRAIN_LR.value is not None else default_pretrain_lr,
        seed=_SEED.value,
        fold_seed=_FOLD_SEED.value,
        val_fraction=_VAL_FRACTION.value,
        use_orl=_USE_ORL.value,
        export=export,
        limit=_LIMIT.value,
        distribution=_DISTRIBUTION.value,
        extra=settings.parse_extra(_EXTRA.value),
    )
    values.update(overrides)
    return TrainConfig(**values)


def train(method, config, experiment=None, after_fold=None) -> dict:
    """Checks ``config`` (its data folder only when ``experiment`` is not given), then trains
    and evaluates ``method`` (``--overwrite`` starts over); returns the results document."""
    from keras_fer.training import runner, settings

    settings.validate(config, check_data=experiment is None)
    overwrite = OVERWRITE.value if flags.FLAGS.is_parsed() else False
    return runner.train_and_evaluate(method, config, experiment=experiment,
                                     after_fold=after_fold, overwrite=overwrite)


def aggregate(method, config) -> dict:
    """``--aggregate_only``: ``results.json`` and the method's summary from finished folds."""
    from keras_fer.training import runner, settings

    settings.validate(config)
    return runner.aggregate(config, method=method)


def trainer_main(config_from_flags, make_method, after_fold_for=None):
    """The ``main`` of a trainer: the config from the flags, then :func:`aggregate` (with
    ``--aggregate_only``) or :func:`train` of ``make_method()``, with the per-fold callback
    ``after_fold_for(config)`` when given."""

    def main(argv):
        del argv
        config = config_from_flags()
        method = make_method()
        native_stderr_back()  # the flags are checked: TensorFlow's own lines may show again
        if AGGREGATE_ONLY.value:
            aggregate(method, config)
        else:
            train(method, config,
                  after_fold=after_fold_for(config) if after_fold_for is not None else None)

    return main


def user_errors() -> tuple:
    """The exceptions that are a user's mistake, not a bug: one line, exit status 2."""
    from keras_fer.data.readers import DatasetError
    from keras_fer.training.rundir import RunDirError
    from keras_fer.training.settings import ConfigError

    return (app.UsageError, ConfigError, RunDirError, DatasetError, FileNotFoundError)


def one_line(err: BaseException, limit: int = 400) -> str:
    """``err``'s message on one line, at most ``limit`` characters."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def guarded(main):
    """``main`` with user mistakes turned into ``error: <message>`` and exit status 2 (the
    traceback with ``--verbose``)."""

    def run(argv):
        try:
            return main(argv)
        except user_errors() as err:
            if VERBOSE.value:
                raise
            print(f"error: {one_line(err)}", file=sys.stderr)
            return 2

    return run


def start(main) -> None:
    """``app.run`` of a trainer's ``main``, guarded (see :func:`guarded`)."""
    app.run(guarded(main))
