"""How identity-free IF-GAN's generated faces are, measured with dlib's face network.

IF-GAN's generator maps every face to the "average" face of its expression, so two
different people showing the same expression should come out alike. The measure, on the
fold's test faces: for pairs of faces of *different* subjects with the *same* expression
label, the face network's cosine distance between their generated faces against the same
distance between their inputs. A ratio well below 1 means the generator removed the
identity the face network sees; the paper's claim corresponds to a ratio near 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from keras_fer import io_atomic
from keras_fer.evaluation import verification
from keras_fer.models.face_embedding import face_embedding_model

MAX_PAIRS = 2000
REPORT = "identity_free.json"


def same_expression_pairs(labels: np.ndarray, subjects: np.ndarray, max_pairs: int,
                          seed: int) -> np.ndarray:
    """Index pairs ``(P, 2)`` of faces with the same label and different subjects (all such
    pairs when there are at most ``max_pairs``, else a random sample of them). A face whose
    subject is unknown (``""``, as every FER+ face, or ``subjects`` ``None``) counts as its
    own subject: FER+ holds nearly one face a person."""
    labels = np.asarray(labels)
    subjects = np.full(len(labels), "") if subjects is None else np.asarray(subjects).astype(str)
    i, j = np.triu_indices(len(labels), k=1)
    keep = (labels[i] == labels[j]) & ((subjects[i] != subjects[j]) | (subjects[i] == ""))
    pairs = np.stack([i[keep], j[keep]], axis=1).astype(np.int64)
    if len(pairs) > max_pairs:
        pairs = pairs[np.random.default_rng(seed).choice(len(pairs), max_pairs, replace=False)]
    return pairs


def identity_freeness(generator: keras.Model, faces: np.ndarray, labels: np.ndarray,
                      subjects: np.ndarray, embedder: keras.Model | None = None,
                      max_pairs: int = MAX_PAIRS, seed: int = 0) -> dict:
    """Face-network distances between generated faces vs between their inputs.

    Args:
        generator: IF-GAN's G, ``(B, S, S, 1)`` in [0, 1] -> same.
        faces: Model input ``(N, S, S, 1)`` in [0, 1] (test faces, centre crop).
        labels: ``(N,)`` expression labels.
        subjects: ``(N,)`` subject ids (``""`` unknown), or ``None`` (all unknown).
        embedder: Embedding model (default: the face network, any input size).
        max_pairs: Pairs sampled at most.
        seed: Seeds the sample.

    Returns:
        ``{"pairs", "input_distance", "generated_distance", "distance_ratio",
        "closer_percent"}``: mean cosine distances, their ratio (generated / input) and the
        share of pairs whose generated faces are closer than their inputs; ``pairs`` 0 and
        ``None`` figures when no such pair exists.
    """
    pairs = same_expression_pairs(labels, subjects, max_pairs, seed)
    if not len(pairs):
        return {"pairs": 0, "input_distance": None, "generated_distance": None,
                "distance_ratio": None, "closer_percent": None}
    embedder = embedder or face_embedding_model(input_shape=(None, None, 1))
    generated = np.asarray(generator.predict(faces, batch_size=128, verbose=0))
    d_in = 1.0 - verification.cosine_scores(
        np.asarray(embedder.predict(faces, batch_size=128, verbose=0)), pairs)
    d_gen = 1.0 - verification.cosine_scores(
        np.asarray(embedder.predict(np.clip(generated, 0.0, 1.0), batch_size=128,
                                    verbose=0)), pairs)
    return {
        "pairs": int(len(pairs)),
        "input_distance": float(d_in.mean()),
        "generated_distance": float(d_gen.mean()),
        "distance_ratio": float(d_gen.mean() / max(d_in.mean(), 1e-12)),
        "closer_percent": 100.0 * float(np.mean(d_gen < d_in)),
    }


def add_identity_freeness(model_dir: str | Path) -> dict:
    """Adds the folds' mean identity-freeness figures to ``results.json`` (the per-fold
    figures are already in each fold's entry as ``identity_free``).

    Returns:
        The updated results document (unchanged when no fold measured any).
    """
    path = Path(model_dir) / "results.json"
    results = json.loads(path.read_text())
    ratios = [f["identity_free"]["distance_ratio"] for f in results["folds"]
              if (f.get("identity_free") or {}).get("distance_ratio") is not None]
    if ratios:
        results["mean_identity_free_distance_ratio"] = float(np.mean(ratios))
        io_atomic.write_json(path, results)
    return results
