"""Distils dlib's face network into the small identity streams once, outside any CK+ fold.

The trainers can distil per fold (``--extra identity=face_resnet``), but on the GPU machine
that costs 37 s an epoch per fold process (30 processes sharing 2 GPUs): IDEnNet F did not
finish in a device call. This distils each stream once, on FER+ Train alone (28,385 faces,
no identities needed): never on CK+ (a stream started from it in a CK+ protocol has then seen
no test subject's face, not even unlabelled) nor ORL (``benchmarks/identity.py`` verifies on
both), and writes:

- ``<out>/identity_densenet_distilled.keras``: IDEnNet's identity-pretraining model (the
  DenseNet stream of ``--depth``, its 2-unit head a placeholder), whose stream layers start
  IDEnNet's identity stream by name (``--extra identity_init=...``; the head is skipped by
  shape);
- ``<out>/identity_deepid_distilled.keras``: DeepID likewise (TFE-JL ``identity=deepid``);
- ``<out>/identity_<stream>_distilled_embedding.keras``: ``image -> 128-d`` (the stream and
  its projection), what ``benchmarks/identity.py --densenet_distilled/--deepid_distilled``
  verifies;
- ``<out>/identity_distilled.json``: faces, epochs, the final mean cosine to the teacher.

The teacher's embeddings are cached under ``--cache_dir`` (``distill.teacher_embeddings``);
each stream's training resumes from its stage folder there.

    python tools/distill_identity.py --out=pretrained

makes the shipped files: mean-centred targets (``--center``, the default; ``--no-center``
distils the raw embedding, which stalls at the cosine of the teacher's mean embedding, ~0.94,
and verified ORL at 79.6 / 72.2%), 60 DenseNet and 160 DeepID epochs (``--epochs`` sets
both): twice a first GPU run's 30 / 80, whose training loss was still falling; at these counts
it ends flat (DenseNet -0.649 over its last 12 epochs, DeepID -0.630 over 30). On the GPU
machine (session 10, ``tools/jobs/distill_centred_long_and_idennet_if_r18_s0.txt``) that
took 341 s and 319 s; on a 2-core CPU the DenseNet's epochs take ~10 minutes each. The
shipped DeepID was then made with ``--streams=deepid --teacher_input=frame`` (targets: the
teacher's embeddings of the whole aligned frame; 47 min on the 2-core CPU), chosen over the
crop-target one on the validation figure (85.97 against 83.30); the DenseNet with frame
targets needs the GPU (``tools/jobs/distill_densenet_frame_targets.txt``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


DEFAULT_EPOCHS = {"densenet": 60, "deepid": 160}


def distillation_set(data_root: Path, cache_dir: Path, teacher_input: str = "crop"):
    """FER+ Train's faces with the face network's embeddings as targets."""
    from keras_fer.training import distill

    faces = distill.read_ferplus_train(data_root / "ferplus" / "data")
    targets = distill.teacher_embeddings(faces, cache_dir, "ferplus_train",
                                         teacher_input=teacher_input)
    return faces, targets, {"ferplus_train": int(len(faces))}


def validation_set(data_root: Path):
    """CK+48's faces and subjects outside the benchmark's CK+ test subjects
    (``verification.ckplus_verification_split``).

    No stream is distilled on CK+, so these people are unseen; and ``benchmarks/identity.py``
    verifies on ORL and on those test subjects only, so choices made on these pairs (the
    teacher's input, epochs) leave its figures held out."""
    from keras_fer.data.experiments import load_experiment
    from keras_fer.evaluation.verification import ckplus_verification_split

    exp = load_experiment("ckplus48", data_root, "ck7", use_orl=False)
    keep = ckplus_verification_split(exp)[1]
    return exp.faces[keep], np.asarray(exp.subjects)[keep]


def validation_verification(student, faces: np.ndarray, subjects: np.ndarray) -> dict:
    """Every pair of the validation faces: the AUC and the accuracy at the equal-error
    threshold, as ``benchmarks/identity.py`` scores its sets."""
    from keras_fer.data import preprocess
    from keras_fer.evaluation import verification

    emb = np.asarray(student.predict(preprocess.to_model_input(faces), batch_size=256,
                                     verbose=0), np.float64)
    r = verification.all_pairs_verification(emb, subjects)
    return {"ckplus_valid_verification_accuracy": r["accuracy"],
            "ckplus_valid_auc": r["auc"], "ckplus_valid_faces": int(len(subjects)),
            "ckplus_valid_subjects": int(len(set(subjects.tolist())))}


def build_stream(name: str, depth: int):
    """``(model, feature layer, prefix)`` of the stream ``name`` (``densenet`` or ``deepid``)."""
    from keras_fer.models import idennet
    from keras_fer.models.deepid import build_deepid

    if name == "densenet":
        mcfg = idennet.IDEnNetConfig(variant="f", depth=depth, num_classes=7, num_identities=2)
        return idennet.build_identity_pretrain_model(mcfg, 2), "id_head_gap", "id"
    if name == "deepid":
        return build_deepid(2, name="deepid"), "deepid_feature", "deepid"
    raise ValueError(f"No identity stream {name!r}: densenet or deepid.")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="", help="data root (default $FER_DATA_DIR)")
    parser.add_argument("--out", default=str(REPO / "pretrained"))
    parser.add_argument("--cache_dir", default=str(REPO / "runs" / "distill_identity"))
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"epochs of every stream (default: {DEFAULT_EPOCHS})")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--depth", type=int, default=40, help="IDEnNet's DenseNet depth")
    parser.add_argument("--streams", default="densenet,deepid")
    parser.add_argument("--teacher_input", default="crop",
                        help="what the teacher embeds: crop (the students' input, default), "
                        "frame (the whole aligned frame) or frame_flip (with its mirror)")
    parser.add_argument("--center", action=argparse.BooleanOptionalAction, default=True,
                        help="distil the mean-centred embedding (see distill.centre_targets)")
    args = parser.parse_args(argv)
    unknown = set(args.streams.split(",")) - {"densenet", "deepid"}
    if unknown:
        parser.error(f"--streams takes densenet and/or deepid; received {sorted(unknown)}")

    from keras_fer.training import distill

    if args.teacher_input not in distill.TEACHER_INPUTS:
        parser.error(f"--teacher_input takes one of {distill.TEACHER_INPUTS}; received "
                     f"{args.teacher_input!r}")
    import keras

    from keras_fer import io_atomic
    from keras_fer.data.paths import data_dir

    root = Path(args.data_dir) if args.data_dir else data_dir()
    cache, out = Path(args.cache_dir), Path(args.out)
    start = time.time()
    faces, targets, counts = distillation_set(root, cache / "teacher", args.teacher_input)
    valid = validation_set(root) if (root / "ckplus48").is_dir() else None
    print(f"teacher embeddings of {len(faces)} faces {counts} in {time.time() - start:.0f} s",
          flush=True)
    if args.center:
        targets = distill.centre_targets(targets)
    report_path = out / "identity_distilled.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    for name in args.streams.split(","):
        model, layer, prefix = build_stream(name, args.depth)
        keras.utils.set_random_seed(0)
        student = distill.student_model(model, layer, prefix)
        t0 = time.time()
        stage = cache / "".join([name, "_centred" if args.center else "",
                                 "" if args.teacher_input == "crop" else
                                 f"_{args.teacher_input}"])
        epochs = args.epochs or DEFAULT_EPOCHS[name]
        result = distill.distill_stream(student, faces, targets, stage, epochs,
                                        args.batch_size, args.lr, seed=7)
        result.update(sources=counts, lr=args.lr, seconds=round(time.time() - t0),
                      centred=args.center, teacher_input=args.teacher_input,
                      **(validation_verification(student, *valid) if valid else
                         {"ckplus_valid": f"not measured: no ckplus48 under {root}"}),
                      depth=args.depth if name == "densenet" else None)
        for suffix, saved in (("", model), ("_embedding", student)):
            with io_atomic.atomic_path(out / f"identity_{name}_distilled{suffix}.keras") as tmp:
                saved.save(tmp)
        report[name] = result
        io_atomic.write_json(report_path, report)
        print(f"{name}: mean cosine {result['final_cosine']:.3f} to the face network after "
              f"{epochs} epochs ({result['seconds']} s) -> {out}", flush=True)


if __name__ == "__main__":
    main()
