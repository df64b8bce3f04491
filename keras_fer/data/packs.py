"""Experiment packs: one compressed ``.npz`` per experiment (aligned faces, labels, splits).

Packs are how the GPU machine gets data (it has no TensorFlow, and the raw image folders are
too large to carry): ``--data_dir`` may point at a folder of packs, and
:func:`keras_fer.data.experiments.load_experiment` then reads the pack named
:func:`pack_name` without touching the readers. ``tools/make_pack.py`` writes them; the
pipeline's Trainer writes one of the ExampleGen splits.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from keras_fer.data import preprocess
from keras_fer.data.experiments import Experiment


def pack_name(dataset: str, protocol: str, limit: int = 0, use_orl: bool = True) -> str:
    """File name of a packed experiment (see :func:`save_pack`)."""
    return f"{dataset}_{protocol}{f'_limit{limit}' if limit else ''}{'' if use_orl else '_noorl'}.npz"


def _jpeg_faces(faces: np.ndarray, size: int, quality: int) -> dict:
    from io import BytesIO

    from PIL import Image

    blobs = []
    for face in preprocess.resize_uint8(faces, size):
        buf = BytesIO()
        Image.fromarray(face).save(buf, format="JPEG", quality=quality)
        blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    return {"faces_jpeg": np.concatenate(blobs), "faces_jpeg_offsets": offsets}


def _unjpeg_faces(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    from io import BytesIO

    from PIL import Image

    faces = [np.asarray(Image.open(BytesIO(data[a:b].tobytes())).convert("L"))
             for a, b in zip(offsets[:-1], offsets[1:])]
    return preprocess.resize_uint8(np.stack(faces), preprocess.ALIGNED_SIZE)


def save_pack(exp: Experiment, folder: str | Path, limit: int = 0, use_orl: bool = True,
              jpeg_train: tuple[int, int] | None = None) -> Path:
    """Writes an experiment as one compressed ``.npz`` (aligned faces, labels, splits).

    Packs are how the GPU machine gets data: it has no TensorFlow and the raw image folders
    are too large to carry, so ``--data_dir`` may point at a folder of packs instead, and
    :func:`~keras_fer.data.experiments.load_experiment` then reads the pack without touching the readers.

    Args:
        jpeg_train: ``(size, quality)`` stores the *training* rows of a fixed split as JPEG
            at ``size`` pixels (FER+/FER2013: their native 48 px, quality 90; see
            ``tools/make_pack.py``), the only way their 28k training faces fit the GPU
            machine's 64 MiB transfer; validation and test rows stay lossless (stored at
            ``size`` too), so reported accuracy is measured on the original pixels.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / pack_name(exp.name, exp.protocol, limit, use_orl)
    arrays = {k: v for k, v in dataclasses.asdict(exp).items()
              if v is not None and k not in ("fixed_split", "class_names", "name", "protocol")}
    if jpeg_train is not None:
        if exp.fixed_split is None:
            raise ValueError("jpeg_train needs a dataset with a fixed train split (FER+).")
        train = exp.fixed_split[0]
        arrays.update(_jpeg_faces(exp.faces[train], *jpeg_train))
        lossless = np.setdiff1d(np.arange(len(exp.faces)), train)
        # Stored at the native size too (build the experiment with face_size=size): the
        # resize to 60 at load is the one load_experiment does, so these rows load
        # bit-identical to a direct read of the dataset.
        arrays["faces"] = preprocess.resize_uint8(exp.faces[lossless], jpeg_train[0])
        arrays["faces_lossless_idx"] = lossless
    if exp.fixed_split is not None:
        for name, idx in zip(("train", "valid", "test"), exp.fixed_split):
            arrays[f"split_{name}"] = idx
    np.savez_compressed(path, name=exp.name, protocol=exp.protocol,
                        class_names=np.array(exp.class_names), **arrays)
    return path


def load_pack(path: str | Path) -> Experiment:
    """Reads an experiment written by :func:`save_pack`."""
    with np.load(path, allow_pickle=False) as z:
        get = lambda k: z[k] if k in z.files else None  # noqa: E731
        fixed = None
        if "split_train" in z.files:
            fixed = (z["split_train"], z["split_valid"], z["split_test"])
        faces = z["faces"]
        if "faces_jpeg" in z.files:
            side = preprocess.ALIGNED_SIZE
            full = np.zeros((len(z["labels"]), side, side), dtype=np.uint8)
            full[z["faces_lossless_idx"]] = preprocess.resize_uint8(faces,
                                                                     preprocess.ALIGNED_SIZE)
            full[fixed[0]] = _unjpeg_faces(z["faces_jpeg"], z["faces_jpeg_offsets"])
            faces = full
        return Experiment(
            name=str(z["name"]),
            protocol=str(z["protocol"]),
            class_names=tuple(str(c) for c in z["class_names"]),
            faces=faces,
            labels=z["labels"],
            subjects=z["subjects"],
            soft_labels=get("soft_labels"),
            fixed_split=fixed,
            identity_faces=get("identity_faces"),
            identity_subjects=get("identity_subjects"),
            neutral_faces=get("neutral_faces"),
            neutral_subjects=get("neutral_subjects"),
        )
