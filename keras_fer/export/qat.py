"""Quantization-aware training and pruning through a tf_keras rebuild of the inference model.

``tensorflow-model-optimization`` only understands tf_keras (Keras 2) models, so
:func:`rebuild_tf_keras` walks the Keras 3 functional graph (``model.get_config()``), makes the
tf_keras twin of every built-in layer from its config with the same name and connectivity, and
copies the trained weights by layer name. Then :func:`quantize_aware_train` fine-tunes with
fake-quantisation, optional :func:`prune` removes low-magnitude weights first, and
:func:`convert_qat_tflite` writes the int8 ``.tflite`` (float I/O).

Importing ``tensorflow_model_optimization`` needs ``TF_USE_LEGACY_KERAS=1`` (its ``tf.keras``
must be tf_keras); :func:`tfmot` sets it, for this process, before the first import.
"""

from __future__ import annotations

import functools
import inspect
import os
import tempfile
from pathlib import Path

import numpy as np

from keras_fer.export.tflite import as_model_input, write_float_savedmodel

# Layers whose Keras 3 config maps one-to-one onto the tf_keras class of the same name.
SUPPORTED_LAYERS = (
    "Activation",
    "Add",
    "AveragePooling2D",
    "BatchNormalization",
    "Concatenate",
    "Conv2D",
    "Dense",
    "DepthwiseConv2D",
    "Dropout",
    "Flatten",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "MaxPooling2D",
    "Multiply",
    "ReLU",
    "Rescaling",
    "Reshape",
    "SeparableConv2D",
    "Softmax",
    "SpatialDropout2D",
    "ZeroPadding2D",
)
_BASE_LAYER_KWARGS = {
    "trainable",
    "name",
    "dtype",
    "dynamic",
    "input_dim",
    "input_shape",
    "batch_input_shape",
    "batch_size",
    "weights",
    "activity_regularizer",
    "autocast",
}


def tfmot():
    """Imports ``tensorflow_model_optimization`` with tf_keras as its ``tf.keras``."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tensorflow_model_optimization
    from tensorflow_model_optimization.python.core.quantization.keras import (
        quantize_aware_activation,
    )

    # tfmot 0.7.3 rebuilds Conv+BN(+ReLU) folds through tf_keras' from_config, which needs
    # from_config on the NoOpActivation it puts into the conv; the class lacks one.
    noop = quantize_aware_activation.NoOpActivation
    if not hasattr(noop, "from_config"):
        noop.from_config = classmethod(lambda cls, config: cls())
    return tensorflow_model_optimization


def _tf_keras_config(layer_name: str, cls, config: dict) -> dict:
    config = dict(config)
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        config["dtype"] = dtype.get("config", {}).get("name", "float32")
    # Subclasses forward **kwargs to their bases (BatchNormalization's renorm arguments).
    allowed = set(_BASE_LAYER_KWARGS)
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            allowed |= set(inspect.signature(klass.__init__).parameters)
    for key in list(config):
        # Initialisers only matter for fresh weights; the trained ones are copied over, and
        # Keras 3 initialiser configs carry arguments tf_keras does not know.
        if key.endswith("_initializer"):
            del config[key]
        elif key not in allowed:
            if config[key] in (None, False, 0, [], {}):
                del config[key]  # a Keras 3 feature left off (lora_rank=None, ...)
            else:
                raise ValueError(
                    f"Layer '{layer_name}' ({cls.__name__}) has config {key}={config[key]!r}, "
                    "which tf_keras cannot represent."
                )
    return config


def _resolve(structure, tensors: dict):
    if isinstance(structure, dict):
        if structure.get("class_name") == "__keras_tensor__":
            name, node_index, tensor_index = structure["config"]["keras_history"]
            if node_index != 0:
                raise ValueError(
                    f"Layer '{name}' is called more than once (shared layers are not supported "
                    "by the tf_keras rebuild)."
                )
            out = tensors[name]
            return out[tensor_index] if isinstance(out, (list, tuple)) else out
        return {k: _resolve(v, tensors) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [_resolve(v, tensors) for v in structure]
    return structure


def rebuild_tf_keras(model):
    """The tf_keras twin of a Keras 3 functional ``model``, with its weights copied.

    Args:
        model: Keras 3 functional model made of built-in layers (:data:`SUPPORTED_LAYERS`),
            each called once.

    Returns:
        A ``tf_keras.Model`` with the same layer names, connectivity and weights.

    Raises:
        ValueError: a layer type is not supported, or a config/weight cannot be carried over.
    """
    import tf_keras

    config = model.get_config()
    tensors: dict = {}
    for entry in config["layers"]:
        cls_name, name = entry["class_name"], entry["name"]
        if cls_name == "InputLayer":
            cfg = entry["config"]
            tensors[name] = tf_keras.Input(
                batch_shape=tuple(cfg["batch_shape"]), dtype=cfg.get("dtype"), name=name
            )
            continue
        if cls_name not in SUPPORTED_LAYERS or entry.get("registered_name") not in (None, cls_name):
            raise ValueError(
                f"Cannot rebuild layer '{name}' of type {entry.get('registered_name') or cls_name} "
                f"with tf_keras; supported types: {', '.join(SUPPORTED_LAYERS)}."
            )
        if len(entry["inbound_nodes"]) != 1:
            raise ValueError(
                f"Layer '{name}' is called {len(entry['inbound_nodes'])} times; the tf_keras "
                "rebuild supports layers called exactly once."
            )
        cls = getattr(tf_keras.layers, cls_name)
        layer = cls(**_tf_keras_config(name, cls, entry["config"]))
        node = entry["inbound_nodes"][0]
        args = _resolve(node["args"], tensors)
        kwargs = _resolve(node.get("kwargs", {}), tensors)
        tensors[name] = layer(*args, **kwargs)

    def pick(refs):
        refs = refs if isinstance(refs[0], list) else [refs]
        out = [
            _resolve({"class_name": "__keras_tensor__", "config": {"keras_history": r}}, tensors)
            for r in refs
        ]
        return out[0] if len(out) == 1 else out

    twin = tf_keras.Model(
        pick(config["input_layers"]), pick(config["output_layers"]), name=model.name
    )
    copy_weights(model, twin)
    return twin


def copy_weights(source, target) -> None:
    """Copies weights layer by layer, matching by name; shapes must agree."""
    by_name = {layer.name: layer for layer in target.layers}
    for layer in source.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if layer.name not in by_name:
            raise ValueError(f"Layer '{layer.name}' has weights but no twin in '{target.name}'.")
        twin = by_name[layer.name]
        expected = [w.shape for w in twin.get_weights()]
        if expected != [w.shape for w in weights]:
            raise ValueError(
                f"Weight shapes differ for layer '{layer.name}': source "
                f"{[w.shape for w in weights]} vs target {expected}"
            )
        twin.set_weights(weights)


def _fit(model, faces, labels, epochs, batch_size, learning_rate, callbacks=(), seed=0):
    import tensorflow as tf
    import tf_keras

    x = as_model_input(faces)
    y = np.asarray(labels)
    loss = "categorical_crossentropy" if y.ndim == 2 else "sparse_categorical_crossentropy"
    tf.random.set_seed(seed)
    optimizer = tf_keras.optimizers.Adam(learning_rate)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=batch_size, callbacks=list(callbacks), verbose=0)
    return model


def prune(
    model,
    faces: np.ndarray,
    labels: np.ndarray,
    target_sparsity: float = 0.5,
    epochs: int = 2,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
):
    """Magnitude pruning to ``target_sparsity`` while fine-tuning; returns the stripped model.

    Args:
        model: a tf_keras model (see :func:`rebuild_tf_keras`).
        faces: training faces (uint8 aligned or float model inputs).
        labels: class indices ``(N,)`` or soft labels ``(N, K)``.
        target_sparsity: fraction of weights set to zero in each prunable layer.
        epochs, batch_size, learning_rate: fine-tuning settings.
    """
    if not 0.0 < target_sparsity < 1.0:
        raise ValueError(f"target_sparsity must be in (0, 1). Received {target_sparsity}")
    sparsity = tfmot().sparsity.keras
    schedule = sparsity.ConstantSparsity(target_sparsity, begin_step=0, frequency=1)
    pruned = sparsity.prune_low_magnitude(model, pruning_schedule=schedule)
    _fit(pruned, faces, labels, epochs, batch_size, learning_rate, [sparsity.UpdatePruningStep()])
    return sparsity.strip_pruning(pruned)


_FOLDABLE_INTO = ("Conv2D", "DepthwiseConv2D")


@functools.cache
def _layer_config_class():
    """QuantizeConfig without weight quantisers that may fake-quantise the layer's output.

    Used where tfmot's default 8-bit registry does not fit the TFLite graph:

    - a free-standing BatchNormalization (the pre-activation BN -> ReLU -> Conv of DenseNets;
      tfmot only folds BN into a preceding convolution and refuses the rest): TFLite runs it
      as an int8 MUL + ADD, so its output is quantised (``quantize_output=True``);
    - AveragePooling2D: TFLite's int8 average pool needs the same scale on input and output,
      and a second output quantiser makes conversion fail when the pooled map feeds a
      concatenation (DenseNet transitions), so it keeps its input's scale
      (``quantize_output=False``).
    """
    quantization = tfmot().quantization.keras

    class LayerQuantizeConfig(quantization.QuantizeConfig):
        def __init__(self, quantize_output: bool):
            self.quantize_output = quantize_output

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            if not self.quantize_output:
                return []
            return [
                quantization.quantizers.MovingAverageQuantizer(
                    num_bits=8, per_axis=False, symmetric=False, narrow_range=False
                )
            ]

        def get_config(self):
            return {"quantize_output": self.quantize_output}

        @classmethod
        def from_config(cls, config):
            return cls(**config)

    return LayerQuantizeConfig


def _annotate(model, config_cls):
    import tf_keras

    quantization = tfmot().quantization.keras

    def folds_into_conv(bn) -> bool:
        # tfmot folds a BN only into a convolution that feeds nothing else; DenseNet stems
        # also feed the first concatenation, which leaves their BN free-standing.
        parents = bn.inbound_nodes[0].inbound_layers
        parents = parents if isinstance(parents, list) else [parents]
        return (
            len(parents) == 1
            and type(parents[0]).__name__ in _FOLDABLE_INTO
            and len(parents[0].outbound_nodes) == 1
        )

    def annotate(layer):
        if isinstance(layer, tf_keras.layers.BatchNormalization) and not folds_into_conv(layer):
            return quantization.quantize_annotate_layer(layer, config_cls(quantize_output=True))
        if isinstance(layer, tf_keras.layers.AveragePooling2D):
            return quantization.quantize_annotate_layer(layer, config_cls(quantize_output=False))
        return quantization.quantize_annotate_layer(layer)

    return tf_keras.models.clone_model(model, clone_function=annotate)


def quantize_aware_train(
    model,
    faces: np.ndarray,
    labels: np.ndarray,
    epochs: int = 2,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    preserve_sparsity: bool = False,
):
    """Wraps ``model`` with fake-quantisation and fine-tunes it.

    Args:
        model: a tf_keras model (see :func:`rebuild_tf_keras`), possibly pruned.
        faces: training faces (uint8 aligned or float model inputs).
        labels: class indices ``(N,)`` or soft labels ``(N, K)``.
        epochs, batch_size, learning_rate: fine-tuning settings.
        preserve_sparsity: keep pruned zeros at zero (pruning-preserving QAT scheme).

    Returns:
        The quantisation-aware tf_keras model.
    """
    quantization = tfmot().quantization.keras
    if preserve_sparsity:
        scheme = tfmot().experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    else:
        scheme = quantization.default_8bit.Default8BitQuantizeScheme()
    config_cls = _layer_config_class()
    with quantization.quantize_scope({config_cls.__name__: config_cls}):
        qat = quantization.quantize_apply(_annotate(model, config_cls), scheme)
    return _fit(qat, faces, labels, epochs, batch_size, learning_rate)


def convert_qat_tflite(
    qat_model, out_path: str | Path, representative_faces: np.ndarray | None = None
) -> Path:
    """Converts a quantisation-aware model to an int8 ``.tflite`` with float I/O.

    Args:
        qat_model: the model from :func:`quantize_aware_train`.
        out_path: the ``.tflite`` file to write.
        representative_faces: training faces to calibrate the few tensors QAT leaves without
            fake-quantisation (the MUL/ADD of free-standing BatchNormalization); without them
            those ops stay float32 between DEQUANTIZE/QUANTIZE pairs.
    """
    import tensorflow as tf

    from keras_fer.export.tflite import representative_dataset

    with tempfile.TemporaryDirectory() as tmp:
        write_float_savedmodel(qat_model, tmp)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if representative_faces is not None:
            converter.representative_dataset = representative_dataset(representative_faces)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        flatbuffer = converter.convert()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(flatbuffer)
    return out_path


def export_qat_tflite(
    model,
    faces: np.ndarray,
    labels: np.ndarray,
    out_path: str | Path,
    epochs: int = 2,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    prune_sparsity: float | None = None,
) -> Path:
    """Keras 3 inference model -> tf_keras twin -> [pruning] -> QAT -> int8 ``.tflite``.

    Args:
        model: trained Keras 3 functional inference model.
        faces: training faces for fine-tuning (uint8 aligned or float model inputs).
        labels: class indices ``(N,)`` or soft labels ``(N, K)``.
        out_path: the ``.tflite`` file to write.
        epochs, batch_size, learning_rate: fine-tuning settings (per stage).
        prune_sparsity: if set, prune to this sparsity first and keep it through QAT.

    Returns:
        ``out_path`` as a ``Path``.
    """
    twin = rebuild_tf_keras(model)
    if prune_sparsity:
        twin = prune(twin, faces, labels, prune_sparsity, epochs, batch_size, learning_rate)
    qat = quantize_aware_train(
        twin,
        faces,
        labels,
        epochs,
        batch_size,
        learning_rate,
        preserve_sparsity=bool(prune_sparsity),
    )
    return convert_qat_tflite(qat, out_path, representative_faces=faces)
