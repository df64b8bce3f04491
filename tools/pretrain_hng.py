"""Pretrains IDFERM's neutral-face generator once as a face autoencoder on FER+ Train.

Each face is its own target, with the HNG's losses through dlib's face network (perceptual:
blocks 10 and 13; identity: its last two layers) at ``--hng_weights`` (default: identity
weight 10, as ``trainers/flagfiles/idferm_ckplus7_r18_face.flags``). No CK+ or ORL face is
used, so every CK+ fold may start from the result (``--extra hng_init=<out>``) and its
identity-preservation rate stays measured on people the generator never saw. Writes
``<out>`` (the generator: ``hng_encoder`` + ``hng_decoder``, ``image -> image``) and
``<out>.json`` (faces, epochs, seconds, the last epoch's losses); the stage resumes from
``--cache_dir``. See ``keras_fer.training.hng_pretrain``.

    python tools/pretrain_hng.py --out=pretrained/hng_ferplus_generator.keras --epochs=8
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_WEIGHTS = {"identity_weight": 10.0}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="", help="data root (default $FER_DATA_DIR)")
    parser.add_argument("--out", default=str(REPO / "pretrained" / "hng_ferplus_generator.keras"))
    parser.add_argument("--cache_dir", default=str(REPO / "runs" / "pretrain_hng"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--hng", default="{}", help="HNGConfig fields as JSON (IDFERM's "
                        "extra 'hng'; the folds that start from this must use the same)")
    parser.add_argument("--hng_weights", default=json.dumps(DEFAULT_WEIGHTS),
                        help="HNGModel loss weights as JSON (IDFERM's extra 'hng_weights')")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N faces")
    args = parser.parse_args(argv)
    try:
        hng_fields, weights = json.loads(args.hng), json.loads(args.hng_weights)
    except json.JSONDecodeError as err:
        parser.error(f"--hng and --hng_weights take JSON objects: {err}")
    if not args.out.endswith(".keras"):
        parser.error(f"--out must end in .keras; received {args.out!r}")

    from keras_fer import io_atomic
    from keras_fer.data import preprocess
    from keras_fer.data.paths import data_dir
    from keras_fer.models import idferm
    from keras_fer.training import distill, hng_pretrain, idferm_identity

    try:
        config = idferm.HNGConfig(**hng_fields)
    except (TypeError, ValueError) as err:
        parser.error(f"--hng: {err}")
    root = Path(args.data_dir) if args.data_dir else data_dir()
    faces = distill.read_ferplus_train(root / "ferplus" / "data")
    if args.limit:
        faces = faces[: args.limit]
    faces = preprocess.resize_uint8(faces, config.image_size)
    start = time.time()
    stage = Path(args.cache_dir) / "hng"
    generator = hng_pretrain.pretrain_generator(
        faces, config, idferm_identity.face_perceptual_model(),
        idferm_identity.face_identity_model(), weights, stage, args.epochs, args.lr,
        args.batch_size)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with io_atomic.atomic_path(out) as tmp:
        generator.save(tmp)
    history = stage / "history.csv"
    last = list(csv.DictReader(history.open()))[-1] if history.is_file() else {}
    report = {"faces": int(len(faces)), "source": "FER+ Train (no labels)",
              "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
              "hng": hng_fields, "hng_weights": weights,
              "seconds": round(time.time() - start),
              "last_epoch": {k: float(v) for k, v in last.items() if k != "epoch"}}
    io_atomic.write_json(Path(f"{out}.json"), report)
    print(f"HNG generator pretrained on {len(faces)} faces for {args.epochs} epochs "
          f"({report['seconds']} s) -> {out}", flush=True)


if __name__ == "__main__":
    main()
