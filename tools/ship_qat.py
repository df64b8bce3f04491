"""Ships a QAT int8 model chosen by ``qat_epochs.py`` into a pushed model's TFLite folder.

Copies the ``.tflite`` to ``<tflite_dir>/tflite/model_qat.tflite`` and measures it against the
trained Keras model on the held-out split with the exporter's own ``parity_report``, replacing
the ``tflite_qat`` row of ``<tflite_dir>/export_report.json`` / ``.md``:

    python tools/ship_qat.py --tflite=qat_models/qat_2.tflite \\
        --model=<run>/fold_0/inference.keras --dataset=ferplus --data_dir=.devdata \\
        --tflite_dir=saved_models/idennet_ferplus_tflite --note="QAT, 2 epochs (chosen on Valid)"
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflite", required=True, help="the QAT .tflite to ship")
    parser.add_argument("--model", required=True, help="the trained inference.keras")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data_dir", default="")
    parser.add_argument("--protocol", default="")
    parser.add_argument("--tflite_dir", required=True, help="saved_models/<name>_tflite")
    parser.add_argument("--note", required=True, help="how the model was made")
    args = parser.parse_args(argv)

    from keras_fer.export.report import parity_report, write_report
    from keras_fer.models.loading import load_model
    from keras_fer.data.experiments import fold_indices, load_experiment, make_fold

    tflite_dir = Path(args.tflite_dir)
    report_path = tflite_dir / "export_report.json"
    report = json.loads(report_path.read_text())
    target = tflite_dir / "tflite" / "model_qat.tflite"
    shutil.copyfile(args.tflite, target)

    model = load_model(args.model)
    exp = load_experiment(args.dataset, args.data_dir, args.protocol)
    data = make_fold(exp, 0, fold_indices(exp, 10, 0, 0.0)[0])
    row = parity_report(model, {"tflite_qat": target}, data.x_test, data.y_test,
                        list(data.class_names))
    if abs(row["keras"]["accuracy"] - report["keras"]["accuracy"]) > 1e-9:
        raise SystemExit(f"The model does not match the report: {row['keras']['accuracy']} vs "
                         f"{report['keras']['accuracy']} on the held-out faces.")
    qat = row["variants"]["tflite_qat"]
    qat["path"] = str(target.resolve().relative_to(REPO))
    qat["note"] = args.note
    report["variants"]["tflite_qat"] = qat
    write_report(report, tflite_dir)
    print(json.dumps(qat, indent=1))


if __name__ == "__main__":
    main()
