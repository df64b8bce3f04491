"""Copy weights between models by layer name (pretrain -> fine-tune -> export).

Every builder in the package gives its layers stable, prefixed names, so moving pretrained
weights into a merged model is a name lookup: a layer of the destination receives the
weights of the source layer with the same name. Nested models are searched too. The report
lists what matched and what did not, so a silently empty transfer (a renamed prefix) is
visible in the trainer's log and can be asserted in tests.
"""

from __future__ import annotations

import dataclasses

import keras


@dataclasses.dataclass(frozen=True)
class TransferReport:
    """Outcome of :func:`transfer_weights`.

    Attributes:
        matched: Destination layers that received weights.
        missing_in_source: Destination layers with weights and no same-named source layer
            (they keep their initial values).
        unused_from_source: Source layers with weights and no same-named destination layer.
        shape_mismatched: Same-named layers whose weight shapes differ (left untouched; only
            non-empty when ``skip_mismatched=True``).
    """

    matched: tuple[str, ...]
    missing_in_source: tuple[str, ...]
    unused_from_source: tuple[str, ...]
    shape_mismatched: tuple[str, ...]

    def summary(self) -> str:
        """One line per group, for logs."""
        groups = dataclasses.asdict(self)
        return "\n".join(
            f"{key} ({len(names)}): {', '.join(names)}" for key, names in groups.items()
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
    source: keras.Model, destination: keras.Model, *, skip_mismatched: bool = False
) -> TransferReport:
    """Copies all weights (trainable and not, e.g. BN statistics) of same-named layers.

    Args:
        source: The pretrained model.
        destination: The model to initialise; modified in place.
        skip_mismatched: Leave layers whose weight shapes differ untouched and list them in
            the report, instead of raising.

    Returns:
        A :class:`TransferReport`.

    Raises:
        ValueError: On a shape mismatch (unless ``skip_mismatched``) or duplicate names.
    """
    src_layers = _layers_with_weights(source)
    dst_layers = _layers_with_weights(destination)
    matched, mismatched = [], []
    for name, dst_layer in dst_layers.items():
        if name not in src_layers:
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
        matched.append(name)
    return TransferReport(
        matched=tuple(matched),
        missing_in_source=tuple(n for n in dst_layers if n not in src_layers),
        unused_from_source=tuple(n for n in src_layers if n not in dst_layers),
        shape_mismatched=tuple(mismatched),
    )
