"""Typed settings of each method, and the checks every run passes before it writes anything.

``--extra`` holds a method's own settings as JSON. Each method declares them as a dataclass
(:data:`EXTRA`: the key, its type, ``None`` meaning the method's own default, which the
method's module documents); :func:`check_extra` turns an unknown key, a wrong type or
malformed JSON into one :class:`ConfigError` line naming the key and the valid ones.
:func:`validate` checks a whole :class:`~keras_fer.training.config.TrainConfig` - variant,
fold, batch size, epochs, fractions, export formats, ``--model_dir``, ``--data_dir`` and
``--extra`` - so a mistake stops the run before a file is written.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union


class ConfigError(ValueError):
    """A setting a user gave that cannot work; the message names it and says what to do."""


@dataclasses.dataclass(frozen=True)
class IDEnNetExtra:
    """IDEnNet's ``--extra`` (see :mod:`keras_fer.training.idennet`)."""

    identity: Optional[str] = None
    alpha: Optional[float] = None
    dropout: Optional[float] = None
    gamma: Optional[float] = None
    emotion_init: Optional[str] = None
    identity_init: Optional[str] = None
    fusion_init: Optional[str] = None
    layers_per_block: Optional[int] = None
    weight_decay: Optional[float] = None
    distill_epochs: Optional[int] = None
    distill_lr: Optional[float] = None
    distill_ferplus_dir: Optional[str] = None
    emotion_backbone: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class TFEExtra:
    """TFE-JL's ``--extra`` (see :mod:`keras_fer.training.tfe`)."""

    identity: Optional[str] = None
    deepid_lr: Optional[float] = None
    deepid_pretrain_lr: Optional[float] = None
    deepid_epochs: Optional[int] = None
    hidden_units: Optional[Tuple[int, ...]] = None
    dropout: Optional[float] = None
    weight_decay: Optional[float] = None
    verification_fraction: Optional[float] = None
    verification_pairs: Optional[int] = None
    resnet_init: Optional[str] = None
    emotion_backbone: Optional[str] = None
    distill_epochs: Optional[int] = None
    distill_lr: Optional[float] = None
    distill_ferplus_dir: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class IDFERMExtra:
    """IDFERM's ``--extra`` (see :mod:`keras_fer.training.idferm`); ``hng`` and ``rml`` are
    objects of :class:`~keras_fer.models.idferm.HNGConfig` / ``RMLConfig`` fields."""

    hng: Optional[Dict[str, Any]] = None
    rml: Optional[Dict[str, Any]] = None
    hng_epochs: Optional[int] = None
    hng_lr: Optional[float] = None
    hng_batch_size: Optional[int] = None
    hng_weights: Optional[Dict[str, float]] = None
    expression_depth: Optional[int] = None
    clipnorm: Optional[float] = None
    identity_lr: Optional[float] = None
    identity_epochs: Optional[int] = None
    rml_pretrain_optimizer: Optional[str] = None
    rml_pretrain_lr: Optional[float] = None
    rml_init: Optional[str] = None
    per_class: Optional[int] = None
    weight_decay: Optional[float] = None
    verification_pairs: Optional[int] = None
    identity: Optional[str] = None
    perceptual: Optional[str] = None
    identity_far: Optional[float] = None
    stop_after: Optional[str] = None
    hng_init: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class IFGANExtra:
    """IF-GAN's ``--extra`` besides the :class:`~keras_fer.models.ifgan.IFGANConfig` fields
    (widths, loss weights; all but ``num_classes`` and ``use_attention``)."""

    jit_compile: Optional[Union[bool, str]] = None
    classifier_weights: Optional[str] = None
    recalibrate_bn: Optional[bool] = None


def extra_types(method: str) -> Dict[str, Any]:
    """``{key: type}`` of ``method``'s ``--extra`` settings."""
    if method == "expression":
        from keras_fer.training.recipe import Recipe

        return typing.get_type_hints(Recipe)
    schema = {"idennet": IDEnNetExtra, "tfe": TFEExtra, "idferm": IDFERMExtra,
              "ifgan": IFGANExtra}[method]
    types = typing.get_type_hints(schema)
    if method == "ifgan":
        from keras_fer.models.ifgan import IFGANConfig

        model = typing.get_type_hints(IFGANConfig)
        types.update({k: v for k, v in model.items() if k not in ("num_classes", "use_attention")})
    return types


def nested_types(method: str, key: str) -> Optional[Dict[str, Any]]:
    """The field types of a nested ``--extra`` object (IDFERM's ``hng`` and ``rml``)."""
    if method != "idferm" or key not in ("hng", "rml"):
        return None
    from keras_fer.models import idferm

    cls = idferm.HNGConfig if key == "hng" else idferm.RMLConfig
    return {k: v for k, v in typing.get_type_hints(cls).items()
            if k not in ("num_classes", "use_rml")}


def type_name(tp) -> str:
    """``Optional[float]`` -> ``"number or null"``: how a JSON user reads a type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Union:
        return " or ".join(type_name(a) for a in args)
    if origin in (tuple, list):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict or tp is dict:
        return "object"
    return {bool: "true/false", int: "integer", float: "number", str: "string",
            type(None): "null", Any: "any value"}.get(tp, getattr(tp, "__name__", str(tp)))


def matches(value, tp) -> bool:
    """Whether a JSON ``value`` fits the annotation ``tp`` (an integer fits a float)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if origin is Union:
        return any(matches(value, a) for a in args)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        items = [a for a in args if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(
            matches(v, items[0]) for v in value) if items else isinstance(value, (list, tuple))
    if origin is dict or tp is dict:
        return isinstance(value, dict) and (not args or all(matches(v, args[1])
                                                            for v in value.values()))
    return isinstance(value, tp)


def _check_keys(values: Mapping[str, Any], types: Mapping[str, Any], where: str) -> None:
    for key, value in values.items():
        if key not in types:
            raise ConfigError(f"{where}: unknown key {key!r}; valid keys: "
                              f"{', '.join(sorted(types))}.")
        if not matches(value, types[key]):
            raise ConfigError(f"{where}: {key!r} must be {type_name(types[key])}. Received: "
                              f"{json.dumps(value)[:80]}.")


def parse_extra(text: str) -> Dict[str, Any]:
    """``--extra``'s JSON text -> a dict; malformed JSON or a non-object is a ConfigError."""
    try:
        value = json.loads(text or "{}")
    except ValueError as err:
        raise ConfigError(f"--extra is not valid JSON ({err}): {text[:80]!r}; give an object "
                          "such as --extra='{\"dropout\": 0.3}'.") from None
    if not isinstance(value, dict):
        raise ConfigError(f"--extra must be a JSON object ({{\"key\": value, ...}}). "
                          f"Received: {text[:80]!r}.")
    return value


# The --extra keys whose value is a file or folder the run reads (weights to start from, a
# teacher, a data folder): checked to exist before anything runs.
PATH_KEYS = {
    "expression": ("init", "teacher", "face_weights"),
    "idennet": ("emotion_init", "identity_init", "distill_ferplus_dir"),
    "tfe": ("resnet_init", "distill_ferplus_dir"),
    "idferm": ("rml_init", "hng_init"),
    "ifgan": ("classifier_weights",),
}


def check_extra_paths(method: str, extra: Mapping[str, Any]) -> None:
    """Raises ConfigError for an ``--extra`` path (:data:`PATH_KEYS`) that does not exist."""
    for key in PATH_KEYS.get(method, ()):
        value = extra.get(key)
        if value and not Path(value).exists():
            where = "" if Path(value).is_absolute() else f" (relative to {Path.cwd()})"
            raise ConfigError(f"--extra {key!r}: {value} not found{where}; give an existing "
                              "file or folder, or leave the key out.")


def check_extra(method: str, extra: Mapping[str, Any]) -> None:
    """Raises ConfigError for an unknown key or a wrong type in ``method``'s ``--extra``."""
    types = extra_types(method)
    _check_keys(extra, types, f"--extra for {method}")
    for key, value in extra.items():
        nested = nested_types(method, key)
        if nested is not None and isinstance(value, dict):
            _check_keys(value, nested, f"--extra {key!r} for {method}")


def variants(method: str) -> Tuple[str, ...]:
    """The ``--variant`` values of ``method``."""
    if method == "idennet":
        from keras_fer.models.idennet import VARIANTS
    elif method == "expression":
        from keras_fer.models.expression import BACKBONES as VARIANTS
    else:
        import importlib

        VARIANTS = importlib.import_module(f"keras_fer.training.{method}").VARIANTS
    return tuple(VARIANTS)


def check_data_dir(dataset: str, data_dir: str, protocol: str = "", limit: int = 0,
                   use_orl: bool = True) -> None:
    """The trainers' ``--data_dir`` is the root holding one folder per dataset (``ckplus48/``,
    ``ferplus/``...) or the run's experiment pack (``tools/make_pack.py``: e.g.
    ``ckplus48_ck7.npz``); anything else is a ConfigError saying what was expected and found."""
    from keras_fer.data import registry
    from keras_fer.data.paths import data_dir as default_data_dir

    spec = registry.get(dataset)
    if not spec.paths:
        return
    root = Path(data_dir) if data_dir else default_data_dir()
    from keras_fer.data import packs

    protocol = protocol or spec.protocol
    pack = packs.pack_name(dataset, protocol, limit, use_orl)
    if (root / pack).exists():  # the experiment's pack (tools/make_pack.py) stands in
        return
    given = f"--data_dir={root}" if data_dir else f"the default data folder {root} ($FER_DATA_DIR)"
    missing = [p for p in spec.paths if not (root / p).exists()]
    if not missing:
        return
    others = sorted(p.name for p in root.glob(f"{dataset}_*.npz"))
    if others:
        raise ConfigError(
            f"{given} holds {', '.join(others)} but not {pack}, the pack of this run's "
            f"protocol, limit and ORL setting: build it with python tools/make_pack.py "
            f"--dataset={dataset} --protocol={protocol}"
            f"{f' --limit={limit}' if limit else ''}{'' if use_orl else ' --no_orl'} "
            f"--out={root}, or give the folder holding {spec.paths[0].split('/')[0]}/.")
    if not root.is_dir():
        found = "no such folder" if not root.exists() else "a file"
    else:
        names = sorted((p.name if len(p.name) <= 30 else p.name[:27] + "...")
                       + ("/" if p.is_dir() else "") for p in root.iterdir())
        found = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "") or "an empty folder"
    hint = ""
    parts = [part for p in spec.paths for part in Path(p).parts]
    if root.name in parts:
        hint = (f" {root} looks like the dataset's own folder: --data_dir takes the folder "
                f"above {spec.paths[0].split('/')[0]}/.")
    raise ConfigError(f"{given}: --dataset={dataset} expects {root / missing[0]} (--data_dir is "
                      f"the folder holding ckplus48/, ckplus_neutral/, ferplus/...); found "
                      f"{found}.{hint}")


def validate(config, check_data: bool = True) -> None:
    """Checks every setting of a run before anything is written; raises ConfigError.

    ``check_data=False`` skips ``--data_dir`` (a caller that hands in its own experiment).
    """
    from keras_fer.data import registry
    from keras_fer.export import parse_formats

    known = variants(config.method)
    if config.variant not in known:
        raise ConfigError(f"--variant={config.variant} is not a variant of {config.method}; "
                          f"valid: {', '.join(known)}.")
    fixed = registry.get(config.dataset).fixed_split
    if not fixed and config.folds < 2:
        raise ConfigError(f"--folds={config.folds}: subject-disjoint folds need at least 2.")
    n_folds = 1 if fixed else config.folds
    if not -1 <= config.fold < n_folds:
        raise ConfigError(f"--fold={config.fold}: give a fold index 0..{n_folds - 1} "
                          f"({config.dataset} has {n_folds} fold(s)), or -1 for all folds.")
    for name in ("batch_size",):
        if getattr(config, name) <= 0:
            raise ConfigError(f"--{name}={getattr(config, name)}: must be a positive integer.")
    for name in ("epochs", "pretrain_epochs", "limit", "heatmaps"):
        if getattr(config, name) < 0:
            raise ConfigError(f"--{name}={getattr(config, name)}: must be 0 or more.")
    if config.limit and not fixed:
        raise ConfigError(f"--limit={config.limit}: works on the datasets with fixed splits "
                          f"({', '.join(registry.FIXED_SPLIT_DATASETS)}) only; "
                          f"{config.dataset} is read whole (its folds split subjects): use "
                          "--fold for a shorter run.")
    if not 0.0 <= config.val_fraction < 1.0:
        raise ConfigError(f"--val_fraction={config.val_fraction}: must be in [0, 1).")
    if not 0.0 <= config.identity_fraction <= 1.0:
        raise ConfigError(f"--identity_fraction={config.identity_fraction}: must be in [0, 1].")
    try:
        parse_formats(list(config.export))
    except ValueError as err:
        raise ConfigError(f"--export: {err}") from None
    model_dir = Path(config.model_dir)
    if model_dir.exists() and not model_dir.is_dir():
        raise ConfigError(f"--model_dir={model_dir} is a file; give a folder (new, or a "
                          "previous run's to resume it).")
    check_extra(config.method, config.extra)
    check_extra_paths(config.method, config.extra)
    if check_data:
        check_data_dir(config.dataset, config.data_dir, config.protocol, config.limit,
                       config.use_orl)
