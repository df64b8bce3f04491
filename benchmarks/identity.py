"""Face verification of the project's identity networks -> ``benchmarks/results/identity.json``.

    python benchmarks/identity.py [--densenet_distilled PATH] [--deepid_distilled PATH]
        [--densenet_fold PATH] [--deepid_fold PATH] [--hng_json PATH ...]
        [--hng_probe DIR ...] [--hng_only]

Two protocols, on subjects the network being scored never trained on:

- ORL (40 subjects, 10 faces each): every pair of faces. The face network never saw ORL;
  for a fold-trained stream pass a model whose run held ORL out (``tools/train_fold_identity.py``
  trains both streams on CK+ fold 0's training subjects alone, as the trainers' identity
  stages do but without their ORL identities).
- CK+ (CK+48, 7 classes): the test subjects of fold 0 of the 10 subject-disjoint folds
  (seed 0, the trainers' split), every pair of their faces.

Per protocol: ROC AUC of the cosine similarity (same vs different subject) and the
accuracy (percent) at the equal-error threshold (false-accept rate = false-reject rate).
Networks: ``face_resnet`` (dlib's face ResNet, Keras, on our 48x48 crops through
:func:`keras_fer.models.face_embedding.face_embedding_model`), ``face_resnet_int8`` (the
same model converted by :func:`keras_fer.export.tflite.convert`, int8 calibrated on 200
FER+ Valid faces, run by ai-edge-litert), two parameter-free test-time options of the face
network, alone and together: ``face_resnet_flip`` (flip averaging: the L2-normalised mean of
the embeddings of the face and of its mirror, ``face_embedding_model(flip_average=True)``),
``face_resnet_frame60`` (the whole aligned 60x60 frame, :func:`frame_input`, in place of its
centre 48x48 crop; for CK+48, whose 48x48 photos are upscaled to 60, that is the whole photo)
and ``face_resnet_frame60_flip``; and the small streams from model paths
(``image -> feature`` ``.keras`` files: an IDEnNet identity-pretraining model or DeepID;
the layer before the softmax is taken). A network without a path is written as ``null``
with the reason. ``hng_identity_rate``: the mean ``identity_preserved_percent`` of the given
IDFERM ``hng.json`` files (measured with the face network), or ``null``, with
``hng_source`` the folder they share (``gpu/<run>`` for all its seeds); beside it
``hng_real_neutral_rate``, the same test at each fold's own threshold applied to the *real*
neutral frames of the fold's test subjects (``ckplus_neutral``) against their expressive
faces: what a perfect generator, one that returns the person's true neutral face, would
score. ``hng_probe``: the same figures for each ``--hng_probe`` folder (an HNG setting: its
run's ``config.json`` and ``hng_fold<k>.json`` files, e.g. ``benchmarks/results/gpu/
idferm_hng_probe/*``), with the setting's perceptual features and identity weight.
Where a folder also holds ``hng_test_faces_fold<k>.npz`` (the faces generated from the test
subjects), its row adds how far they moved towards the real neutral frames
(``idferm_identity.neutrality``): the identity rate alone would give a copy of the input 100%.
``--hng_only`` updates just the ``hng_*`` fields of an existing ``identity.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keras_fer import io_atomic  # noqa: E402
from keras_fer.data import preprocess  # noqa: E402
from keras_fer.data.paths import data_dir  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "identity.json"
STREAMS = ("densenet_distilled", "deepid_distilled", "densenet_fold", "deepid_fold")
NOT_GIVEN = {
    "densenet_distilled": "not measured: make it with tools/distill_identity.py and pass "
                          "--densenet_distilled=pretrained/identity_densenet_distilled_embedding.keras",
    "deepid_distilled": "not measured: make it with tools/distill_identity.py and pass "
                        "--deepid_distilled=pretrained/identity_deepid_distilled_embedding.keras",
    "densenet_fold": "not measured: train it with tools/train_fold_identity.py and pass "
                     "--densenet_fold=.devdata/identity_fold/densenet_fold.keras",
    "deepid_fold": "not measured: train it with tools/train_fold_identity.py and pass "
                   "--deepid_fold=.devdata/identity_fold/deepid_fold.keras",
}


def load_sets(root: Path) -> Dict[str, tuple]:
    """``{"orl": (faces, subjects), "ckplus": (faces, subjects)}``, aligned uint8 60x60.

    ORL's 92x112 photos show the whole head: they are eye-aligned by the project's aligner
    (BlazeFace + similarity transform, :func:`keras_fer.data.faces.align_records`), as a photo
    given to ``keras-fer predict`` is. Squeezed to 60x60 unaligned instead, the face network
    verified ORL at 80.7% (AUC 0.897); aligned, at 94-98% (measured 2026-11-29). CK+48 is
    already cropped."""
    from keras_fer.data import faces, readers
    from keras_fer.data.experiments import load_experiment
    from keras_fer.evaluation.verification import ckplus_verification_split

    orl = faces.align_records(readers.read_identity_folder(root / "orl_faces"), progress=False)
    exp = load_experiment("ckplus48", root, "ck7", use_orl=False)
    test = ckplus_verification_split(exp)[0]
    return {"orl": (np.asarray(orl.images), np.asarray(orl.subject)),
            "ckplus": (exp.faces[test], np.asarray(exp.subjects)[test])}


def feature_model(path: str):
    """The layer before the softmax of a saved identity classifier (or the model itself)."""
    import keras

    model = keras.saving.load_model(path, compile=False)
    last = model.layers[-1]
    if isinstance(last, keras.layers.Activation) or getattr(last, "activation", None) in (
            keras.activations.softmax,):
        dense = model.layers[-2] if isinstance(last, keras.layers.Activation) else last
        return keras.Model(model.inputs, dense.input)
    return model


def frame_input(faces: np.ndarray) -> np.ndarray:
    """uint8 faces -> float32 ``(N, 60, 60, 1)`` in [0, 1]: the whole aligned frame, no crop
    (as IDFERM's ``hng.json`` measures its ``frame60`` rate)."""
    from keras_fer.training.idferm_identity import frame_input as idferm_frame_input

    return idferm_frame_input(faces)


def measure(embed, sets: Dict, inputs=preprocess.to_model_input) -> Dict:
    from keras_fer.evaluation import verification

    out = {}
    for name, (faces, subjects) in sets.items():
        r = verification.all_pairs_verification(embed(inputs(faces)), subjects)
        out[f"{name}_verification_accuracy"] = r["accuracy"]
        out[f"{name}_auc"] = r["auc"]
        out[f"{name}_details"] = {k: r[k] for k in ("threshold", "pairs", "same_pairs")}
    return out


def run(args: argparse.Namespace) -> Dict:
    from keras_fer.export import tflite
    from keras_fer.models.face_embedding import face_embedding_model

    root = Path(args.data_dir) if args.data_dir else data_dir()
    sets = load_sets(root)
    networks: Dict = {}
    model = face_embedding_model()
    networks["face_resnet"] = measure(
        lambda x: np.asarray(model.predict(x, batch_size=64, verbose=0)), sets)
    print("face_resnet", networks["face_resnet"], flush=True)
    from keras_fer.data.fer_readers import read_ferplus

    calib = read_ferplus(root / "ferplus" / "data", splits=("valid",), limit=200)
    calib_faces = preprocess.resize_uint8(np.stack(list(calib.images)), preprocess.ALIGNED_SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        path = tflite.convert(model, "int8", Path(tmp) / "face_int8.tflite", calib_faces)
        runner = tflite.LiteRTClassifier(path, num_threads=2)
        networks["face_resnet_int8"] = measure(runner.predict, sets)
        networks["face_resnet_int8"]["size_mb"] = round(path.stat().st_size / 2**20, 2)
    print("face_resnet_int8", networks["face_resnet_int8"], flush=True)
    frame = (preprocess.ALIGNED_SIZE, preprocess.ALIGNED_SIZE, 1)
    for row, shape, flip, inputs in (
            ("face_resnet_flip", (48, 48, 1), True, preprocess.to_model_input),
            ("face_resnet_frame60", frame, False, frame_input),
            ("face_resnet_frame60_flip", frame, True, frame_input)):
        variant = face_embedding_model(input_shape=shape, flip_average=flip)
        networks[row] = {**measure(lambda x, m=variant: np.asarray(
            m.predict(x, batch_size=64, verbose=0)), sets, inputs),
            "input": "aligned 60x60 frame" if inputs is frame_input else "centre 48x48 crop",
            "flip_average": flip}
        print(row, networks[row], flush=True)
    for name in STREAMS:
        path = getattr(args, name)
        if not path:
            networks[name] = {"orl_verification_accuracy": None, "orl_auc": None,
                              "ckplus_verification_accuracy": None, "ckplus_auc": None,
                              "reason": NOT_GIVEN[name]}
            continue
        fm = feature_model(path)
        networks[name] = {**measure(lambda x: np.asarray(fm.predict(x, verbose=0)), sets),
                          "model": str(path)}
        # tools/distill_identity.py (tools/train_fold_identity.py) writes how each stream
        # was distilled (trained on the fold) beside it.
        stream, kind = name.split("_")
        report = Path(path).parent / f"identity_{kind}.json"
        if report.exists():
            key = "distillation" if kind == "distilled" else "training"
            networks[name][key] = json.loads(report.read_text()).get(stream)
    return {
        "accuracy_unit": "percent",
        "protocol": {
            "orl": f"all {len(sets['orl'][1])} ORL faces ({len(set(sets['orl'][1]))} "
                   "subjects), eye-aligned by keras_fer.data.faces, every pair",
            "input": "every network sees the models' input: the centre 48x48 crop of the "
                     "aligned 60x60 face (the face network upsamples it to 150x150 RGB), "
                     "except the *_frame60 rows",
            "frame60": "face_resnet_frame60*: the whole aligned 60x60 frame (upsampled to "
                       "150x150 RGB), not its centre 48x48 crop; CK+48's 48x48 photos are "
                       "upscaled to 60, so the frame is the whole photo",
            "flip": "face_resnet*_flip: the L2-normalised mean of the embeddings of the face "
                    "and of its horizontal mirror (test-time flip averaging)",
            "ckplus": f"CK+48 ck7 fold 0 test subjects of 10 subject-disjoint folds (seed 0): "
                      f"{len(sets['ckplus'][1])} faces of {len(set(sets['ckplus'][1]))} "
                      "subjects, every pair",
            "score": "cosine similarity; accuracy at the equal-error threshold; ROC AUC",
            "int8": "keras_fer.export.tflite.convert int8, calibrated on 200 FER+ Valid faces, "
                    "ai-edge-litert",
        },
        "networks": networks,
        **hng_fields(args.hng_json, root),
    }


def real_neutral_rate(report: Dict, exp, embed) -> Dict:
    """The fold's test at its own threshold, real neutral frames in place of generated ones.

    Every (expressive face, real neutral frame of the same subject) pair of the fold's test
    subjects counts once; a pair passes when its cosine distance is within the fold's
    ``threshold_cosine_distance``."""
    subjects = np.asarray(exp.subjects).astype(str)
    test = np.isin(subjects, report["test_subjects"])
    neutral_subjects = np.asarray(exp.neutral_subjects).astype(str)
    keep = np.isin(neutral_subjects, report["test_subjects"])
    faces, neutral = embed(exp.faces[test]), embed(exp.neutral_faces[keep])
    faces /= np.linalg.norm(faces, axis=1, keepdims=True)
    neutral /= np.linalg.norm(neutral, axis=1, keepdims=True)
    same = subjects[test][:, None] == neutral_subjects[keep][None, :]
    distances = (1.0 - faces @ neutral.T)[same]
    return {"faces": int(test.sum()), "neutral_frames": int(keep.sum()),
            "pairs": int(same.sum()),
            "preserved_percent": 100.0 * float(np.mean(distances <= report[
                "threshold_cosine_distance"])),
            "mean_cosine_distance": float(np.mean(distances))}


@functools.lru_cache(maxsize=None)
def _hng_reference(root: str):
    """CK+48 ck7 (its neutral frames) and the face network as IDFERM's ``hng.json`` embeds,
    loaded once for every ``hng_fields`` call (one per ``--hng_probe`` setting)."""
    from keras_fer.data.experiments import load_experiment
    from keras_fer.models.face_embedding import face_embedding_model

    return (load_experiment("ckplus48", Path(root), "ck7", use_orl=False),
            face_embedding_model(input_shape=(None, None, 1)))


def hng_fields(paths: Sequence[str], root: Path) -> Dict:
    """``hng_identity_rate`` (+ note) and ``hng_real_neutral_rate`` from IDFERM ``hng.json``s."""
    if not paths:
        return {"hng_identity_rate": None,
                "hng_identity_rate_note": "not measured: needs an IDFERM run with "
                "identity=face_resnet on CK+ (GPU, part 4); pass --hng_json fold_*/hng.json",
                "hng_real_neutral_rate": None}
    reports = [json.loads(Path(p).read_text()) for p in paths]
    exp, model = _hng_reference(str(root))

    def embed_with(inputs):
        return lambda x: np.asarray(model.predict(inputs(x), batch_size=64, verbose=0),
                                    np.float64)

    def rates(report, inputs):
        """One input's figures of a fold: the generated faces' (from ``hng.json``) and the
        real neutral frames' at the same threshold."""
        return {"generated_preserved_percent": report["identity_preserved_percent"],
                "generated_mean_cosine_distance": report["mean_cosine_distance"],
                "threshold_cosine_distance": report["threshold_cosine_distance"],
                "test_far_percent": report["test_far_percent"],
                "real_neutral": real_neutral_rate(report, exp, embed_with(inputs))}

    common = Path(os.path.commonpath([str(Path(p).resolve().parent) for p in paths]))
    source = "/".join(common.parts[-2:])  # e.g. gpu/<run> (every seed) or <run>/<variant>
    folds = []
    for r in reports:
        fold = {"fold": r["fold"], **rates(r, preprocess.to_model_input)}
        if "frame60" in r:  # hng.json of session 9 and later: the whole aligned frame too
            fold["frame60"] = rates({**r["frame60"], "test_subjects": r["test_subjects"]},
                                    frame_input)
        folds.append(fold)
        print("hng fold", folds[-1], flush=True)
    doc = {
        "hng_identity_rate": float(np.mean([f["generated_preserved_percent"] for f in folds])),
        "hng_source": source,
        "hng_identity_rate_note": f"mean of {len(folds)} hng.json of {source} (IDFERM, CK+ "
                                  "ck7, threshold at 1% false accepts of each fold's training + "
                                  "ORL pairs)",
        "hng_real_neutral_rate": float(np.mean([f["real_neutral"]["preserved_percent"]
                                                for f in folds])),
        "hng_folds": folds,
    }
    if all("frame60" in f for f in folds):
        doc["hng_identity_rate_frame60"] = float(np.mean(
            [f["frame60"]["generated_preserved_percent"] for f in folds]))
        doc["hng_real_neutral_rate_frame60"] = float(np.mean(
            [f["frame60"]["real_neutral"]["preserved_percent"] for f in folds]))
    return doc


def hng_probe(folders: Sequence[str], root: Path) -> Dict:
    """``{setting folder name: {perceptual, identity_weight, hng rates}}`` of HNG settings."""
    import inspect

    from keras_fer.models.hng_step import HNGModel
    from keras_fer.training.idferm_identity import perceptual_setting

    default_weight = inspect.signature(HNGModel).parameters["identity_weight"].default
    out = {}
    for folder in map(Path, folders):
        extra = json.loads((folder / "config.json").read_text()).get("extra", {})
        paths = sorted(folder.glob("hng_fold*.json"))
        if not paths:
            raise SystemExit(f"--hng_probe {folder}: no hng_fold<k>.json there; import the "
                             "run's fold_<k>/hng.json files first")
        fields = hng_fields([str(p) for p in paths], root)
        out[folder.name] = {
            "perceptual": perceptual_setting(extra),
            "hng_init": Path(extra["hng_init"]).name if extra.get("hng_init") else None,
            "hng_epochs": extra.get("hng_epochs"),
            "hng": extra.get("hng", {}),
            "other_weights": {k: v for k, v in extra.get("hng_weights", {}).items()
                              if k != "identity_weight"},
            "identity_weight": extra.get("hng_weights", {}).get("identity_weight",
                                                                default_weight),
            "folds": [f["fold"] for f in fields["hng_folds"]],
            **{k: v for k, v in fields.items() if k.startswith("hng_") and k != "hng_folds"
               and not k.endswith("_note")},
            "generated_mean_cosine_distance": float(np.mean(
                [f["generated_mean_cosine_distance"] for f in fields["hng_folds"]])),
            **probe_neutrality(folder, root)}
    return out


NEUTRALITY = "neutrality.json"


@functools.lru_cache(maxsize=None)
def _neutral_judge():
    """The shipped default expression model (FER+, 8 classes with "neutral"; CK+ never seen)
    as ``faces -> (N,) bool``: does it call the face neutral? Returns (judge, model name)."""
    from keras_fer.inference.predictor import Predictor

    predictor = Predictor(prior="training", tta="none")  # the model's own verdicts, as recorded
    neutral = predictor.class_names.index("neutral")
    path = Path(predictor.model_path)
    return ((lambda faces: predictor.classify(faces).argmax(axis=1) == neutral),
            f"{path.parent.parent.name}/{path.parent.name}/{path.name}")


def probe_neutrality(folder: Path, root: Path) -> Dict:
    """Means over a setting's ``hng_test_faces_fold<k>.npz`` (IDFERM's ``hng_test_faces.npz``,
    session 11 on) of :func:`idferm_identity.neutrality` against CK+'s real neutral frames:
    whether the generated faces moved towards the person's neutral face or copied the input.

    The figures are kept in the folder's ``neutrality.json``, which is committed in place of
    the faces (git-ignored); it is read back when the faces are not there. Empty when the
    setting's run predates those files.
    """
    from keras_fer import io_atomic
    from keras_fer.training.idferm_identity import identity_kept, neutrality

    paths = sorted(folder.glob("hng_test_faces_fold*.npz"))
    if not paths:
        stored = folder / NEUTRALITY
        return json.loads(stored.read_text()) if stored.exists() else {}
    exp, model = _hng_reference(str(root))
    judge, judge_name = _neutral_judge()
    folds = []
    for path in paths:
        # hng_test_faces_fold<k>.npz beside hng_fold<k>.json (the fold's threshold)
        report = folder / path.name.replace("hng_test_faces_", "hng_").replace(".npz", ".json")
        threshold = json.loads(report.read_text())["threshold_cosine_distance"]
        with np.load(path) as faces:
            kept = identity_kept(model, faces["inputs"], faces["generated"], threshold)
            folds.append(neutrality(faces["inputs"], faces["generated"], faces["subjects"],
                                    exp.neutral_faces, exp.neutral_subjects, judge, kept))
    keys = [k for k in folds[0] if k != "num_faces"]
    doc = {"neutrality_folds": len(folds), "neutral_judge": judge_name,
           **{k: float(np.mean([f[k] for f in folds])) for k in keys}}
    io_atomic.write_json(folder / NEUTRALITY, doc)
    return doc


def probe_markdown(probe: Dict) -> list:
    rows = ["", "| HNG setting (perceptual features, identity weight, starting point) | folds | "
            "identity kept (%) | on the whole frame (%) | mean cosine distance | real neutral frames (%) | "
            "closer to the real neutral than the input (%) | pixel L1 to the real neutral: "
            "generated / input | called neutral by the FER+ model (%): generated / input / "
            "real neutral | kept and called neutral (%) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in sorted(probe.values(), key=lambda r: (r["perceptual"], r["identity_weight"],
                                                   r.get("hng_init") or "",
                                                   len(r["folds"]), r.get("hng_epochs") or 0)):
        frame = r.get("hng_identity_rate_frame60")
        init = f", from {r['hng_init']}" if r.get("hng_init") else ""
        init += f", {r['hng_epochs']} epochs" if r.get("hng_epochs") not in (None, 100) else ""
        init += "".join(f", {k} {str(v).lower()}" for k, v in sorted(r.get("hng", {}).items()))
        init += "".join(f", {k} {v:g}" for k, v in sorted(r.get("other_weights", {}).items()))
        rows.append(f"| {r['perceptual']}, {r['identity_weight']:g}{init} | "
                    f"{','.join(map(str, r['folds']))} | {r['hng_identity_rate']:.1f} | "
                    f"{'n/m' if frame is None else f'{frame:.1f}'} | "
                    f"{r['generated_mean_cosine_distance']:.3f} | "
                    f"{r['hng_real_neutral_rate']:.1f} | " + (
                        f"{r['closer_to_neutral_percent']:.1f} | "
                        f"{r['pixel_l1_generated_to_neutral']:.3f} / "
                        f"{r['pixel_l1_input_to_neutral']:.3f} | "
                        f"{r['called_neutral_percent_generated']:.1f} / "
                        f"{r['called_neutral_percent_input']:.1f} / "
                        f"{r['called_neutral_percent_real_neutral']:.1f} |"
                        if "closer_to_neutral_percent" in r else "n/m | n/m | n/m |")
                    + (f" {r['kept_and_called_neutral_percent']:.1f} |"
                       if "kept_and_called_neutral_percent" in r else " n/m |"))
    return rows


def markdown(doc: Dict) -> str:
    rows = ["| network | ORL accuracy (%) | ORL AUC | CK+ accuracy (%) | CK+ AUC |",
            "| --- | --- | --- | --- | --- |"]
    for name, r in doc["networks"].items():
        def f(v, d=2):
            return "n/m" if v is None else f"{v:.{d}f}"
        rows.append(f"| {name} | {f(r['orl_verification_accuracy'])} | {f(r['orl_auc'], 4)} | "
                    f"{f(r['ckplus_verification_accuracy'])} | {f(r['ckplus_auc'], 4)} |")
    if doc.get("hng_identity_rate") is not None:
        rows += ["", "| IDFERM's neutral faces, CK+ test subjects | identity kept (%) | "
                 "mean cosine distance to the input |", "| --- | ---: | ---: |"]
        folds = doc["hng_folds"]
        source = (f"mean of {len(folds)} hng.json of {doc['hng_source']}"
                  if "hng_source" in doc else f"{len(folds)} folds")  # before session 14: none
        rows.append(f"| generated by the HNG ({source}) | "
                    f"{doc['hng_identity_rate']:.1f} | "
                    f"{np.mean([f['generated_mean_cosine_distance'] for f in folds]):.3f} |")
        rows.append(f"| real neutral frames (what a perfect HNG scores) | "
                    f"{doc['hng_real_neutral_rate']:.1f} | "
                    f"{np.mean([f['real_neutral']['mean_cosine_distance'] for f in folds]):.3f} |")
        if doc.get("hng_identity_rate_frame60") is not None:
            rows.append(f"| generated, on the whole aligned frame | "
                        f"{doc['hng_identity_rate_frame60']:.1f} | " + "{:.3f} |".format(
                            np.mean([f["frame60"]["generated_mean_cosine_distance"]
                                     for f in folds])))
            rows.append(f"| real neutral frames, on the whole aligned frame | "
                        f"{doc['hng_real_neutral_rate_frame60']:.1f} | " + "{:.3f} |".format(
                            np.mean([f["frame60"]["real_neutral"]["mean_cosine_distance"]
                                     for f in folds])))
    if doc.get("hng_probe"):
        rows += probe_markdown(doc["hng_probe"])
    return "\n".join(rows) + "\n"


def main(argv: Sequence[str] | None = None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="")
    for name in STREAMS:
        parser.add_argument(f"--{name}", default="")
    parser.add_argument("--hng_json", nargs="*", default=[])
    parser.add_argument("--hng_probe", nargs="*", default=[],
                        help="folders of HNG settings (config.json + hng_fold<k>.json)")
    parser.add_argument("--hng_only", action="store_true",
                        help="update only the hng_* fields of the existing --out file")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    if args.hng_only:
        doc = json.loads(Path(args.out).read_text())
        for key in [k for k in doc if k.startswith("hng_")]:
            del doc[key]
        doc.update(hng_fields(args.hng_json,
                              Path(args.data_dir) if args.data_dir else data_dir()))
    else:
        doc = run(args)
    if args.hng_probe:
        doc["hng_probe"] = hng_probe(args.hng_probe,
                                     Path(args.data_dir) if args.data_dir else data_dir())
    io_atomic.write_results(args.out, doc, markdown(doc), indent=1)
    print(markdown(doc))
    return doc


if __name__ == "__main__":
    main()
