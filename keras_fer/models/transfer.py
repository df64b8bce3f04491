"""Copy weights between models by layer name (pretrain -> fine-tune -> export).

Every builder in the package gives its layers stable, prefixed names, so moving pretrained
weights into a merged model is a name lookup: a layer of the destination receives the
weights of the source layer with the same name. Nested models are searched too. The report
lists what matched and what did not, so a silently empty transfer (a renamed prefix) is
visible in the trainer's log and can be asserted in tests. This is the project's only
weight-transfer helper (``keras_fer.models.idennet`` re-exports it).
"""

from __future__ import annotations

import dataclasses

import keras


@dataclasses.dataclass(frozen=True)
class TransferReport:
    """Outcome of :func:`transfer_weights`, by layer name (layers with weights only).

    Attributes:
        copied: Destination layers that received weights.
        not_in_source: Destination layers with no same-named source layer (they keep their
            initial values).
        unused_from_source: Source layers with no same-named destination layer.
        shape_mismatch: Same-named layers whose weight shapes differ (left untouched; only
            non-empty when ``skip_mismatched=True``).
        skipped: Same-named layers left as built because ``skip`` named them.
    """

    copied: list[str]
    not_in_source: list[str]
    unused_from_source: list[str]
    shape_mismatch: list[str]
    skipped: list[str] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        kept = f", kept {self.skipped} as built" if self.skipped else ""
        return (
            f"copied {len(self.copied)} layers{kept}, skipped {len(self.shape_mismatch)} with "
            f"other shapes {self.shape_mismatch}, {len(self.not_in_source)} not in the source, "
            f"{len(self.unused_from_source)} source layers unused {self.unused_from_source}"
        )


def _layers_with_weights(model: keras.Model) -> dict[str, keras.layers.Layer]:
    found: dict[str, keras.layers.Layer] = {}

    def visit(layer: keras.layers.Layer) -> None:
        if isinstance(layer, keras.Model):
            for sub in layer.layers:
                visit(sub)
            return
        if not layer.weights:
            return
        if layer.name in found and found[layer.name] is not layer:
            raise ValueError(
                f"Layer name '{layer.name}' occurs twice in model '{model.name}'; transfer "
                "by name needs unique names."
            )
        found[layer.name] = layer

    for layer in model.layers:
        visit(layer)
    return found


def transfer_weights(
    source: keras.Model, destination: keras.Model, skip_mismatched: bool = True,
    skip: tuple[str, ...] = (),
) -> TransferReport:
    """Copies all weights (trainable and not, e.g. BN statistics) of same-named layers.

    Args:
        source: The pretrained model.
        destination: The model to initialise; modified in place.
        skip_mismatched: Leave same-named layers whose weight shapes differ untouched and
            list them in the report (e.g. a classifier head pretrained on another number of
            classes); False raises instead, for transfers that must match exactly.
        skip: destination layers never copied into, e.g. a classifier head whose classes
            differ in meaning though not in number (FER+ 8 vs CK+ 8).

    Returns:
        A :class:`TransferReport`.

    Raises:
        ValueError: On a shape mismatch when ``skip_mismatched`` is False, or on two
            different layers sharing a name in one model.
    """
    src_layers = _layers_with_weights(source)
    dst_layers = _layers_with_weights(destination)
    copied, mismatched, skipped = [], [], []
    for name, dst_layer in dst_layers.items():
        if name not in src_layers:
            continue
        if name in skip:
            skipped.append(name)
            continue
        values = src_layers[name].get_weights()
        src_shapes = [tuple(v.shape) for v in values]
        dst_shapes = [tuple(w.shape) for w in dst_layer.weights]
        if src_shapes != dst_shapes:
            if not skip_mismatched:
                raise ValueError(
                    f"Layer '{name}': source weight shapes {src_shapes} differ from "
                    f"destination shapes {dst_shapes}."
                )
            mismatched.append(name)
            continue
        dst_layer.set_weights(values)
        copied.append(name)
    return TransferReport(
        copied=copied,
        not_in_source=[n for n in dst_layers if n not in src_layers],
        unused_from_source=[n for n in src_layers if n not in dst_layers],
        shape_mismatch=mismatched,
        skipped=skipped,
    )


def output_heads(model: keras.Model) -> tuple[str, ...]:
    """Names of the ``Dense`` layers that produce ``model``'s outputs (through at most one
    ``Activation``/``Softmax`` layer): its classifier (and embedding) heads."""
    names = []
    for tensor in model.outputs:
        history = getattr(tensor, "_keras_history", None)
        layer = history[0] if history else None
        if isinstance(layer, (keras.layers.Activation, keras.layers.Softmax)):
            inner = getattr(layer.input, "_keras_history", None)
            layer = inner[0] if inner else None
        if isinstance(layer, keras.layers.Dense):
            names.append(layer.name)
    return tuple(dict.fromkeys(names))


def init_from(destination: keras.Model, path: str | None, what: str,
              skip: tuple[str, ...] = ()) -> TransferReport | None:
    """Initialises ``destination`` from the ``.keras`` model at ``path`` by layer name.

    How every trainer starts a network from pretrained weights (``--extra`` keys such as
    IDEnNet's ``emotion_init``, TFE-JL's ``resnet_init``, IDFERM's ``rml_init``): the source is
    usually the ``inference.keras`` of a FER+ run of the same architecture. The destination's
    output heads (:func:`output_heads`) are always left as built: a pretrained head's columns
    mean other classes even where their number agrees (FER+'s 8 and CK+'s 8 are the same
    names in another order), and a copied head would start CK+ training from wrong logits.

    Args:
        destination: The freshly built model; modified in place.
        path: The pretrained ``.keras`` file; ``None`` or ``""`` does nothing.
        what: What is initialised, for the log line (e.g. ``"ResNet"``).
        skip: further destination layers left as built (see :func:`transfer_weights`).

    Returns:
        The :class:`TransferReport`, or ``None`` without a path.

    Raises:
        ValueError: When no layer matched: the source is another architecture (or another
            layer-name prefix), and training would silently start from scratch.
    """
    if not path:
        return None
    from keras_fer.models.loading import load_model

    report = transfer_weights(load_model(path), destination,
                              skip=tuple(skip) + output_heads(destination))
    if not report.copied:
        raise ValueError(
            f"No layer of {path} matches the {what} ({destination.name!r}): {report}. "
            "Pass a model of the same architecture (e.g. the inference.keras of a FER+ run "
            "of the same method, depth and variant)."
        )
    print(f"{what} initialised from {path}: {report}", flush=True)
    return report
