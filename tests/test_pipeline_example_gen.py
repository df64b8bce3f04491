"""ExampleGen: Beam (two worker processes) -> tf.Example TFRecords + statistics, subject-disjoint.
"""

import shutil

import numpy as np
import pytest

from keras_fer.data import readers, tfrecords
from keras_fer.data.labels import CANONICAL
from keras_fer.data.preprocess import resize_uint8
from keras_fer.data.synthetic import make_synthetic
from keras_fer.pipeline.example_gen import (
    ExampleGenConfig,
    assign_splits,
    read_statistics,
    run_example_gen,
    split_names,
)

SYNTHETIC = {"n_subjects": 10, "images_per_class": 1, "classes": "ck7", "seed": 3}
MULTI_WORKER = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def _decode(png):
    from io import BytesIO

    from PIL import Image

    return np.asarray(Image.open(BytesIO(png)))


def test_example_bytes_parse_as_tensorflow_examples():
    import tensorflow as tf

    face = np.arange(60 * 60, dtype=np.uint32).reshape(60, 60).astype(np.uint8)
    serialized = tfrecords.make_example(tfrecords.encode_png(face), expression=4, subject="S010",
                                        sequence="S010_002", frame_role="peak", fold=3,
                                        split="eval", source="a/b.png")
    spec = {tfrecords.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
    spec.update({k: tf.io.FixedLenFeature([], tf.int64) for k in tfrecords.INT_FEATURES})
    spec.update({k: tf.io.FixedLenFeature([], tf.string) for k in tfrecords.STRING_FEATURES})
    parsed = tf.io.parse_single_example(serialized, spec)
    assert int(parsed["expression"]) == 4 and int(parsed["fold"]) == 3
    assert parsed["subject"].numpy() == b"S010" and parsed["split"].numpy() == b"eval"
    np.testing.assert_array_equal(tf.io.decode_png(parsed["image"])[..., 0].numpy(), face)
    assert tfrecords.parse_example(serialized)["sequence"] == "S010_002"
    with pytest.raises(ValueError, match="split must be one of"):
        tfrecords.make_example(b"", 0, split="valid")


@pytest.fixture(scope="module")
def synthetic_examples(tmp_path_factory):
    out = tmp_path_factory.mktemp("examples")
    config = ExampleGenConfig("synthetic", reader_kwargs=SYNTHETIC, folds=5, eval_fold=2)
    properties = run_example_gen(config, out, MULTI_WORKER)
    return out, properties


def test_multi_worker_run_writes_every_record_once(synthetic_examples):
    out, properties = synthetic_examples
    table = make_synthetic(**SYNTHETIC)
    # Two workers wrote the shards.
    assert len(list((out / "train").glob("data-*-of-00002.tfrecord.gz"))) == 2
    assert split_names(out) == ["train", "eval"]
    train, evaluation = tfrecords.read_split(str(out), "train"), tfrecords.read_split(
        str(out), "eval")
    assert len(train["source"]) + len(evaluation["source"]) == len(table) == 70
    assert properties["splits"] == {"train": len(train["source"]),
                                    "eval": len(evaluation["source"])}
    # Synthetic faces are already 60x60 crops: the stored PNG holds the same pixels.
    by_source = {str(p): i for i, p in enumerate(table.path)}
    for columns in (train, evaluation):
        for png, source, subject, expression in zip(columns["image"], columns["source"],
                                                    columns["subject"], columns["expression"]):
            i = by_source[source]
            np.testing.assert_array_equal(_decode(png), table.images[i])
            assert subject == table.subject[i] and expression == table.expression[i]


def test_splits_are_subject_disjoint_and_follow_the_folds(synthetic_examples):
    out, _ = synthetic_examples
    table = make_synthetic(**SYNTHETIC)
    split, fold = assign_splits(table, 5, 2, seed=0)
    train, evaluation = tfrecords.read_split(str(out), "train"), tfrecords.read_split(
        str(out), "eval")
    assert set(train["subject"]).isdisjoint(evaluation["subject"])
    assert set(evaluation["fold"].tolist()) == {2}
    assert set(evaluation["subject"]) == set(table.subject[fold == 2])
    assert set(train["fold"].tolist()) == {0, 1, 3, 4}


def test_statistics_count_classes_subjects_and_splits(synthetic_examples):
    out, _ = synthetic_examples
    stats = read_statistics(out)
    table = make_synthetic(**SYNTHETIC)
    evaluation = tfrecords.read_split(str(out), "eval")
    # Hand count: 10 subjects x 7 classes x 1 image.
    assert stats["num_examples"] == 70
    assert stats["classes"] == {CANONICAL[e]: 10 for e in set(table.expression.tolist())}
    assert stats["subjects"] == {s: 7 for s in table.subject}
    assert stats["per_split"]["eval"]["subjects"] == {s: 7 for s in set(evaluation["subject"])}
    assert sum(stats["per_split"]["eval"]["classes"].values()) == len(evaluation["subject"])
    assert stats["subjects_in_several_splits"] == []
    assert stats["skipped"]["count"] == 0


def test_ckplus48_subset_resizes_crops_and_reports_skipped(ckplus48_dir, tmp_path):
    # A few dozen CK+48 files (3 classes x 12) plus one corrupt file in a tmp copy.
    root = tmp_path / "CK+48"
    for cls in ("happy", "surprise", "anger"):
        (root / cls).mkdir(parents=True)
        for path in sorted((ckplus48_dir / cls).glob("*.png"))[:12]:
            shutil.copy(path, root / cls / path.name)
    (root / "anger" / "S999_001_00000001.png").write_bytes(b"not a png")
    out = tmp_path / "examples"
    config = ExampleGenConfig("ckplus48", str(root), folds=3, eval_fold=0)
    properties = run_example_gen(config, out)
    table = readers.read_ckplus48(root)
    assert properties["num_examples"] == len(table) == 36
    stats = read_statistics(out)
    assert stats["skipped"]["count"] == 1 and stats["skipped"]["at_read_time"] == 1
    assert stats["subjects_in_several_splits"] == []
    columns = tfrecords.read_split(str(out), "train")
    i = list(table.path).index(columns["source"][0])
    np.testing.assert_array_equal(_decode(columns["image"][0]),
                                  resize_uint8(table.images[i:i + 1], 60)[0])


def test_staging_dir_output_is_copied_into_the_artifact(tmp_path):
    # Dataflow's workers write to gs://; a second local folder exercises the same copy.
    config = ExampleGenConfig("synthetic", reader_kwargs=dict(SYNTHETIC, n_subjects=5),
                              folds=5, eval_fold=0)
    out, staging = tmp_path / "artifact", tmp_path / "staging"
    out.mkdir()
    properties = run_example_gen(config, out, staging_dir=str(staging))
    assert properties["num_examples"] == 35
    assert split_names(out) == ["train", "eval"]
    for split in ("train", "eval"):
        assert sorted(p.name for p in (out / split).iterdir()) == sorted(
            p.name for p in (staging / split).glob("data-*"))
    train = tfrecords.read_split(str(out), "train")
    assert len(train["source"]) == properties["splits"]["train"] == 28
    assert read_statistics(out) == read_statistics(staging)


def test_ferplus_mosaic_records_ship_their_pixels(ferplus_dir, tmp_path):
    # A mosaic tile's record path names the face, not a file: its pixels travel with it.
    config = ExampleGenConfig("ferplus", str(ferplus_dir), reader_kwargs={"limit": 8})
    properties = run_example_gen(config, tmp_path / "examples")
    table = readers.read_ferplus(ferplus_dir, limit=8)
    assert properties["num_examples"] == len(table) and properties["skipped"] == 0
    assert split_names(tmp_path / "examples") == ["train", "eval", "test"]
    columns = tfrecords.read_split(str(tmp_path / "examples"), "test")
    i = list(table.path).index(columns["source"][0])
    assert table.split[i] == "test"
    np.testing.assert_array_equal(_decode(columns["image"][0]),
                                  resize_uint8(table.images[i:i + 1], 60)[0])
