"""Pusher: a blessed model becomes the next version under ``<serving_dir>/<model_name>/``.

The push itself is :func:`keras_fer.export.serving.push` (staging directory, checks, warm-up
requests, atomic rename to the next integer version), followed by a rewrite of
``models.config`` for every model under ``serving_dir``. A candidate that is already the
highest served version (same SavedModel fingerprint) is not pushed again, which is also what
makes a rerun after a crash between the push and the end of the component safe.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

from keras_fer.pipeline.evaluator import (
    EVALUATION_FILE,
    WARMUP_DIR,
    latest_version,
    savedmodel_fingerprint,
)

PUSHED_FILE = "pushed.json"


def run_pusher(model_dir: str | Path, evaluation_dir: str | Path, output_dir: str | Path,
               serving_dir: str | Path, model_name: str) -> Dict[str, object]:
    """The Pusher component; writes ``pushed.json`` (``pushed``, ``version_dir``, ``reason``)."""
    from keras_fer.export import serving

    evaluation = json.loads((Path(evaluation_dir) / EVALUATION_FILE).read_text())
    latest = latest_version(serving_dir, model_name)
    if not evaluation["blessed"]:
        document = {"pushed": False, "version_dir": None,
                    "reason": f"not blessed: {evaluation['reason']}"}
    elif latest is not None and savedmodel_fingerprint(latest) == savedmodel_fingerprint(model_dir):
        document = {"pushed": False, "version_dir": str(latest),
                    "reason": f"already served as version {latest.name}"}
    else:
        warmup = sorted((Path(evaluation_dir) / WARMUP_DIR).glob("*.png"))
        version = serving.push(model_dir, serving_dir, model_name,
                               warmup_images=[p.read_bytes() for p in warmup] or None)
        names = sorted(p.name for p in Path(serving_dir).iterdir()
                       if p.is_dir() and serving.versions(p))
        serving.write_models_config(serving_dir, names)
        document = {"pushed": True, "version_dir": str(version),
                    "reason": f"pushed as version {version.name}"}
    (Path(output_dir) / PUSHED_FILE).write_text(json.dumps(document, indent=1) + "\n")
    print(f"[pipeline] Pusher: {document['reason']}", flush=True)
    return dict(document, pushed_file=PUSHED_FILE)
