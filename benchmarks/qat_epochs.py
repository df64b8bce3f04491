"""How many epochs of quantisation-aware training does the int8 FER+ model need?

Wraps a trained inference model for QAT once (``keras_fer.export.qat``), then fine-tunes it
one epoch at a time on the training split; after each epoch it converts to int8 TFLite and
measures the float model, the post-training-quantised model (epoch 0) and the QAT model on
the *validation* split (which picks the epoch count) and on the test split (reported only):

    python benchmarks/qat_epochs.py --model=<run>/fold_0/inference.keras --dataset=ferplus \\
        --data_dir=.devdata --epochs=3 --out=benchmarks/results/qat_epochs_ferplus.json

CPU only (TensorFlow + tf_keras); on 2 cores an epoch over FER+'s 28k faces at depth 40 takes
a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _accuracy(probabilities, labels) -> float:
    import numpy as np

    return float(100.0 * np.mean(np.argmax(probabilities, axis=1) == labels))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="inference.keras from a trainer run")
    parser.add_argument("--dataset", default="ferplus")
    parser.add_argument("--data_dir", default="")
    parser.add_argument("--protocol", default="")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--calibration_faces", type=int, default=500,
                        help="training faces calibrating post-training int8 (epoch 0)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--save_dir", default="",
                        help="also keep each epoch's int8 model here as qat_<epoch>.tflite")
    args = parser.parse_args(argv)

    import numpy as np

    from keras_fer.data import preprocess
    from keras_fer.export.qat import (
        _fit,
        convert_qat_tflite,
        quantize_aware_train,
        rebuild_tf_keras,
    )
    from keras_fer.export.tflite import LiteRTClassifier, convert
    from keras_fer.models.loading import load_model
    from keras_fer.data.experiments import fold_indices, load_experiment, make_fold

    model = load_model(args.model)
    exp = load_experiment(args.dataset, args.data_dir, args.protocol)
    idx = fold_indices(exp, 10, 0, 0.0)
    data = make_fold(exp, 0, idx[0])
    if not len(data.y_val):
        raise SystemExit("The epoch count is chosen on the validation split; this dataset "
                         "has none (FER+ has: Valid).")
    x_val, x_test = preprocess.to_model_input(data.x_val), preprocess.to_model_input(data.x_test)

    def measure(predict) -> dict:
        return {"val": _accuracy(predict(x_val), data.y_val),
                "test": _accuracy(predict(x_test), data.y_test)}

    def batched(fn):
        return lambda x: np.concatenate([np.asarray(fn(x[i:i + 256]))
                                         for i in range(0, len(x), 256)])

    rows = {"float": measure(batched(lambda x: model(x, training=False)))}
    print("float", rows["float"], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        ptq = convert(model, "int8", Path(tmp) / "ptq.tflite",
                      representative_faces=data.x_train[:args.calibration_faces])
        rows["ptq_int8"] = measure(LiteRTClassifier(ptq, num_threads=os.cpu_count()).predict)
        print("ptq_int8", rows["ptq_int8"], flush=True)
        twin = rebuild_tf_keras(model)  # weights copied
        epochs = []
        qat = None
        for epoch in range(1, args.epochs + 1):
            start = time.time()
            if qat is None:
                qat = quantize_aware_train(twin, data.x_train, data.y_train, 1,
                                           args.batch_size, args.lr)
            else:  # one more epoch (a fresh Adam each epoch, as _fit compiles anew)
                _fit(qat, data.x_train, data.y_train, 1, args.batch_size, args.lr, seed=epoch)
            seconds = time.time() - start
            path = convert_qat_tflite(qat, Path(args.save_dir or tmp) / f"qat_{epoch}.tflite",
                                      representative_faces=data.x_train)
            row = {"epoch": epoch, "train_seconds": round(seconds, 1),
                   **measure(LiteRTClassifier(path, num_threads=os.cpu_count()).predict)}
            epochs.append(row)
            print("qat", row, flush=True)
            Path(args.out).write_text(json.dumps({
                "model": args.model, "dataset": args.dataset, "lr": args.lr,
                "batch_size": args.batch_size, **rows, "qat": epochs,
                "best_epoch_on_val": max(epochs, key=lambda r: r["val"])["epoch"],
            }, indent=1) + "\n")


if __name__ == "__main__":
    main()
