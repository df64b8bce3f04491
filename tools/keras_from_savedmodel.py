"""Rebuilds the ``.keras`` of a shipped expression model from its SavedModel.

The GPU runs that trained a shipped model kept only its exports; fine-tuning from it (e.g.
every method's CK+ runs from the FER+ ResNet-18, issue 20 item 6) needs a ``.keras``. The
model is rebuilt with :func:`keras_fer.models.expression.build_expression_model` and filled
by variable path (:func:`keras_fer.models.loading.weights_from_savedmodel`); the outputs are
checked against the SavedModel's ``serving_faces`` signature on real FER+ Test faces.

``--float16`` stores the weights as float16 (half the size, for the GPU machine's 64 MiB
transfer limit); they load back into float32 variables.

    python tools/keras_from_savedmodel.py --savedmodel=saved_models/expression_ferplus_resnet18/1 \
        --backbone=resnet18_std --out=.devdata/ferplus_resnet18_std.keras --float16
"""

from __future__ import annotations

import argparse
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np


def to_float16(path: Path) -> None:
    """Rewrites the float32 weights inside a ``.keras`` archive as float16, atomically."""
    import h5py

    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(path) as archive:
            archive.extractall(tmp)
        # A new file: HDF5 does not give back the space of deleted datasets.
        weights = Path(tmp) / "model.weights.h5"
        half = Path(tmp) / "half.h5"
        with h5py.File(weights, "r") as src, h5py.File(half, "w") as dst:
            def copy(name, obj):
                if isinstance(obj, h5py.Group):
                    dst.require_group(name).attrs.update(dict(obj.attrs))
                    return
                values = obj[()]
                if values.dtype == np.float32:
                    values = values.astype(np.float16)
                dst.create_dataset(name, data=values).attrs.update(dict(obj.attrs))

            dst.attrs.update(dict(src.attrs))
            src.visititems(copy)
        os.replace(half, weights)
        partial = path.with_suffix(".partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for member in sorted(Path(tmp).rglob("*")):
                if member.is_file():
                    archive.write(member, member.relative_to(tmp))
        os.replace(partial, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--savedmodel", required=True, help="the version folder, e.g. .../1")
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--out", required=True)
    parser.add_argument("--float16", action="store_true")
    parser.add_argument("--check_faces", type=int, default=256,
                        help="FER+ Test faces the parity check runs on (0 = none)")
    args = parser.parse_args()

    from keras_fer.models.expression import build_expression_model
    from keras_fer.models.loading import weights_from_savedmodel

    model = build_expression_model(args.backbone, args.classes, weights=None)
    count = weights_from_savedmodel(model, args.savedmodel)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial.keras")
    model.save(partial)
    if args.float16:
        to_float16(partial)
    os.replace(partial, out)
    print(f"{count} weights -> {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    if args.check_faces:
        print(f"max |probability difference| to the SavedModel on {args.check_faces} FER+ Test "
              f"faces: {parity(out, Path(args.savedmodel), args.check_faces):.2e}")


def parity(keras_path: Path, serving_dir: Path, n_faces: int) -> float:
    """Max absolute difference of probabilities, ``.keras`` vs the SavedModel, on real faces."""
    from keras_fer.data import readers
    from keras_fer.data.paths import dataset_path
    from keras_fer.data.preprocess import ALIGNED_SIZE, resize_uint8, to_model_input
    from keras_fer.inference.predictor import Predictor
    from keras_fer.models.loading import load_model

    table = readers.read_ferplus(dataset_path("ferplus", "data"), splits=("test",))
    rows = np.random.default_rng(0).choice(len(table.images), n_faces, replace=False)
    faces = resize_uint8(np.stack([table.images[i] for i in rows]), ALIGNED_SIZE)
    with Predictor(serving_dir, prior="training", tta="none") as predictor:
        served = predictor.classify(faces)
    rebuilt = load_model(keras_path).predict(to_model_input(faces), verbose=0)
    return float(np.abs(served - rebuilt).max())


if __name__ == "__main__":
    main()
