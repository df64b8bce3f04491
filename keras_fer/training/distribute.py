"""Data-parallel training on the existing engines: one switch, four kinds.

``with distribution_scope(kind, global_batch_size) as plan:`` wraps everything that creates
or runs a model (build, ``compile``, ``fit``, ``evaluate``, ``predict``):

- ``"none"``: the default device, nothing changes.
- ``"data_parallel"`` (JAX backend): ``keras.distribution.DataParallel`` over
  ``keras.distribution.list_devices()`` - every local GPU (or every process's GPUs once
  ``keras.distribution.initialize()`` has joined a multi-host job, see below). Variables are
  replicated, each batch is split along its first axis, and XLA inserts the gradient
  all-reduce. BatchNormalization sees the whole global batch (the step is one sharded
  program), so a step matches single-device training up to float rounding. Every batch fed
  inside the scope must split evenly over the devices, the last one too: train with
  ``drop_remainder=True`` (validation data included), and ``predict`` / ``evaluate`` after
  leaving the scope, where the trained model takes batches of any size.
- ``"mirrored"`` (TensorFlow backend): ``tf.distribute.MirroredStrategy`` over the local GPUs
  (or CPUs where there are none). Keras 3 models work with it directly: variables made under
  ``strategy.scope()`` become mirrored, and ``fit`` runs each step per replica and sums the
  gradients (each replica's loss is divided by the number of replicas, so the update is the
  mean over the global batch). BatchNormalization statistics are per replica unless the
  layer is built with ``synchronized=True``.
- ``"multi_worker"`` (TensorFlow backend): ``tf.distribute.MultiWorkerMirroredStrategy``; the
  cluster and this process's role come from the ``TF_CONFIG`` environment variable, which
  must be set before the process starts TensorFlow. Every worker runs the same program.
  Keras 3.15's ``fit`` does not run under this strategy as shipped (keras-team/keras#20585);
  the strategy made here reduces values the way ``fit`` asks, which makes it work.

Batch size is always the **global** batch: ``batch_size`` examples per optimizer step over
all replicas together, each replica getting ``batch_size / num_replicas`` (it must divide
evenly; :func:`per_replica_batch_size`). Learning rates and step counts therefore do not
change with the number of devices, and a 2-GPU run sees the same batches as a 1-GPU run.

Multi-host JAX: set ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` (the coordinator's ``host:port``),
``KERAS_DISTRIBUTION_NUM_PROCESSES`` and ``KERAS_DISTRIBUTION_PROCESS_ID`` on every host;
``"data_parallel"`` then calls ``keras.distribution.initialize()`` before listing devices.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
from typing import Any, Iterator

import keras

KINDS = ("none", "data_parallel", "mirrored", "multi_worker")
BACKEND_OF_KIND = {"data_parallel": "jax", "mirrored": "tensorflow", "multi_worker": "tensorflow"}


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a distribution scope set up.

    Attributes:
        kind: one of :data:`KINDS`.
        num_replicas: model replicas that share each global batch (1 for ``"none"``).
        is_chief: whether this process should write shared outputs (results, exports).
            Only one process of a multi-worker / multi-host job is the chief; the others
            must write to a scratch folder of their own.
    """

    kind: str
    num_replicas: int
    is_chief: bool


def check_kind(kind: str) -> str:
    """Validates ``kind`` against the running Keras backend and returns it.

    Raises:
        ValueError: unknown kind, or a kind that needs another backend.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown distribution kind. Expected one of {KINDS}. Received: {kind!r}")
    needed = BACKEND_OF_KIND.get(kind)
    backend = keras.backend.backend()
    if needed is not None and backend != needed:
        raise ValueError(
            f"Distribution {kind!r} needs KERAS_BACKEND={needed}; this process runs "
            f"Keras on {backend!r}."
        )
    if kind == "multi_worker" and not os.environ.get("TF_CONFIG"):
        raise ValueError(
            "Distribution 'multi_worker' needs the TF_CONFIG environment variable (the cluster "
            "and this worker's task); it is not set."
        )
    return kind


def per_replica_batch_size(global_batch_size: int, num_replicas: int) -> int:
    """The batch each replica computes on, for a global batch split evenly.

    Raises:
        ValueError: when ``global_batch_size`` is not a positive multiple of ``num_replicas``.
    """
    if num_replicas < 1 or global_batch_size < 1 or global_batch_size % num_replicas:
        raise ValueError(
            "The global batch size must be a positive multiple of the number of replicas. "
            f"Received: global_batch_size={global_batch_size}, num_replicas={num_replicas}"
        )
    return global_batch_size // num_replicas


@functools.cache
def _engine(kind: str) -> Any:
    """One distribution object per kind and process (collectives are set up only once)."""
    if kind == "data_parallel":
        if int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1")) > 1:
            keras.distribution.initialize()
        return keras.distribution.DataParallel(devices=keras.distribution.list_devices())
    import tensorflow as tf

    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    return _keras3_multi_worker_strategy(tf)()


def _keras3_multi_worker_strategy(tf: Any) -> type:
    """``MultiWorkerMirroredStrategy`` whose ``reduce`` takes what Keras 3's ``fit`` passes.

    Keras 3.15's TensorFlow trainer calls ``strategy.reduce`` with a nested batch (to build
    the model symbolically) and with scalar logs along ``axis=0``; the collective strategy
    accepts neither (keras-team/keras#20585), so ``fit`` fails on its first step. Reducing
    leaf by leaf, scalars across replicas only, is what those calls mean.
    """

    class Keras3MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            def reduce_leaf(leaf):
                if isinstance(leaf, tf.distribute.DistributedValues):
                    rank = leaf.values[0].shape.rank
                else:
                    rank = tf.convert_to_tensor(leaf).shape.rank
                return super(Keras3MultiWorkerMirroredStrategy, self).reduce(
                    reduce_op, leaf, axis if rank else None)

            return tf.nest.map_structure(reduce_leaf, value)

    return Keras3MultiWorkerMirroredStrategy


def tf_config_is_chief(tf_config: str | None = None) -> bool:
    """Whether the task in ``TF_CONFIG`` is the one that writes shared outputs.

    The ``"chief"`` task if the cluster has one, otherwise worker 0 (TensorFlow's own
    convention); ``True`` when there is no ``TF_CONFIG`` at all (a single process).

    Args:
        tf_config: the JSON text; default ``$TF_CONFIG``.
    """
    text = os.environ.get("TF_CONFIG") if tf_config is None else tf_config
    if not text:
        return True
    parsed = json.loads(text)
    task, cluster = parsed.get("task", {}), parsed.get("cluster", {})
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def _plan(kind: str, engine: Any) -> Plan:
    if kind == "none":
        return Plan(kind, 1, True)
    if kind == "data_parallel":
        import jax

        return Plan(kind, int(engine.device_mesh.devices.size), jax.process_index() == 0)
    chief = kind == "mirrored" or tf_config_is_chief()
    return Plan(kind, int(engine.num_replicas_in_sync), chief)


@contextlib.contextmanager
def distribution_scope(kind: str, global_batch_size: int | None = None) -> Iterator[Plan]:
    """Runs the enclosed model code under distribution ``kind``.

    Build, compile and train the model inside the scope: variables must be created under
    it to be replicated, and ``fit`` shards each batch over the replicas.

    Args:
        kind: one of :data:`KINDS`.
        global_batch_size: when given, checked to split evenly over the replicas.

    Yields:
        The :class:`Plan` (replica count, chief or not).

    Raises:
        ValueError: unknown kind, wrong backend, missing ``TF_CONFIG``, or a global batch
            that does not split evenly.
    """
    check_kind(kind)
    engine = None if kind == "none" else _engine(kind)
    plan = _plan(kind, engine)
    if global_batch_size is not None:
        per_replica_batch_size(global_batch_size, plan.num_replicas)
    if engine is None:
        yield plan
    else:
        with engine.scope():
            yield plan
