"""Tests of keras_fer.training.distribute: each strategy trains like one device.

Device layouts (two logical CPUs for TensorFlow, two host devices for JAX) and
``TF_CONFIG`` are fixed when a process starts its engine, so every strategy runs in its own
subprocess and reports its numbers as a JSON line. Each run trains the same tiny model on
the same global batches with and without the strategy; synchronous data parallelism must
give the same losses and weights (up to float rounding).
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_fer.training import distribute

# Shared by every subprocess: a tiny model and 32 samples in two global batches of 16.
_COMMON = """
import json, os, sys
import numpy as np

def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(32, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 32)

def build(keras, batch_norm):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="conv")]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization(name="bn"))
    layers += [keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(),
               keras.layers.Dense(3, activation="softmax", name="fc")]
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss="sparse_categorical_crossentropy")
    return model

def train(keras, kind, batch_norm=False):
    from keras_fer.training import distribute
    x, y = data()
    with distribute.distribution_scope(kind, global_batch_size=16) as plan:
        model = build(keras, batch_norm)
        history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    weights = [np.asarray(w).tolist() for w in model.get_weights()]
    return model, plan, {"loss": history.history["loss"], "weights": weights}
"""

_MIRRORED = _COMMON + """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
_, _, single = train(keras, "none")
model, plan, mirrored = train(keras, "mirrored")
replicas = [np.asarray(v).tolist() for v in model.get_layer("conv").kernel.value.values]
print(json.dumps({"single": single, "mirrored": mirrored, "replicas": replicas,
                  "num_replicas": plan.num_replicas,
                  "devices": len(tf.config.list_logical_devices("CPU"))}))
"""

_WORKER = _COMMON + """
index, ports = int(sys.argv[1]), sys.argv[2].split(",")
os.environ["TF_CONFIG"] = json.dumps({
    "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
    "task": {"type": "worker", "index": index},
})
import keras
_, plan, result = train(keras, "multi_worker")
result.update(num_replicas=plan.num_replicas, is_chief=plan.is_chief)
if index == 0:
    # The reference: the same model on one device, in the default (non-distributed) strategy.
    result["single"] = train(keras, "none")[2]
print(json.dumps(result))
"""

_DATA_PARALLEL = _COMMON + """
import keras
_, _, single = train(keras, "none", batch_norm=True)
model, plan, sharded = train(keras, "data_parallel", batch_norm=True)
devices = len(model.get_layer("conv").kernel.value.sharding.device_set)
# Outside the scope the trained model takes batches that do not split over the devices.
odd = model.predict(data()[0][:5], batch_size=3, verbose=0)
print(json.dumps({"single": single, "sharded": sharded, "num_replicas": plan.num_replicas,
                  "variable_devices": devices, "odd_predictions": list(odd.shape)}))
"""


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", **extra)
    env.pop("TF_CONFIG", None)
    return env


def _result(proc_stdout: str) -> dict:
    return json.loads(proc_stdout.strip().splitlines()[-1])


def _run(script: str, env: dict, timeout: int = 150) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _result(proc.stdout)


def _assert_same_training(a: dict, b: dict, atol: float) -> None:
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
    assert len(a["weights"]) == len(b["weights"])
    for wa, wb in zip(a["weights"], b["weights"]):
        np.testing.assert_allclose(wa, wb, atol=atol)


def _free_ports(n: int) -> list:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_unknown_kind_is_rejected_with_the_received_value():
    with pytest.raises(ValueError, match="Received: 'horovod'"):
        distribute.check_kind("horovod")


def test_kind_of_another_backend_is_rejected():
    other = next(k for k, b in distribute.BACKEND_OF_KIND.items()
                 if b != keras.backend.backend())
    with pytest.raises(ValueError, match="KERAS_BACKEND"):
        distribute.check_kind(other)


def test_none_is_one_chief_replica():
    with distribute.distribution_scope("none", global_batch_size=7) as plan:
        assert plan == distribute.Plan("none", 1, True)


def test_global_batch_must_split_evenly():
    assert distribute.per_replica_batch_size(512, 2) == 256
    with pytest.raises(ValueError, match="global_batch_size=9, num_replicas=2"):
        distribute.per_replica_batch_size(9, 2)
    with pytest.raises(ValueError):
        distribute.per_replica_batch_size(0, 1)


@pytest.mark.parametrize(
    "tf_config, chief",
    [
        (None, True),
        ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}', True),
        ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}', False),
        ('{"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, '
         '"task": {"type": "worker", "index": 0}}', False),
        ('{"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, '
         '"task": {"type": "chief", "index": 0}}', True),
    ],
)
def test_tf_config_chief(monkeypatch, tf_config, chief):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.tf_config_is_chief(tf_config) is chief


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_trains_like_one_device():
    out = _run(_MIRRORED, _env(KERAS_BACKEND="tensorflow"))
    assert out["devices"] == 2 and out["num_replicas"] == 2
    # Both replicas hold the same variable values after training.
    np.testing.assert_array_equal(out["replicas"][0], out["replicas"][1])
    _assert_same_training(out["single"], out["mirrored"], atol=1e-6)


@pytest.mark.slow
def test_multi_worker_two_local_processes_agree_with_one_device():
    ports = ",".join(str(p) for p in _free_ports(2))
    script = textwrap.dedent(_WORKER)
    env = _env(KERAS_BACKEND="tensorflow")
    workers = [subprocess.Popen([sys.executable, "-c", script, str(i), ports], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
    try:
        outputs = [w.communicate(timeout=150) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    for w, (_, err) in zip(workers, outputs):
        assert w.returncode == 0, err[-3000:]
    chief, other = (_result(out) for out, _ in outputs)
    assert (chief["num_replicas"], other["num_replicas"]) == (2, 2)
    assert chief["is_chief"] and not other["is_chief"]
    _assert_same_training(chief, other, atol=0.0)
    _assert_same_training(chief["single"], chief, atol=1e-6)


@pytest.mark.slow
def test_jax_data_parallel_on_two_host_devices_trains_like_one_device():
    out = _run(_DATA_PARALLEL, _env(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
                                    XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    assert out["num_replicas"] == 2 and out["variable_devices"] == 2
    assert out["odd_predictions"] == [5, 3]
    # BatchNormalization included: the sharded step normalises over the whole global batch.
    _assert_same_training(out["single"], out["sharded"], atol=1e-5)
