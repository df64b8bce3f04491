"""Data-parallel scaling of IDEnNet on the JAX backend: 1 GPU vs 2 GPUs (DataParallel).

Two measurements, each in fresh subprocesses that see 1 or 2 GPUs (``CUDA_VISIBLE_DEVICES``):

1. Throughput: the two-stream IDEnNet-F fine-tuning model (depth 40, every layer trainable)
   on random faces, global batch 512 (256 per GPU on two), ``jit_compile=True``. The first
   epoch holds the compilation; later epochs give images/s. Efficiency is
   ``(images/s on 2) / (2 x images/s on 1)``.
2. Accuracy: IDEnNet Original (the emotion stream, from scratch) on one subject-disjoint
   CK+ fold from a data pack, the same epochs, global batch, seed and augmentation on 1 and
   on 2 GPUs; test accuracy of both. The global batch is the same, so both runs take the
   same optimizer steps on the same batches.

Throughput runs one after the other (so they do not share a GPU); the two accuracy runs
run side by side afterwards. Only NumPy, JAX and Keras are needed (no TensorFlow), as on
the GPU machine:

    KERAS_BACKEND=jax python3 benchmarks/scaling.py --pack=.devdata/ckplus48_ck7.npz

writes ``$OUT/scaling.json`` (or ``--out``) and prints a table. ``--smoke`` runs the same
code on two fake CPU devices with a tiny model, to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", default=".devdata/ckplus48_ck7.npz",
                        help="experiment pack (keras_fer.data.packs.save_pack)")
    parser.add_argument("--out", default="", help="JSON path (default $OUT/scaling.json)")
    parser.add_argument("--gpus", default="1,2", help="device counts to compare")
    parser.add_argument("--depth", type=int, default=40)
    parser.add_argument("--layers_per_block", type=int, default=0,
                        help="override the dense-block size that depth implies (tiny runs)")
    parser.add_argument("--batch_size", type=int, default=512, help="global throughput batch")
    parser.add_argument("--steps", type=int, default=30, help="steps per throughput epoch")
    parser.add_argument("--epochs", type=int, default=4, help="throughput epochs (1st compiles)")
    parser.add_argument("--dtype_policy", default="float32", help="e.g. mixed_bfloat16")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--fold_epochs", type=int, default=60)
    parser.add_argument("--fold_batch_size", type=int, default=128, help="global batch")
    parser.add_argument("--fold_lr", type=float, default=0.1)
    parser.add_argument("--fold_limit", type=int, default=0, help="use only N training faces")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=150,
                        help="seconds after which a throughput subprocess is killed")
    parser.add_argument("--budget", type=float, default=330,
                        help="seconds for the whole run: late subprocesses are killed and "
                        "what finished is still written")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny model and sizes on fake CPU devices (checks the script)")
    parser.add_argument("--worker", choices=("throughput", "accuracy"), help=argparse.SUPPRESS)
    parser.add_argument("--num_devices", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.depth, args.layers_per_block, args.batch_size, args.steps = 10, 1, 16, 2
        args.epochs, args.fold_epochs, args.fold_batch_size, args.fold_limit = 2, 1, 16, 64
    return args


def _epoch_timer():
    """A callback holding the wall time of every epoch (``fit`` syncs at each epoch end)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def _kind(num_devices: int) -> str:
    return "data_parallel" if num_devices > 1 else "none"


def _check_devices(num_devices: int) -> list:
    import keras

    devices = keras.distribution.list_devices()
    if len(devices) != num_devices:
        raise RuntimeError(f"expected {num_devices} device(s), JAX sees {devices}")
    return devices


def _throughput(args) -> dict:
    import keras

    from keras_fer.models import idennet
    from keras_fer.training import distribute

    devices = _check_devices(args.num_devices)
    config = idennet.IDEnNetConfig(variant="f", depth=args.depth, num_classes=7,
                                   layers_per_block=args.layers_per_block or None)
    rng = np.random.default_rng(args.seed)
    n = args.batch_size * args.steps
    x = rng.random((n, 48, 48, 1), dtype=np.float32)
    y = rng.integers(0, 7, n)
    timer = _epoch_timer()
    with distribute.distribution_scope(_kind(args.num_devices), args.batch_size):
        model = idennet.build_idennet(config)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=True)
        model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=False,
                  verbose=0, callbacks=[timer])
    steady = float(np.median(timer.seconds[1:]))
    return {
        "devices": [str(d) for d in devices],
        "parameters": int(model.count_params()),
        "global_batch": args.batch_size,
        "epoch_seconds": [round(s, 4) for s in timer.seconds],
        "images_per_second": n / steady,
        # The first epoch runs the same steps as the others, plus compilation.
        "compile_seconds": max(0.0, timer.seconds[0] - steady),
    }


def _accuracy(args) -> dict:
    import keras

    from keras_fer.data.augment import FaceBatches
    from keras_fer.data.preprocess import to_model_input
    from keras_fer.models import idennet
    from keras_fer.training import distribute
    from keras_fer.data.experiments import fold_indices, make_fold
    from keras_fer.data.packs import load_pack
    from keras_fer.training.optim import make_sgd

    _check_devices(args.num_devices)
    exp = load_pack(args.pack)
    data = make_fold(exp, args.fold, fold_indices(exp, args.folds, args.seed, 0.1)[args.fold],
                     seed=args.seed)
    x_train, y_train = data.x_train, data.y_train
    if args.fold_limit:
        x_train, y_train = x_train[: args.fold_limit], y_train[: args.fold_limit]
    batch = args.fold_batch_size
    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    with distribute.distribution_scope(_kind(args.num_devices), batch):
        config = idennet.IDEnNetConfig(variant="original", depth=args.depth,
                                       num_classes=data.num_classes,
                                       layers_per_block=args.layers_per_block or None)
        model = idennet.build_emotion_pretrain_model(config)
        model.compile(optimizer=make_sgd(args.fold_lr, args.fold_epochs, len(y_train) // batch),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                      jit_compile=True)
        train = FaceBatches(x_train, y_train, batch, augment=True, seed=args.seed,
                            drop_remainder=True)
        history = model.fit(train, epochs=args.fold_epochs, verbose=0)
        # Padded to whole batches: a sharded batch must split evenly over the devices.
        x_test = to_model_input(data.x_test)
        pad = -len(x_test) % batch
        x_test = np.concatenate([x_test, np.zeros((pad,) + x_test.shape[1:], np.float32)])
        proba = model.predict(x_test, batch_size=batch, verbose=0)[: len(data.y_test)]
    return {
        "fold": args.fold,
        "train_faces": int(len(y_train)),
        "test_faces": int(len(data.y_test)),
        "epochs": args.fold_epochs,
        "global_batch": batch,
        "final_train_loss": float(history.history["loss"][-1]),
        "test_accuracy": float(np.mean(np.argmax(proba, axis=1) == data.y_test) * 100.0),
        "wall_seconds": time.perf_counter() - start,
    }


def _worker_env(num_devices: int, smoke: bool) -> dict:
    env = dict(os.environ, KERAS_BACKEND="jax")
    # Accuracy runs share GPUs: without this each process would reserve most of the memory.
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    if smoke:
        env["JAX_PLATFORMS"] = "cpu"
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
    else:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(num_devices))
    return env


def _start(what: str, num_devices: int, argv: list, smoke: bool) -> subprocess.Popen:
    cmd = [sys.executable, __file__, *argv, f"--worker={what}", f"--num_devices={num_devices}"]
    print(f"[{time.strftime('%H:%M:%S')}] {what} on {num_devices} device(s)", flush=True)
    return subprocess.Popen(cmd, env=_worker_env(num_devices, smoke), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _collect(proc: subprocess.Popen, timeout: float) -> dict:
    timeout = max(1.0, timeout)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return {"error": f"killed after {timeout:.0f}s", "stderr": err[-2000:]}
    if proc.returncode != 0:
        return {"error": f"exit code {proc.returncode}", "stderr": err[-2000:]}
    return json.loads(out.strip().splitlines()[-1])


def _table(report: dict) -> str:
    rows = ["| GPUs | images/s | compile s | speed-up | efficiency | CK+ fold acc % |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    base = report["throughput"].get("1", {}).get("images_per_second")
    for n in report["gpus"]:
        t, a = report["throughput"][str(n)], report["accuracy"][str(n)]
        ips = t.get("images_per_second")
        speedup = ips / base if ips and base else None
        cells = [str(n), f"{ips:,.0f}" if ips else t.get("error", "-"),
                 f"{t['compile_seconds']:.1f}" if "compile_seconds" in t else "-",
                 f"{speedup:.2f}x" if speedup else "-",
                 f"{speedup / n:.0%}" if speedup else "-",
                 f"{a['test_accuracy']:.2f}" if "test_accuracy" in a else a.get("error", "-")]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv=None) -> dict:
    args = _parse(argv)
    if args.worker:
        os.environ.setdefault("KERAS_BACKEND", "jax")
        import keras

        keras.config.set_dtype_policy(args.dtype_policy)
        work = _throughput if args.worker == "throughput" else _accuracy
        print(json.dumps(work(args)), flush=True)
        return {}
    passed = sys.argv[1:] if argv is None else list(argv)
    counts = [int(c) for c in args.gpus.split(",")]
    start = time.time()
    report = {"gpus": counts, "depth": args.depth, "dtype_policy": args.dtype_policy,
              "smoke": args.smoke, "throughput": {}, "accuracy": {}}
    deadline = start + args.budget
    for n in counts:
        proc = _start("throughput", n, passed, args.smoke)
        report["throughput"][str(n)] = _collect(proc, min(args.timeout, deadline - time.time()))
    procs = {n: _start("accuracy", n, passed, args.smoke) for n in counts}
    for n, proc in procs.items():
        report["accuracy"][str(n)] = _collect(proc, max(1.0, deadline - time.time()))
    one, two = report["throughput"].get("1", {}), report["throughput"].get("2", {})
    if "images_per_second" in one and "images_per_second" in two:
        report["speedup_2_vs_1"] = two["images_per_second"] / one["images_per_second"]
        report["efficiency_2_vs_1"] = report["speedup_2_vs_1"] / 2
    report["wall_seconds"] = round(time.time() - start, 1)
    out = Path(args.out or Path(os.environ.get("OUT", "runs")) / "scaling.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(_table(report))
    print(json.dumps({k: report[k] for k in report if k not in ("throughput", "accuracy")}))
    print(f"-> {out}", flush=True)
    return report


if __name__ == "__main__":
    main()
