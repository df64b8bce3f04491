"""Transform: one preprocessing function for training and serving (no training/serving skew).

The same encoded face goes through (a) the Trainer's input path: TFRecord -> Transform
artifact's ``decode_faces`` -> experiment pack -> the runner's ``to_model_input``, and (b) the
exported SavedModel's ``serving_default``. A probe "model" that only flattens its input makes
the serving signature return the exact tensor its preprocessing produced.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_fer.data import preprocess, tfrecords
from keras_fer.data.synthetic import make_synthetic
from keras_fer.export.savedmodel import export_savedmodel
from keras_fer.pipeline import transform
from keras_fer.pipeline.trainer import FnArgs, build_experiment
from keras_fer.data.packs import load_pack, save_pack

PIXELS = preprocess.INPUT_SIZE * preprocess.INPUT_SIZE


@pytest.fixture(scope="module")
def faces():
    table = make_synthetic(n_subjects=4, images_per_class=1, classes="ck7", seed=5)
    return table


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, faces):
    """A Transform artifact and an ExampleGen-style split written from ``faces``."""
    root = tmp_path_factory.mktemp("transform")
    transform.save_transform_graph(root / "transform" / transform.TRANSFORM_DIR)
    for split, subjects in (("train", faces.subject[:14]), ("eval", faces.subject[14:])):
        (root / "examples" / split).mkdir(parents=True)
        path = root / "examples" / split / f"data-00000-of-00001{tfrecords.FILE_SUFFIX}"
        with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
            for i in np.flatnonzero(np.isin(faces.subject, subjects)):
                writer.write(tfrecords.make_example(
                    tfrecords.encode_png(faces.images[i]), int(faces.expression[i]),
                    str(faces.subject[i]), split=split, source=f"face_{i:03d}"))
    return root


@pytest.fixture(scope="module")
def probe_savedmodel(tmp_path_factory):
    """A SavedModel whose 'probabilities' are its flattened preprocessed input."""
    image = keras.Input((48, 48, 1), name="image")
    model = keras.Model(image, keras.layers.Flatten(name="probe")(image))
    out = tmp_path_factory.mktemp("probe") / "savedmodel"
    export_savedmodel(model, [f"pixel_{i}" for i in range(PIXELS)], out)
    return tf.saved_model.load(str(out))


def _serve(loaded, pngs):
    out = loaded.signatures["serving_default"](images=tf.constant(pngs))
    return out["probabilities"].numpy().reshape(-1, 48, 48, 1)


def test_training_input_path_equals_serving_path(artifact, probe_savedmodel, faces, tmp_path):
    fn_args = FnArgs(
        train_files=[str(p) for p in (artifact / "examples" / "train").iterdir()],
        eval_files=[str(p) for p in (artifact / "examples" / "eval").iterdir()],
        transform_output=str(artifact / "transform"),
        serving_model_dir=str(tmp_path / "unused"),
        model_run_dir=str(tmp_path / "run"),
        custom_config={"method": "idennet", "dataset": "synthetic", "protocol": "ck7"},
    )
    exp = load_pack(save_pack(build_experiment(fn_args), tmp_path, use_orl=False))
    # What the runner feeds the model at test time, from what the Trainer trained on.
    training_x = preprocess.to_model_input(exp.faces)
    # The experiment keeps train then eval records, each sorted by source ("face_000"...),
    # which is the synthetic table's order here.
    pngs = [tfrecords.encode_png(im) for im in faces.images]
    serving_x = _serve(probe_savedmodel, pngs)
    assert training_x.dtype == serving_x.dtype == np.float32
    # Bit-identical: both paths multiply by the float32 reciprocal of 255 (a graph would
    # rewrite a division that way anyway; see preprocess.INV_255).
    np.testing.assert_array_equal(training_x, serving_x)
    # Evaluation records are the pack's test split, in the same order.
    np.testing.assert_array_equal(exp.fixed_split[2], np.arange(14, 28))


def test_preprocessing_fn_is_the_serving_preprocessing(artifact, probe_savedmodel, faces):
    pngs = [tfrecords.encode_png(im) for im in faces.images[:6]]
    # A colour JPEG of another size goes through the same decode + resize + crop.
    rgb = np.stack([faces.images[0]] * 3, axis=-1)[:50, :56]
    pngs.append(tf.io.encode_jpeg(rgb).numpy())
    serving_x = _serve(probe_savedmodel, pngs)
    # As a graph (how serving runs it) the Transform's function is bit-identical.
    graph_fn = tf.function(transform.preprocessing_fn)
    np.testing.assert_array_equal(graph_fn(tf.constant(pngs)).numpy(), serving_x)
    graph = transform.TransformGraph(artifact / "transform" / transform.TRANSFORM_DIR)
    np.testing.assert_array_equal(graph.preprocess(pngs), serving_x)
    np.testing.assert_array_equal(graph.decode_faces(pngs[:6]), faces.images[:6])
    # Golden values: the centre 48x48 of the 60x60 face, times the float32 1/255.
    np.testing.assert_array_equal(
        serving_x[0, ..., 0], faces.images[0][6:54, 6:54].astype(np.float32) * np.float32(1 / 255))


def test_decode_faces_rejects_crops_of_the_wrong_size(artifact):
    graph = transform.TransformGraph(artifact / "transform" / transform.TRANSFORM_DIR)
    with pytest.raises(tf.errors.InvalidArgumentError):
        graph.decode_faces([tfrecords.encode_png(np.zeros((48, 48), np.uint8))])
    with pytest.raises(ValueError, match="empty batch"):
        graph.decode_faces([])
