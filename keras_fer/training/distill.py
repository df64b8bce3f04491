"""Distillation of dlib's face network into a small identity stream (IDEnNet's DenseNet,
TFE-JL's DeepID).

The paper's identity networks learnt faces from large corpora (IDEnNet: identity data;
TFE-JL: CASIA-WebFace). Ours see ~110 CK+ subjects plus ORL's 40, so before its identity
classification stage a small stream is first trained to reproduce the face network's
embedding on every face at hand: FER+ Train (``extra distill_ferplus_dir``: a FER+ data
folder; ~28k faces, no identities needed), the fold's training faces and ORL. The student is
the stream's feature plus a linear projection to 128-d (``<prefix>_distill_projection``,
dropped afterwards); the loss is the cosine distance between its output and the teacher's
embedding (both L2-normalised by the cosine), see :func:`distill_stream`.

The teacher (150x150, 5.6M parameters) never runs in the training step: its embeddings of
each face set are computed once per run and cached as ``.npy`` in the run directory
(:func:`teacher_embeddings`; written to a temporary file, then renamed into place), keyed
by a hash of the faces, so folds and resumed runs share them.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import keras
import numpy as np

from keras_fer import io_atomic
from keras_fer.data import preprocess
from keras_fer.data.augment import FaceBatches
from keras_fer.models.face_embedding import EMBEDDING_DIM, face_embedding_model
from keras_fer.training.idferm_identity import frame_input
from keras_fer.training.optim import make_sgd
from keras_fer.training.stages import fit_stage

TEACHER_BATCH = 256


def _faces_key(faces: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(faces).tobytes()).hexdigest()[:16]
    return f"{len(faces)}_{digest}"


# What the teacher sees of each face (the student always sees the models' centre crop):
# "crop", that same 48x48 crop; "frame", the whole aligned 60x60 frame, on which the face
# network verifies held-out ORL faces at 98.44% against 94.45% on the crop
# (benchmarks/results/identity.json); "frame_flip", the frame and its mirror, averaged.
TEACHER_INPUTS = ("crop", "frame", "frame_flip")


def teacher_model(teacher_input: str = "crop") -> keras.Model:
    """The face network that embeds ``teacher_input`` (one of :data:`TEACHER_INPUTS`)."""
    if teacher_input not in TEACHER_INPUTS:
        raise ValueError(f"teacher_input={teacher_input!r}: one of {TEACHER_INPUTS}")
    if teacher_input == "crop":
        return face_embedding_model()
    size = preprocess.ALIGNED_SIZE
    return face_embedding_model(input_shape=(size, size, 1),
                                flip_average=teacher_input == "frame_flip")


def teacher_embeddings(faces: np.ndarray, cache_dir: str | Path, name: str,
                       teacher: keras.Model | None = None,
                       teacher_input: str = "crop") -> np.ndarray:
    """The face network's embeddings ``(N, 128)`` of aligned uint8 faces, cached.

    Args:
        faces: uint8 ``(N, 60, 60)`` aligned faces.
        cache_dir: Folder of the cache (the run directory's ``teacher/``).
        name: Readable part of the file name (``ferplus_train``, ``orl``, ``fold_0``).
        teacher: The embedding model (default: :func:`teacher_model` of ``teacher_input``).
        teacher_input: What the teacher sees (:data:`TEACHER_INPUTS`; default the test-time
            centre crop, the input every model of the project sees).

    Returns:
        float32 ``(N, 128)``, from ``<cache_dir>/<name>[_<teacher_input>]_<N>_<hash>.npy``
        when present.
    """
    tag = "" if teacher_input == "crop" else f"_{teacher_input}"
    path = Path(cache_dir) / f"{name}{tag}_{_faces_key(faces)}.npy"
    if path.is_file():
        return np.load(path)
    teacher = teacher or teacher_model(teacher_input)
    out = np.zeros((0, EMBEDDING_DIM), np.float32)
    if len(faces):
        x = (preprocess.to_model_input(faces) if teacher_input == "crop" else
             frame_input(faces))
        out = np.asarray(teacher.predict(x, batch_size=TEACHER_BATCH, verbose=0), np.float32)
    io_atomic.save_npy(path, out)
    return out


def read_ferplus_train(data_dir: str | Path) -> np.ndarray:
    """FER+ Train's faces as aligned uint8 ``(N, 60, 60)`` (every face; labels unused)."""
    from keras_fer.data.fer_readers import read_ferplus

    table = read_ferplus(data_dir, splits=("train",))
    if table.images.dtype == object:
        return np.stack([preprocess.resize_uint8(im[None], preprocess.ALIGNED_SIZE)[0]
                         for im in table.images])
    return preprocess.resize_uint8(table.images, preprocess.ALIGNED_SIZE)


def distillation_faces(extra: dict, fold_faces: np.ndarray, identity_faces, cache_dir,
                       fold: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Every face at hand and its teacher embedding.

    Returns:
        ``(faces, embeddings, counts)``; ``counts`` says how many came from each source.
    """
    parts = [("fold_%d_train" % fold, np.asarray(fold_faces))]
    if identity_faces is not None and len(identity_faces):
        parts.append(("orl", np.asarray(identity_faces)))
    ferplus_dir = extra.get("distill_ferplus_dir")
    if ferplus_dir:
        parts.append(("ferplus_train", read_ferplus_train(ferplus_dir)))
    teacher = None
    faces, targets, counts = [], [], {}
    for name, x in parts:
        cached = Path(cache_dir) / f"{name}_{_faces_key(x)}.npy"
        if teacher is None and not cached.is_file():
            teacher = face_embedding_model()
        faces.append(x)
        targets.append(teacher_embeddings(x, cache_dir, name, teacher))
        counts[name] = int(len(x))
    return np.concatenate(faces), np.concatenate(targets), counts


def centre_targets(targets: np.ndarray) -> np.ndarray:
    """The teacher's embeddings less their mean over the distillation faces.

    dlib's embeddings of different people lie in a narrow cone (cosine ~0.9 between
    strangers; the equal-error threshold on ORL is 0.93), so a student at cosine 0.94 to its
    teacher still confuses people: measured, a DenseNet stream distilled that way verifies
    ORL at 79.6%. Centred, the cosine loss weighs the part that tells people apart.
    """
    targets = np.asarray(targets, np.float32)
    return targets - targets.mean(axis=0, keepdims=True)


def student_model(stream: keras.Model, feature_layer: str, prefix: str) -> keras.Model:
    """``stream``'s input -> its layer ``feature_layer`` -> linear 128-d projection."""
    feature = stream.get_layer(feature_layer).output
    out = keras.layers.Dense(EMBEDDING_DIM, name=f"{prefix}_distill_projection")(feature)
    return keras.Model(stream.inputs, out, name=f"{prefix}_distill")


def distill_stream(student: keras.Model, faces: np.ndarray, targets: np.ndarray,
                   stage_dir: Path, epochs: int, batch_size: int, lr: float,
                   seed: int = 0) -> dict:
    """Trains ``student`` (image -> 128-d) towards the teacher's embeddings (cosine loss).

    SGD with momentum 0.9 and the project's step schedule; the faces get the training
    augmentation (flip, rotation, crop), which leaves a face's identity unchanged, so its
    centre-crop teacher embedding stays the target. Resumes from ``stage_dir``.

    Returns:
        ``{"faces", "epochs", "final_cosine"}``: the mean cosine between student and teacher
        on the (unaugmented) faces after training.
    """
    steps = max(1, math.ceil(len(faces) / batch_size))
    student.compile(optimizer=make_sgd(lr, epochs, steps, weight_decay=1e-4),
                    loss=keras.losses.CosineSimilarity(axis=-1))
    train = FaceBatches(faces, targets, batch_size, augment=True, seed=seed,
                        drop_remainder=len(faces) > batch_size)
    fit_stage(student, stage_dir, train, epochs)
    pred = np.asarray(student.predict(preprocess.to_model_input(faces), batch_size=256,
                                      verbose=0), np.float64)
    cos = np.sum(pred * targets, 1) / np.maximum(
        np.linalg.norm(pred, axis=1) * np.linalg.norm(targets, axis=1), 1e-12)
    return {"faces": int(len(faces)), "epochs": int(epochs), "final_cosine": float(cos.mean())}
