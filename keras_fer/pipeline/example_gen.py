"""ExampleGen: a dataset -> aligned face crops -> TFRecords of ``tf.Example`` + statistics.

An Apache Beam pipeline. The launching process reads the dataset's index with the project's
readers (labels, subjects, sequences, paths) and assigns every record a subject-disjoint
fold (:func:`keras_fer.data.splits.subject_kfold`); the workers then read each image, detect
and align the face (MediaPipe; resize only for datasets that are already face crops), encode
the crop as PNG, write ``tf.Example`` shards per split and compute the statistics. The same
code runs on one machine (without ``--runner``: the FnApiRunner that Beam's DirectRunner
uses for batch pipelines, optionally with several worker processes through
``--direct_num_workers=N --direct_running_mode=multi_processing``) or on Flink, Spark or
Dataflow through Beam's own ``--runner`` options; workers on a cluster need
the dataset path mounted at the same place (the launching process ships only the pixels of
records that have no image file, such as FER2013 CSV rows and FER+ mosaic tiles).

Output (the artifact directory)::

    train/data-00000-of-000NN.tfrecord.gz   # split "train": every fold but eval_fold
    eval/data-....tfrecord.gz               # split "eval": the subjects of eval_fold
    test/data-....tfrecord.gz               # only for datasets with an official test split
    statistics.json                         # counts per class, subject and split; skipped
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from keras_fer.data import tfrecords
from keras_fer.data.labels import CANONICAL
from keras_fer.data.records import RecordTable

STATISTICS_FILE = "statistics.json"
# Datasets whose images are already face crops: detection would only move the crop around.
CROPPED_FORMATS = frozenset(
    {"synthetic", "ckplus48", "ckplus_neutral", "ferplus", "fer2013_csv", "fer2013_recovered"}
)
DETECT_MODES = ("auto", "always", "never")
UNLABELLED = "unlabelled"  # the class of identity-only records in the statistics
# The fixed splits some datasets ship with, mapped onto ExampleGen's split names.
_OFFICIAL_SPLITS = {"train": "train", "valid": "eval", "test": "test"}


@dataclasses.dataclass(frozen=True)
class ExampleGenConfig:
    """What ExampleGen reads and how it splits.

    Attributes:
        dataset_format: a key of ``readers.READERS`` or ``"synthetic"``.
        dataset_path: the dataset folder (or CSV); unused for ``synthetic``.
        reader_kwargs: passed to the reader (``make_synthetic`` for ``synthetic``).
        detect: ``auto`` (detect unless the format is a crop dataset), ``always`` or ``never``.
        folds: number of subject-disjoint folds.
        eval_fold: the fold whose subjects form the ``eval`` split.
        seed: seed of the fold assignment.
    """

    dataset_format: str
    dataset_path: str = ""
    reader_kwargs: Mapping[str, object] = dataclasses.field(default_factory=dict)
    detect: str = "auto"
    folds: int = 5
    eval_fold: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.detect not in DETECT_MODES:
            raise ValueError(f"detect must be one of {DETECT_MODES}. Received: {self.detect!r}")
        if not 0 <= self.eval_fold < self.folds:
            raise ValueError(
                f"eval_fold must be in [0, folds). Received: eval_fold={self.eval_fold}, "
                f"folds={self.folds}"
            )

    @property
    def detects(self) -> bool:
        """Whether faces are detected and aligned (otherwise only resized)."""
        if self.detect == "auto":
            return self.dataset_format not in CROPPED_FORMATS
        return self.detect == "always"


def load_table(config: ExampleGenConfig) -> RecordTable:
    """Reads the dataset named by ``config`` with the project's readers."""
    if config.dataset_format == "synthetic":
        from keras_fer.data.synthetic import make_synthetic

        return make_synthetic(**dict(config.reader_kwargs))
    from keras_fer.data import readers

    if not config.dataset_path:
        raise ValueError(f"dataset_path is required for dataset_format={config.dataset_format!r}")
    return readers.load(config.dataset_format, config.dataset_path, **dict(config.reader_kwargs))


def assign_splits(table: RecordTable, folds: int, eval_fold: int,
                  seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """``(split, fold)`` per record: subject-disjoint folds, or the dataset's own split.

    Records of a dataset with an official split (FER+: train/valid/test) keep it (valid
    becomes ``eval``) with fold -1; otherwise the subjects of ``eval_fold`` form ``eval``.
    """
    official = set(table.split.tolist())
    if official >= {"train", "valid"}:
        split = np.array([_OFFICIAL_SPLITS.get(s, "train") for s in table.split], dtype=object)
        return split.astype(str), np.full(len(table), -1, dtype=np.int64)
    from keras_fer.data.splits import subject_kfold

    fold = np.empty(len(table), dtype=np.int64)
    for k, (_, test_idx) in enumerate(subject_kfold(table.subject, table.expression, folds, seed)):
        fold[test_idx] = k
    return np.where(fold == eval_fold, "eval", "train"), fold


def _elements(table: RecordTable, split: np.ndarray, fold: np.ndarray,
              ship_pixels: bool) -> List[Dict]:
    out = []
    for i in range(len(table)):
        path = str(table.path[i])
        # Workers that see the dataset re-read files themselves; otherwise pixels travel.
        shipped = ship_pixels or not os.path.isfile(path)
        out.append({
            "image": np.asarray(table.images[i], np.uint8) if shipped else None,
            "expression": int(table.expression[i]),
            "subject": str(table.subject[i]),
            "sequence": str(table.sequence[i]),
            "frame_role": str(table.frame_role[i]),
            "fold": int(fold[i]),
            "split": str(split[i]),
            "source": path or f"record:{i}",
        })
    return out


def _align_dofn(detect: bool):
    import apache_beam as beam

    class AlignFace(beam.DoFn):
        """Reads, aligns and PNG-encodes one record; faceless images go to ``skipped``."""

        def setup(self):
            self._aligner = None
            if detect:
                from keras_fer.data.faces import FaceAligner

                self._aligner = FaceAligner()

        def process(self, record):
            from keras_fer.data.faces import NO_FACE, to_gray
            from keras_fer.data.imageio import ImageReadError, read_gray
            from keras_fer.data.preprocess import ALIGNED_SIZE, resize_uint8

            image = record["image"]
            if image is None:
                try:
                    image = read_gray(record["source"])
                except ImageReadError as err:
                    yield beam.pvalue.TaggedOutput("skipped", (record["source"], err.reason))
                    return
            if self._aligner is None:
                crop = resize_uint8(to_gray(image)[None], ALIGNED_SIZE)[0]
            else:
                face = self._aligner.align_largest(image)
                if face is None:
                    yield beam.pvalue.TaggedOutput("skipped", (record["source"], NO_FACE))
                    return
                crop = face.crop
            yield dict(record, image=tfrecords.encode_png(crop))

        def teardown(self):
            if self._aligner is not None:
                self._aligner.close()

    return AlignFace()


def _statistics_combiner():
    import apache_beam as beam

    class Statistics(beam.CombineFn):
        """Counts per split, class and subject (and their crossings) of the written records."""

        def create_accumulator(self):
            return collections.Counter()

        def add_input(self, acc, record):
            expression = record["expression"]
            cls = CANONICAL[expression] if expression >= 0 else UNLABELLED
            split, subject = record["split"], record["subject"]
            acc.update([("split", split), ("class", cls), ("subject", subject),
                        ("split_class", f"{split}/{cls}"), ("split_subject", f"{split}/{subject}")])
            return acc

        def merge_accumulators(self, accumulators):
            total = collections.Counter()
            for acc in accumulators:
                total.update(acc)
            return total

        def extract_output(self, acc):
            return {f"{kind}|{key}": count for (kind, key), count in acc.items()}

    return Statistics()


def _statistics_document(counts: Mapping[str, int], skipped: Sequence[Tuple[str, str]],
                         read_skipped: int) -> Dict:
    """``statistics.json``: totals, per-split breakdowns, the subject-overlap check, skips.

    ``counts`` is the combiner's ``"kind|key" -> count`` map; ``skipped`` holds ``(source,
    reason)`` of every unused input, ``read_skipped`` of them rejected by the reader.
    """
    table: Dict[str, Dict] = collections.defaultdict(dict)
    for name, count in counts.items():
        kind, key = name.split("|", 1)
        table[kind][key] = int(count)
    by_split: Dict[str, Dict] = collections.defaultdict(lambda: {"classes": {}, "subjects": {}})
    for key, count in table.get("split_class", {}).items():
        split, cls = key.split("/", 1)
        by_split[split]["classes"][cls] = count
    for key, count in table.get("split_subject", {}).items():
        split, subject = key.split("/", 1)
        by_split[split]["subjects"][subject] = count
    subjects = {s: set(v["subjects"]) - {""} for s, v in by_split.items()}
    shared = sorted(set.intersection(*subjects.values())) if len(subjects) > 1 else []
    reasons = collections.Counter(reason for _, reason in skipped)
    skipped = [tuple(s) for s in skipped]
    return {
        "num_examples": int(sum(table.get("split", {}).values())),
        "splits": dict(sorted(table.get("split", {}).items())),
        "classes": dict(sorted(table.get("class", {}).items())),
        "subjects": dict(sorted(table.get("subject", {}).items())),
        "per_split": {s: {"classes": dict(sorted(v["classes"].items())),
                          "subjects": dict(sorted(v["subjects"].items()))}
                      for s, v in sorted(by_split.items())},
        "subjects_in_several_splits": shared,
        "skipped": {
            "count": len(skipped),
            "by_reason": dict(sorted(reasons.items())),
            "examples": sorted(skipped)[:20],
            "at_read_time": read_skipped,
        },
    }


def run_example_gen(config: ExampleGenConfig, output_dir: str | Path,
                    beam_args: Sequence[str] = (), staging_dir: str = "") -> Dict[str, object]:
    """Runs the ExampleGen Beam pipeline; see the module docstring for the output layout.

    Args:
        config: dataset and split settings.
        output_dir: the (empty) artifact directory.
        beam_args: Beam pipeline options, e.g. ``["--direct_num_workers=2",
            "--direct_running_mode=multi_processing"]`` or ``["--runner=FlinkRunner", ...]``.
        staging_dir: for workers that cannot reach ``output_dir`` or the dataset (Dataflow):
            a URI Beam can write (``gs://bucket/path``) where the workers write the output,
            copied into ``output_dir`` afterwards; the pixels then travel with the records.

    Returns:
        Properties: the statistics file name, the split names and their example counts.
    """
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    output_dir = Path(output_dir)
    target = staging_dir.rstrip("/") if staging_dir else str(output_dir)
    table = load_table(config)
    split, fold = assign_splits(table, config.folds, config.eval_fold, config.seed)
    splits = [s for s in tfrecords.SPLITS if s in set(split.tolist())]
    elements = _elements(table, split, fold, ship_pixels=bool(staging_dir))
    read_skipped = [(s.path, s.reason) for s in table.skipped]

    options = PipelineOptions(list(beam_args))
    runner = None
    if options.view_as(StandardOptions).runner is None:
        # The engine DirectRunner runs batch pipelines on (it honours direct_num_workers and
        # direct_running_mode); naming DirectRunner itself would first try to download the
        # Prism runner binary, which fails on machines without internet access.
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        runner = FnApiRunner()
    with beam.Pipeline(runner=runner, options=options) as pipeline:
        aligned = (
            pipeline
            | "Records" >> beam.Create(elements, reshuffle=False)
            | "Distribute" >> beam.Reshuffle()
            | "AlignFaces" >> beam.ParDo(_align_dofn(config.detects)).with_outputs(
                "skipped", main="faces")
        )
        faces = aligned.faces
        parts = faces | "BySplit" >> beam.Partition(lambda r, n: splits.index(r["split"]),
                                                    len(splits))
        for name, part in zip(splits, parts):
            _ = (
                part
                | f"Serialize_{name}" >> beam.Map(_serialize)
                | f"Write_{name}" >> beam.io.WriteToTFRecord(
                    f"{target}/{name}/data", file_name_suffix=tfrecords.FILE_SUFFIX)
            )
        counts = faces | "Statistics" >> beam.CombineGlobally(_statistics_combiner())
        skipped = aligned.skipped | "Skipped" >> beam.combiners.ToList()
        _ = (
            counts
            | "Document" >> beam.Map(
                lambda c, s: json.dumps(_statistics_document(c, list(s) + read_skipped,
                                                             len(read_skipped)),
                                        indent=1, sort_keys=True),
                s=beam.pvalue.AsSingleton(skipped))
            | "WriteStatistics" >> beam.io.WriteToText(
                f"{target}/{STATISTICS_FILE}", shard_name_template="")
        )

    if staging_dir:
        _copy_from(target, output_dir, [f"{n}/data-*{tfrecords.FILE_SUFFIX}" for n in splits]
                   + [STATISTICS_FILE])
    stats = json.loads((output_dir / STATISTICS_FILE).read_text())
    return {"statistics": STATISTICS_FILE, "splits": stats["splits"],
            "num_examples": stats["num_examples"], "skipped": stats["skipped"]["count"]}


def _copy_from(source: str, output_dir: Path, patterns: Sequence[str]) -> None:
    """Copies files matching ``patterns`` under a Beam URI into the local artifact directory."""
    import shutil

    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    for pattern in patterns:
        for match in FileSystems.match([f"{source}/{pattern}"])[0].metadata_list:
            rel = match.path[len(source) + 1:]
            (output_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            with FileSystems.open(match.path, compression_type=CompressionTypes.UNCOMPRESSED) as src, \
                    open(output_dir / rel, "wb") as dst:
                shutil.copyfileobj(src, dst)


def _serialize(record: Dict) -> bytes:
    return tfrecords.make_example(**{k: record[k] for k in (
        "expression", "subject", "sequence", "frame_role", "fold", "split", "source")},
        image_png=record["image"])


def read_statistics(examples: str | Path) -> Dict:
    """The statistics document of an ExampleGen artifact directory."""
    return json.loads((Path(examples) / STATISTICS_FILE).read_text())


def split_names(examples: str | Path) -> List[str]:
    """The splits present in an ExampleGen artifact directory."""
    return [s for s in tfrecords.SPLITS if (Path(examples) / s).is_dir()]
