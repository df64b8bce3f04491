"""Export of trained inference models: SavedModel for TF Serving, TFLite variants, QAT, report.

Trainers call :func:`export_model` with their ``--export`` flag value, e.g.
``--export=savedmodel,tflite_int8`` or ``--export=all``. Layout under ``out_dir``::

    savedmodel/                      # serving_default (encoded images), serving_faces, class_names
    tflite/model_float32.tflite      # tflite_float32
    tflite/model_float16.tflite      # tflite_float16
    tflite/model_dynamic.tflite      # tflite_dynamic
    tflite/model_int8.tflite         # tflite_int8 (float I/O)
    tflite/model_int8_io.tflite      # tflite_int8 (int8 I/O)
    tflite/model_qat.tflite          # tflite_qat
    tflite/class_names.txt           # one class name per line, index-aligned with the output
    export_report.json / .md         # parity and size report (when held-out faces are given)

and, with ``serving_base_dir`` and ``model_name``, the SavedModel is pushed as the next version
of ``<serving_base_dir>/<model_name>/`` with warm-up requests, and ``models.config`` is
rewritten for every model there.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Sequence

import numpy as np

FORMATS = (
    "savedmodel",
    "tflite_float32",
    "tflite_float16",
    "tflite_dynamic",
    "tflite_int8",
    "tflite_qat",
)


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote.

    Attributes:
        artifacts: artifact name (``savedmodel``, ``tflite_float32``, ..., ``tflite_int8_io``)
            -> path.
        report: the parity report (see :func:`keras_fer.export.report.parity_report`) or None.
        pushed: the pushed TF Serving version directory, or None.
    """

    artifacts: dict
    report: dict | None = None
    pushed: Path | None = None


def parse_formats(formats: str | Sequence[str] | None) -> list[str]:
    """``"savedmodel,tflite_int8"`` / ``"all"`` / a list -> ordered list of known formats."""
    if formats is None or formats == "":
        return []
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    items = [f.strip() for f in items if f.strip()]
    if "all" in items:
        return list(FORMATS)
    unknown = sorted(set(items) - set(FORMATS))
    if unknown:
        raise ValueError(f"Unknown export formats {unknown}; expected some of {FORMATS} or 'all'.")
    return [f for f in FORMATS if f in items]


def encode_png(faces: np.ndarray) -> list[bytes]:
    """uint8 gray faces ``(N, H, W)`` -> PNG bytes (for warm-up requests and REST tests)."""
    from PIL import Image

    out = []
    for face in np.asarray(faces, np.uint8):
        buf = io.BytesIO()
        Image.fromarray(face).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def export_model(
    model,
    class_names: Sequence[str],
    formats: str | Sequence[str],
    out_dir: str | Path,
    representative_faces: np.ndarray | None = None,
    eval_faces: np.ndarray | None = None,
    eval_labels: np.ndarray | None = None,
    train_faces: np.ndarray | None = None,
    train_labels: np.ndarray | None = None,
    qat_epochs: int = 2,
    prune_sparsity: float | None = None,
    serving_base_dir: str | Path | None = None,
    model_name: str | None = None,
    latency_runs: int = 50,
) -> ExportResult:
    """Exports ``model`` in the requested formats and reports parity with the Keras model.

    Args:
        model: trained Keras 3 functional inference model (input ``image`` float32
            ``(B, 48, 48, 1)`` in [0, 1], softmax output ``(B, K)``); never a training wrapper.
        class_names: ``K`` class names, index-aligned with the output.
        formats: ``--export`` value: comma-separated :data:`FORMATS` or ``all``.
        out_dir: output folder (see the module docstring for the layout).
        representative_faces: aligned uint8 training faces ``(N, H, W)`` for int8
            calibration; defaults to ``train_faces``.
        eval_faces, eval_labels: held-out faces and class indices for the parity report and
            the pre-push parity check.
        train_faces, train_labels: training data for ``tflite_qat`` fine-tuning.
        qat_epochs: QAT (and pruning) fine-tuning epochs.
        prune_sparsity: prune to this sparsity before QAT (``tflite_qat`` only).
        serving_base_dir, model_name: push the SavedModel to this TF Serving root.
        latency_runs: timed runs per variant in the report.

    Returns:
        An :class:`ExportResult`.
    """
    from keras_fer.export import savedmodel, serving, tflite
    from keras_fer.export.report import parity_report, write_report

    wanted = parse_formats(formats)
    if (serving_base_dir is None) != (model_name is None):
        raise ValueError("Pass both serving_base_dir and model_name to push, or neither.")
    if serving_base_dir is not None and "savedmodel" not in wanted:
        raise ValueError(f"Pushing to TF Serving needs the 'savedmodel' format. Received {wanted}")
    if representative_faces is None:
        representative_faces = train_faces
    if "tflite_int8" in wanted and representative_faces is None:
        raise ValueError("tflite_int8 needs representative_faces (or train_faces) to calibrate.")
    if "tflite_qat" in wanted and (train_faces is None or train_labels is None):
        raise ValueError("tflite_qat needs train_faces and train_labels for fine-tuning.")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts: dict = {}
    if "savedmodel" in wanted:
        artifacts["savedmodel"] = savedmodel.export_savedmodel(
            model, class_names, out_dir / "savedmodel"
        )
    tflite_dir = out_dir / "tflite"
    for variant in ("float32", "float16", "dynamic"):
        if f"tflite_{variant}" in wanted:
            artifacts[f"tflite_{variant}"] = tflite.convert(
                model, variant, tflite_dir / f"model_{variant}.tflite"
            )
    if "tflite_int8" in wanted:
        for variant in ("int8", "int8_io"):
            artifacts[f"tflite_{variant}"] = tflite.convert(
                model, variant, tflite_dir / f"model_{variant}.tflite", representative_faces
            )
    if "tflite_qat" in wanted:
        from keras_fer.export.qat import export_qat_tflite

        artifacts["tflite_qat"] = export_qat_tflite(
            model,
            train_faces,
            train_labels,
            tflite_dir / "model_qat.tflite",
            epochs=qat_epochs,
            prune_sparsity=prune_sparsity,
        )

    if any(name.startswith("tflite_") for name in artifacts):
        # A .tflite file has no place for labels: the folder carries them (what the
        # Predictor and an app bundling the folder read), independent of the SavedModel.
        (tflite_dir / "class_names.txt").write_text("".join(f"{c}\n" for c in class_names))

    report = None
    have_eval = eval_faces is not None and eval_labels is not None
    if have_eval and artifacts:
        report = parity_report(
            model, artifacts, eval_faces, eval_labels, class_names, latency_runs=latency_runs
        )
        write_report(report, out_dir)

    pushed = None
    if serving_base_dir is not None:
        check_faces = None if eval_faces is None else np.asarray(eval_faces)[:16]
        pushed = serving.push(
            artifacts["savedmodel"],
            serving_base_dir,
            model_name,
            checks=[lambda d: serving.check_savedmodel(d, model, check_faces)],
            warmup_images=None if check_faces is None else encode_png(check_faces[:4]),
        )
        names = sorted(
            p.name for p in Path(serving_base_dir).iterdir() if p.is_dir() and serving.versions(p)
        )
        serving.write_models_config(serving_base_dir, names)
    return ExportResult(artifacts=artifacts, report=report, pushed=pushed)


def export_fold(model, fold, formats: str | Sequence[str], out_dir: str | Path,
                representative_count: int = 200, **kwargs) -> ExportResult:
    """:func:`export_model` with a trained fold's data: its classes, its first
    ``representative_count`` training faces to calibrate int8, its training faces and labels
    for QAT, and its test faces for the parity report.

    Args:
        fold: a ``data.experiments.FoldData`` (``class_names``, ``x_train``, ``y_train``,
            ``x_test``, ``y_test``).
        **kwargs: other :func:`export_model` arguments (``qat_epochs``, ``serving_base_dir``, ...).
    """
    return export_model(
        model,
        class_names=list(fold.class_names),
        formats=formats,
        out_dir=out_dir,
        representative_faces=fold.x_train[:representative_count],
        eval_faces=fold.x_test,
        eval_labels=fold.y_test,
        train_faces=fold.x_train,
        train_labels=fold.y_train,
        **kwargs,
    )

