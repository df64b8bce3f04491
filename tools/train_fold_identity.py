"""Trains the small identity streams on CK+48 fold 0's training subjects, as the trainers do.

For ``benchmarks/identity.py --densenet_fold / --deepid_fold``: each stream is trained by its
trainer's own stage, called as the runner calls it, on the training subjects of fold 0 of the
10 subject-disjoint CK+48 ck7 folds (fold_seed 0, every training subject: val_fraction 0), the
fold whose test subjects ``benchmarks/identity.py`` verifies on. ORL is left out
(``use_orl=False``; the trainers add its 40 identities) so that both ORL and the fold's test
subjects stay held out of the stream being scored.

- ``densenet``: IDEnNet's stage ``pretrain_identity``
  (:meth:`keras_fer.training.idennet.IDEnNetMethod.pretrain_identity`) with the settings of
  ``trainers/flagfiles/idennet_ckplus7_face_distilled.flags``: the DenseNet-40 identity stream
  starts from ``pretrained/identity_densenet_distilled.keras`` (distilled from dlib's face
  network on FER+ Train alone; ``distill_epochs=0``), then softmax cross-entropy on the fold's
  identities, SGD momentum 0.9 at ``--pretrain_lr`` 0.01 (/10 at 50% and 75%), decoupled weight
  decay 1e-4, batch 128, augmented, ``--densenet_epochs`` (the flagfile's 40).
- ``deepid``: IDFERM's stage ``pretrain_identity``
  (:meth:`keras_fer.training.idferm.IDFERMMethod.pretrain_identity`, ``identity=deepid``): DeepID
  from scratch, softmax cross-entropy, Adam 1e-3 with cosine decay, batch 128, augmented,
  ``--deepid_epochs`` (``identity_epochs`` 100 of ``idferm_ckplus7.flags``). TFE-JL's own
  DeepID stage (SGD 0.01, 200 epochs) sat at chance on CK+ (see IDFERM's comment), so the
  Adam recipe is the one that trains it.

Writes to ``--out`` (default ``.devdata/identity_fold``, git-ignored; never commit weights):
``densenet_fold.keras`` / ``deepid_fold.keras`` (the identity classifiers: ``image -> softmax``,
whose layer before the softmax ``benchmarks/identity.py`` takes as the embedding) and
``identity_fold.json`` (per stream: epochs, faces, identities, seconds, final training
accuracy), which ``benchmarks/identity.py`` copies into each row. The ``densenet_fold`` row was
remade in session 11 from the re-distilled stream (``--streams=densenet --densenet_epochs=20
--out=.devdata/identity_fold_s11``, 355 s), the ``deepid_fold`` row is session 8's. Stage folders go under
``<out>/work`` (resumable). The committed ``benchmarks/results/identity.json`` rows came from
these commands (2 shared CPU cores, TensorFlow backend: DeepID 100 epochs in 113 s; the
DenseNet cut to 20 of the flagfile's 40 epochs, 744 s, to fit the session's CPU budget, so
its step schedule drops the rate at epochs 10 and 15):

    FER_DATA_DIR=/work/shared/data nice -n 10 python tools/train_fold_identity.py \\
        --densenet_epochs=20
    python benchmarks/identity.py \\
        --densenet_distilled=pretrained/identity_densenet_distilled_embedding.keras \\
        --deepid_distilled=pretrained/identity_deepid_distilled_embedding.keras \\
        --densenet_fold=.devdata/identity_fold/densenet_fold.keras \\
        --deepid_fold=.devdata/identity_fold/deepid_fold.keras \\
        --hng_json /work/gpu_runs/s8c/runs/idferm_ckplus7_face/rml_s0/fold_*/hng.json
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

FOLDS, FOLD, FOLD_SEED = 10, 0, 0
# The trainers' epochs (idennet_ckplus7_*.flags --pretrain_epochs, idferm_ckplus7.flags
# identity_epochs): the defaults; fewer only to fit a CPU budget (recorded beside them).
FLAGFILE_EPOCHS = {"densenet": 40, "deepid": 100}
ORL_NOTE = ("trained on CK+48 ck7 fold 0's training subjects only: ORL, which the trainers add "
            "as extra identities, was left out to keep it held out of this verification")


def fold_data(root: Path):
    """Fold 0 of the trainers' split (every training subject), without ORL."""
    from keras_fer.data.experiments import fold_indices, load_experiment, make_fold
    from keras_fer.evaluation.verification import ckplus_verification_split

    exp = load_experiment("ckplus48", root, "ck7", use_orl=False)
    idx = fold_indices(exp, FOLDS, FOLD_SEED, 0.0)[FOLD]
    data = make_fold(exp, FOLD, idx, seed=0)
    # The same test subjects as benchmarks/identity.py (which splits with val_fraction 0.1).
    bench_test = ckplus_verification_split(exp)[0]
    assert set(exp.subjects[bench_test]) == set(data.test_subjects)
    assert not set(data.test_subjects) & set(data.train_subjects)
    assert data.identity_x is None
    return data


def config(method: str, epochs: int, lr: float, extra: dict, out: Path):
    from keras_fer.training.config import TrainConfig

    return TrainConfig(method=method, variant="f" if method == "idennet" else "rml",
                       dataset="ckplus48", protocol="ck7", depth=40, folds=FOLDS, fold=FOLD,
                       pretrain_epochs=epochs, pretrain_lr=lr, batch_size=128, seed=0,
                       fold_seed=FOLD_SEED, val_fraction=0.0, use_orl=False, extra=extra,
                       model_dir=str(out / "work" / method))


def train_densenet(data, epochs: int, lr: float, out: Path):
    from keras_fer.training.idennet import IDEnNetMethod

    extra = {"identity": "face_resnet", "distill_epochs": 0,
             "identity_init": str(REPO / "pretrained" / "identity_densenet_distilled.keras")}
    cfg = config("idennet", epochs, lr, extra, out)
    method = IDEnNetMethod()
    mcfg = method.model_config(cfg, data, None)
    fold_dir = Path(cfg.model_dir) / f"fold_{FOLD}"
    model = method.pretrain_identity(cfg, data, mcfg, fold_dir)
    recipe = {"stage": "IDEnNetMethod.pretrain_identity (pretrain_identity)",
              "init": "pretrained/identity_densenet_distilled.keras", "depth": 40,
              "loss": "sparse categorical cross-entropy",
              "optimizer": f"SGD momentum 0.9, lr {lr} /10 at 50% and 75%, weight decay 1e-4",
              "flagfile": "trainers/flagfiles/idennet_ckplus7_face_distilled.flags"}
    return model, fold_dir / "pretrain_identity", recipe


def train_deepid(data, epochs: int, lr: float, out: Path):
    from keras_fer.models.deepid import build_deepid
    from keras_fer.training.idferm import IDFERMMethod

    cfg = config("idferm", epochs, 0.1, {"identity": "deepid", "identity_epochs": epochs,
                                         "identity_lr": lr}, out)
    fold_dir = Path(cfg.model_dir) / f"fold_{FOLD}"
    IDFERMMethod().pretrain_identity(cfg, data, fold_dir)  # returns the HNG's feature extractor
    stage = fold_dir / "pretrain_identity"
    model = build_deepid(int(data.num_identities), name="hng_identity")
    model.load_weights(str(stage / "final.weights.h5"))
    recipe = {"stage": "IDFERMMethod.pretrain_identity (identity=deepid)", "init": "scratch",
              "loss": "sparse categorical cross-entropy",
              "optimizer": f"Adam, lr {lr} with cosine decay",
              "flagfile": "trainers/flagfiles/idferm_ckplus7.flags (identity_epochs)"}
    return model, stage, recipe


def training_accuracy(stage: Path) -> float | None:
    log = stage / "history.csv"
    if not log.exists():
        return None
    rows = [line.split(",") for line in log.read_text().splitlines()]
    if len(rows) < 2 or "accuracy" not in rows[0]:
        return None
    return float(rows[-1][rows[0].index("accuracy")])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="", help="data root (default $FER_DATA_DIR)")
    parser.add_argument("--out", default=str(REPO / ".devdata" / "identity_fold"))
    parser.add_argument("--streams", default="deepid,densenet")
    parser.add_argument("--densenet_epochs", type=int, default=FLAGFILE_EPOCHS["densenet"])
    parser.add_argument("--densenet_lr", type=float, default=0.01)
    parser.add_argument("--deepid_epochs", type=int, default=FLAGFILE_EPOCHS["deepid"])
    parser.add_argument("--deepid_lr", type=float, default=1e-3)
    args = parser.parse_args(argv)

    import keras

    from keras_fer import io_atomic
    from keras_fer.data.paths import data_dir

    root = Path(args.data_dir) if args.data_dir else data_dir()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = fold_data(root)
    keep = data.id_train >= 0
    faces, identities = int(keep.sum()), int(len(np.unique(data.id_train[keep])))
    print(f"fold {FOLD}: {faces} training faces of {identities} subjects; "
          f"{len(data.test_subjects)} test subjects held out", flush=True)
    report_path = out / "identity_fold.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    for name in args.streams.split(","):
        train = {"densenet": train_densenet, "deepid": train_deepid}[name]
        epochs, lr = getattr(args, f"{name}_epochs"), getattr(args, f"{name}_lr")
        keras.utils.set_random_seed(0)
        t0 = time.time()
        model, stage, recipe = train(data, epochs, lr, out)
        timing = stage / "timing.json"
        seconds = round(time.time() - t0)
        with io_atomic.atomic_path(out / f"{name}_fold.keras") as tmp:
            model.save(tmp)
        report[name] = {**recipe, "epochs": epochs, "flagfile_epochs": FLAGFILE_EPOCHS[name],
                        "lr": lr, "batch_size": 128,
                        "faces": faces, "identities": identities,
                        "split": f"CK+48 ck7, fold {FOLD} of {FOLDS} subject-disjoint folds "
                                 f"(fold_seed {FOLD_SEED}), every training subject",
                        "test_subjects_held_out": len(data.test_subjects), "orl": False,
                        "note": ORL_NOTE, "seconds": seconds,
                        "median_epoch_seconds": json.loads(timing.read_text())[
                            "median_epoch_seconds"] if timing.exists() else None,
                        "final_training_accuracy": training_accuracy(stage)}
        io_atomic.write_json(report_path, report)
        print(f"{name}: {epochs} epochs in {seconds} s, training accuracy "
              f"{report[name]['final_training_accuracy']} -> {out / f'{name}_fold.keras'}",
              flush=True)


if __name__ == "__main__":
    main()
