"""Evaluator: accuracy per class and per subject of the candidate vs the served model.

Both models are measured through their ``serving_default`` signature on the encoded crops of
ExampleGen's ``eval`` split, i.e. exactly as TF Serving would answer. The candidate is
*blessed* when its accuracy reaches ``min_accuracy`` and is not below the baseline's (the
highest version under ``<serving_dir>/<model_name>``) by more than ``max_regression``
percentage points; with no baseline (or one with other classes) the threshold alone decides.
Accuracies are in percent.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from keras_fer.data import tfrecords
from keras_fer.data.labels import CANONICAL
from keras_fer.pipeline import artifacts

EVALUATION_FILE = "evaluation.json"
BLESSED, NOT_BLESSED = "BLESSED", "NOT_BLESSED"
WARMUP_DIR = "warmup"
# Pushing adds warm-up requests to a copy of the SavedModel; the model itself is the rest.
_NOT_MODEL = ("assets.extra/tf_serving_warmup_requests", artifacts.METADATA_FILE)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Blessing thresholds (accuracy in percent)."""

    min_accuracy: float = 0.0
    max_regression: float = 1.0


def savedmodel_fingerprint(path: str | Path) -> str:
    """Fingerprint of a SavedModel directory that a push (warm-up requests added) keeps."""
    return artifacts.fingerprint_dir(path, exclude=_NOT_MODEL)


def latest_version(serving_dir: str | Path, model_name: str) -> Optional[Path]:
    """The highest pushed version directory of ``model_name``, or ``None``."""
    from keras_fer.export.serving import versions

    found = versions(Path(serving_dir) / model_name)
    return Path(serving_dir) / model_name / str(found[-1]) if found else None


def served_model(serving_dir: str | Path, model_name: str) -> Dict[str, object]:
    """What is served now (the Evaluator's and Pusher's external input for caching)."""
    latest = latest_version(serving_dir, model_name)
    if latest is None:
        return {"baseline": None}
    return {"baseline": str(latest), "fingerprint": savedmodel_fingerprint(latest)}


def evaluate_savedmodel(model_dir: str | Path, images: Sequence[bytes], expression: np.ndarray,
                        subjects: np.ndarray, batch_size: int = 256) -> Dict[str, object]:
    """Accuracy overall, per class and per subject of a SavedModel on encoded crops.

    Args:
        model_dir: a keras-fer SavedModel (``serving_default`` + ``class_names``).
        images: encoded face crops.
        expression: canonical class index per image; images of classes the model does not
            predict are left out (and counted in ``excluded``).
        subjects: subject id per image.
    """
    import tensorflow as tf

    loaded = tf.saved_model.load(str(model_dir))
    names = [n.decode() for n in loaded.signatures["class_names"]()["class_names"].numpy()]
    index = {CANONICAL.index(n): i for i, n in enumerate(names)}
    y = np.array([index.get(int(e), -1) for e in expression], dtype=np.int64)
    keep = np.flatnonzero(y >= 0)
    images = [images[i] for i in keep]
    serve = loaded.signatures["serving_default"]
    pred = np.concatenate([
        serve(images=tf.constant(images[i:i + batch_size]))["class_id"].numpy()
        for i in range(0, len(images), batch_size)
    ]) if images else np.zeros(0, np.int64)
    y, subjects = y[keep], np.asarray(subjects)[keep]
    correct = pred == y

    def slice_of(mask: np.ndarray) -> Dict[str, float]:
        return {"accuracy": 100.0 * float(correct[mask].mean()), "count": int(mask.sum())}

    per_subject = {s: slice_of(subjects == s) for s in sorted(set(subjects.tolist()))}
    return {
        "classes": names,
        "accuracy": 100.0 * float(correct.mean()) if len(y) else float("nan"),
        "count": int(len(y)),
        "excluded": int(len(expression) - len(y)),
        "per_class": {names[k]: slice_of(y == k) for k in range(len(names)) if (y == k).any()},
        "per_subject": per_subject,
        "worst_subject": min(per_subject.items(), key=lambda kv: kv[1]["accuracy"])[0]
        if per_subject else None,
    }


def blessing(candidate: Dict, baseline: Optional[Dict], config: EvalConfig) -> tuple[bool, str]:
    """The verdict and its reason (see the module docstring)."""
    acc = candidate["accuracy"]
    if not acc >= config.min_accuracy:
        return False, f"accuracy {acc:.2f}% < min_accuracy {config.min_accuracy:.2f}%"
    if baseline is None:
        return True, f"accuracy {acc:.2f}% >= {config.min_accuracy:.2f}%, no comparable baseline"
    floor = baseline["accuracy"] - config.max_regression
    if acc < floor:
        return False, (f"accuracy {acc:.2f}% is more than {config.max_regression:.2f} points "
                       f"below the served model's {baseline['accuracy']:.2f}%")
    return True, (f"accuracy {acc:.2f}% >= {config.min_accuracy:.2f}% and within "
                  f"{config.max_regression:.2f} points of the served {baseline['accuracy']:.2f}%")


def run_evaluator(examples_dir: str | Path, model_dir: str | Path, output_dir: str | Path,
                  config: EvalConfig, serving_dir: str | Path, model_name: str,
                  warmup: int = 4) -> Dict[str, object]:
    """The Evaluator component: writes ``evaluation.json``, ``BLESSED``/``NOT_BLESSED`` and a
    few encoded eval crops (``warmup/``) the Pusher sends as warm-up requests."""
    output_dir = Path(output_dir)
    data = tfrecords.read_split(str(examples_dir), "eval")
    images = list(data[tfrecords.IMAGE_KEY])
    candidate = evaluate_savedmodel(model_dir, images, data["expression"], data["subject"])
    served = served_model(serving_dir, model_name)
    baseline = None
    if served["baseline"] is not None:
        baseline = evaluate_savedmodel(served["baseline"], images, data["expression"],
                                       data["subject"])
        baseline["version_dir"] = served["baseline"]
        baseline["same_as_candidate"] = served["fingerprint"] == savedmodel_fingerprint(model_dir)
    comparable = baseline is not None and baseline["classes"] == candidate["classes"]
    blessed, reason = blessing(candidate, baseline if comparable else None, config)
    document = {
        "candidate": candidate,
        "baseline": baseline,
        "comparable": comparable,
        "blessed": blessed,
        "reason": reason,
        "config": dataclasses.asdict(config),
    }
    (output_dir / EVALUATION_FILE).write_text(json.dumps(document, indent=1) + "\n")
    (output_dir / (BLESSED if blessed else NOT_BLESSED)).write_text(reason + "\n")
    (output_dir / WARMUP_DIR).mkdir()
    for i, image in enumerate(images[:warmup]):
        (output_dir / WARMUP_DIR / f"{i}.png").write_bytes(image)
    print(f"[pipeline] Evaluator: {'blessed' if blessed else 'not blessed'}: {reason}", flush=True)
    return {"evaluation": EVALUATION_FILE, "blessed": blessed, "reason": reason,
            "accuracy": candidate["accuracy"]}
