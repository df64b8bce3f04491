"""The whole DAG on synthetic faces with a tiny trainer: crash, rerun, cache, push once.

One module-scoped sequence (the Trainer is the expensive part and runs exactly once):

1. the Evaluator crashes after a partial write: ExampleGen, Transform and Trainer finish;
2. rerun: those three come from the cache, Evaluator and Pusher run, version 1 is pushed;
3. rerun: the served model changed (it is now the candidate), so Evaluator and Pusher run
   again, and the Pusher recognises the candidate as already served: no version 2;
4. the CLI (another process) finds everything cached.
"""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from keras_fer.data import tfrecords
from keras_fer.data.labels import CANONICAL
from keras_fer.pipeline import artifacts
from keras_fer.pipeline.example_gen import read_statistics
from keras_fer.pipeline.pipeline import COMPONENTS, PipelineConfig, build_components, run_pipeline

pytestmark = pytest.mark.slow

TRAINER_FLAGS = ("--variant=original", "--depth=16", "--pretrain_epochs=1", "--epochs=1",
                 "--batch_size=32")
SYNTHETIC = {"n_subjects": 10, "images_per_class": 1, "classes": "ck7"}


def _crashing(executor):
    def crash(inputs, out):
        (out / "evaluation.json").write_text("{")  # the start of a write, then the crash
        raise RuntimeError("simulated crash in the Evaluator")

    return crash


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    config = PipelineConfig(
        pipeline_root=str(tmp / "root"), dataset_format="synthetic", reader_kwargs=SYNTHETIC,
        folds=5, eval_fold=1, trainer_flags=TRAINER_FLAGS, serving_dir=str(tmp / "serving"),
        model_name="fer", min_accuracy=0.0, max_regression=1.0)
    components = [dataclasses.replace(c, executor=_crashing(c.executor))
                  if c.name == "Evaluator" else c for c in build_components(config)]
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_pipeline(config, components)
    finished = {name: sorted(p.name for p in (tmp / "root" / name).iterdir())
                for name in ("Trainer", "Evaluator")}
    second = run_pipeline(config)
    third = run_pipeline(config)
    return config, tmp, finished, second, third


def test_crash_leaves_finished_components_and_no_partial_artifact(runs):
    config, tmp, finished, _, _ = runs
    assert len(finished["Trainer"]) == 1 and not finished["Trainer"][0].startswith(".")
    # The crashed Evaluator left only its hidden temporary directory.
    assert [n.startswith(".tmp-") for n in finished["Evaluator"]] == [True]


def test_rerun_finishes_from_the_cache_and_pushes(runs):
    config, tmp, _, second, _ = runs
    assert second.cached == ["ExampleGen", "Transform", "Trainer"]
    assert second.executed == ["Evaluator", "Pusher"]
    pushed = json.loads(second.artifacts["Pusher"].path("pushed_file").read_text())
    assert pushed["pushed"] is True
    assert sorted(p.name for p in (tmp / "serving" / "fer").iterdir()) == ["1"]
    assert (tmp / "serving" / "models.config").exists()
    assert not any(p.name.startswith(".tmp-") for p in (tmp / "root" / "Evaluator").iterdir())


def test_trainer_ran_the_cli_on_the_example_gen_splits(runs):
    _, _, _, second, _ = runs
    trainer = second.artifacts["Trainer"]
    results = json.loads(trainer.path("results").read_text())
    run_config = json.loads((trainer.uri / "model_run" / "config.json").read_text())
    assert run_config["depth"] == 16 and run_config["variant"] == "original"
    assert run_config["method"] == "idennet" and run_config["dataset"] == "synthetic"
    assert len(results["folds"]) == 1
    stats = read_statistics(second.artifacts["ExampleGen"].uri)
    assert results["folds"][0]["test_subjects"] == sorted(stats["per_split"]["eval"]["subjects"])
    assert set(results["folds"][0]["train_subjects"]).isdisjoint(
        stats["per_split"]["eval"]["subjects"])
    # Lineage: the Trainer's metadata names the exact upstream artifacts.
    meta = artifacts.read_metadata(trainer.uri)
    for name in ("ExampleGen", "Transform"):
        assert meta["inputs"][name]["fingerprint"] == second.artifacts[name].fingerprint
    assert meta["config"]["trainer_flags"] == list(TRAINER_FLAGS)


def test_evaluation_and_pushed_model_serve_the_eval_split(runs):
    import tensorflow as tf

    _, tmp, _, second, _ = runs
    evaluation = json.loads(second.artifacts["Evaluator"].path("evaluation").read_text())
    candidate = evaluation["candidate"]
    assert candidate["count"] == 14 and len(candidate["per_subject"]) == 2
    assert sum(c["count"] for c in candidate["per_class"].values()) == 14
    assert evaluation["baseline"] is None and evaluation["blessed"] is True
    eval_split = tfrecords.read_split(str(second.artifacts["ExampleGen"].uri), "eval")
    served = tf.saved_model.load(str(tmp / "serving" / "fer" / "1"))
    out = served.signatures["serving_default"](images=tf.constant(list(eval_split["image"])))
    np.testing.assert_allclose(out["probabilities"].numpy().sum(axis=1), 1.0, atol=1e-5)
    accuracy = 100.0 * np.mean([CANONICAL.index(n.decode()) == e for n, e in
                                zip(out["class_name"].numpy(), eval_split["expression"])])
    assert accuracy == pytest.approx(candidate["accuracy"])
    # The trainer scored the same split through the training input path: same accuracy.
    results = json.loads(second.artifacts["Trainer"].path("results").read_text())
    assert results["folds"][0]["accuracy"] == pytest.approx(candidate["accuracy"])


def test_rerun_after_push_does_not_push_the_same_model_again(runs):
    _, tmp, _, _, third = runs
    assert third.cached == ["ExampleGen", "Transform", "Trainer"]
    pushed = json.loads(third.artifacts["Pusher"].path("pushed_file").read_text())
    assert pushed == {"pushed": False, "version_dir": str(tmp / "serving" / "fer" / "1"),
                      "reason": "already served as version 1"}
    evaluation = json.loads(third.artifacts["Evaluator"].path("evaluation").read_text())
    assert evaluation["baseline"]["same_as_candidate"] is True
    assert sorted(p.name for p in (tmp / "serving" / "fer").iterdir()) == ["1"]


def test_cli_in_a_new_process_finds_everything_cached(runs):
    config, _, _, _, third = runs
    argv = [sys.executable, "-m", "keras_fer.pipeline",
            f"--pipeline_root={config.pipeline_root}", "--dataset_format=synthetic",
            f"--reader_kwargs={json.dumps(SYNTHETIC)}", "--folds=5", "--eval_fold=1",
            *[f"--trainer_flag={f}" for f in TRAINER_FLAGS],
            f"--serving_dir={config.serving_dir}", "--model_name=fer"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"executed [], cached {list(COMPONENTS)}" in out.stdout
    assert third.artifacts["Pusher"].uri.name in out.stdout
