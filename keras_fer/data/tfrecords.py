"""TFRecords of ``tf.Example`` face records: what ExampleGen writes and the Trainer reads.

One example per aligned face crop::

    image       bytes  PNG of the aligned uint8 gray crop (ALIGNED_SIZE x ALIGNED_SIZE)
    expression  int64  canonical class index (``labels.CANONICAL``)
    subject     bytes  subject id ("" when the dataset has none)
    sequence    bytes  sequence id ("" when none)
    frame_role  bytes  neutral / peak / unknown
    fold        int64  subject-disjoint fold of the record (-1 for a dataset's fixed split)
    split       bytes  train / eval / test
    source      bytes  the file (or CSV row) the face came from, also the sort key

Writers build the protocol buffer without TensorFlow: the ``Example`` messages are declared
here, in a private descriptor pool, with the field numbers of TensorFlow's ``example.proto``
and ``feature.proto``, so the bytes are ``tf.train.Example`` bytes (a test parses them with
TensorFlow) while Beam workers never pay TensorFlow's import time. Readers use ``tf.data``.
"""

from __future__ import annotations

import functools
import io
from typing import Dict, Iterable, Mapping, Sequence

import numpy as np

IMAGE_KEY = "image"
INT_FEATURES = ("expression", "fold")
STRING_FEATURES = ("subject", "sequence", "frame_role", "split", "source")
SPLITS = ("train", "eval", "test")
FILE_SUFFIX = ".tfrecord.gz"


@functools.lru_cache(maxsize=1)
def _example_class():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="keras_fer_example.proto", package="keras_fer_example", syntax="proto3"
    )

    def add_fields(msg, fields):
        for number, (fname, ftype, label, type_name, oneof) in enumerate(fields, start=1):
            field = msg.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = type_name
            if oneof is not None:
                field.oneof_index = oneof

    rep, opt = fdp.LABEL_REPEATED, fdp.LABEL_OPTIONAL
    for name, ftype in (("BytesList", fdp.TYPE_BYTES), ("FloatList", fdp.TYPE_FLOAT),
                        ("Int64List", fdp.TYPE_INT64)):
        msg = proto.message_type.add(name=name)
        add_fields(msg, [("value", ftype, rep, "", None)])
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    add_fields(feature, [
        ("bytes_list", fdp.TYPE_MESSAGE, opt, ".keras_fer_example.BytesList", 0),
        ("float_list", fdp.TYPE_MESSAGE, opt, ".keras_fer_example.FloatList", 0),
        ("int64_list", fdp.TYPE_MESSAGE, opt, ".keras_fer_example.Int64List", 0),
    ])
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    add_fields(entry, [("key", fdp.TYPE_STRING, opt, "", None),
                       ("value", fdp.TYPE_MESSAGE, opt, ".keras_fer_example.Feature", None)])
    add_fields(features, [
        ("feature", fdp.TYPE_MESSAGE, rep, ".keras_fer_example.Features.FeatureEntry", None)
    ])
    example = proto.message_type.add(name="Example")
    add_fields(example, [("features", fdp.TYPE_MESSAGE, opt, ".keras_fer_example.Features",
                          None)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("keras_fer_example.Example"))


def encode_png(face: np.ndarray) -> bytes:
    """uint8 gray ``(H, W)`` face -> PNG bytes (lossless, so decoding gives the same pixels)."""
    from PIL import Image

    face = np.asarray(face)
    if face.dtype != np.uint8 or face.ndim != 2:
        raise ValueError(
            f"Expected a uint8 (H, W) gray face. Received dtype={face.dtype}, shape={face.shape}"
        )
    buf = io.BytesIO()
    Image.fromarray(face).save(buf, format="PNG")
    return buf.getvalue()


def make_example(
    image_png: bytes,
    expression: int,
    subject: str = "",
    sequence: str = "",
    frame_role: str = "unknown",
    fold: int = -1,
    split: str = "train",
    source: str = "",
) -> bytes:
    """Serialises one face record as ``tf.train.Example`` bytes (see the module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}. Received: split={split!r}")
    example = _example_class()()
    feature = example.features.feature
    feature[IMAGE_KEY].bytes_list.value.append(bytes(image_png))
    for key, value in (("expression", expression), ("fold", fold)):
        feature[key].int64_list.value.append(int(value))
    strings = dict(subject=subject, sequence=sequence, frame_role=frame_role, split=split,
                   source=source)
    for key in STRING_FEATURES:
        feature[key].bytes_list.value.append(str(strings[key]).encode("utf-8"))
    return example.SerializeToString()


def parse_example(serialized: bytes) -> Dict[str, object]:
    """``tf.train.Example`` bytes written by :func:`make_example` -> a plain dict (no TF)."""
    example = _example_class().FromString(serialized)
    feature = example.features.feature
    missing = sorted({IMAGE_KEY, *INT_FEATURES, *STRING_FEATURES} - set(feature.keys()))
    if missing:
        raise ValueError(f"Not a keras-fer face example: features {missing} missing.")
    out: Dict[str, object] = {IMAGE_KEY: feature[IMAGE_KEY].bytes_list.value[0]}
    out.update({k: int(feature[k].int64_list.value[0]) for k in INT_FEATURES})
    out.update({k: feature[k].bytes_list.value[0].decode("utf-8") for k in STRING_FEATURES})
    return out


def split_pattern(examples_dir: str, split: str) -> str:
    """Glob of one split's shards under an ExampleGen artifact directory."""
    return f"{examples_dir}/{split}/data-*{FILE_SUFFIX}"


def read_split(examples_dir: str, split: str) -> Dict[str, np.ndarray]:
    """Reads one split of an ExampleGen artifact into columns, sorted by ``source``.

    Shards written by several Beam workers hold the records in no fixed order; sorting by the
    source path makes everything downstream (training order, folds) independent of that.

    Returns:
        ``{"image": object array of PNG bytes, "expression": int64, "fold": int64,
        "subject": str, ...}``, one entry per record; empty arrays for an empty split.

    Raises:
        FileNotFoundError: no shard of ``split`` exists under ``examples_dir``.
    """
    import glob

    files = sorted(glob.glob(split_pattern(examples_dir, split)))
    if not files:
        raise FileNotFoundError(f"No {split!r} shards under {examples_dir} "
                                f"(looked for {split_pattern(examples_dir, split)}).")
    return records_to_columns(parse_example(r) for r in iter_records(files))


def iter_records(files: Sequence[str]) -> Iterable[bytes]:
    """Serialized records of gzip TFRecord files (through ``tf.data``)."""
    import tensorflow as tf

    dataset = tf.data.TFRecordDataset(list(files), compression_type="GZIP")
    for record in dataset.as_numpy_iterator():
        yield record


def records_to_columns(records: Iterable[Mapping[str, object]]) -> Dict[str, np.ndarray]:
    """Parsed examples -> dict of columns sorted by ``source``."""
    rows = sorted(records, key=lambda r: str(r["source"]))
    images = np.empty(len(rows), dtype=object)
    for i, row in enumerate(rows):
        images[i] = row[IMAGE_KEY]
    columns: Dict[str, np.ndarray] = {IMAGE_KEY: images}
    for key in INT_FEATURES:
        columns[key] = np.array([r[key] for r in rows], dtype=np.int64)
    for key in STRING_FEATURES:
        columns[key] = np.array([r[key] for r in rows], dtype=str)
    return columns
