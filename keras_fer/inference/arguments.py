"""Argument and output-path checks of ``keras-fer predict``, run before any model loads.

:func:`check_arguments` turns the parsed flags into a :class:`Plan` (what will be read and
written) or raises :class:`UsageError` (exit status 2) / :class:`NothingToRead` (exit status
1) with one line naming the flag or file. Split out of :mod:`keras_fer.inference.cli`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import List, Optional, Tuple

from keras_fer.inference import outputs
from keras_fer.inference.inputs import VIDEO, file_kind, list_folder


class UsageError(ValueError):
    """A bad argument, reported in one line with exit status 2 before anything runs."""


class NothingToRead(ValueError):
    """An empty or unreadable input folder: one line, exit status 1, before any model loads."""


def parse_class_names(value: Optional[str]) -> Optional[List[str]]:
    """``"ck7"`` -> that protocol's classes; ``"a,b,c"`` -> ``["a", "b", "c"]``; ``None`` kept."""
    if value is None:
        return None
    from keras_fer.data.labels import PROTOCOLS

    if value in PROTOCOLS:
        return list(PROTOCOLS[value])
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--class_names is empty. Received: {value!r}")
    return names


@dataclasses.dataclass
class Plan:
    """What a ``predict`` run will read and write, checked before any model loads."""

    source: Path
    sources: List[Tuple[Path, str]]  # (path, IMAGE or VIDEO)
    problems: List[Tuple[Path, str]]  # (path, reason) for what cannot be read
    model: Path
    annotate: Optional[Path] = None
    output: Optional[Path] = None


def _same_file(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and a.resolve() == b.resolve()


def check_arguments(args: argparse.Namespace) -> Plan:
    """Checks every argument and output path; returns the plan or raises :class:`UsageError`.

    Missing output folders are created here. Nothing is loaded.
    """
    from keras_fer.inference.defaults import default_model_path, example_photo
    from keras_fer.inference.predictor import ModelLoadError, check_model_path

    for flag, value, low in (
        ("--batch_size", args.batch_size, 1),
        ("--every", args.every, 1),
        ("--num_threads", args.num_threads, 1),
        ("--max_frames", args.max_frames, 0),
        ("--min_face", args.min_face, 8),
    ):
        if value is not None and value < low:
            raise UsageError(f"{flag} must be >= {low}. Received: {flag}={value}")
    if not 0.0 <= args.min_confidence <= 1.0:
        raise UsageError(
            f"--min_confidence must be in [0, 1]. Received: --min_confidence={args.min_confidence}"
        )
    try:
        parse_class_names(args.class_names)
    except ValueError as err:
        raise UsageError(str(err)) from err
    if bool(args.input) == bool(getattr(args, "example", False)):
        raise UsageError("give an input (image, video or folder) or --example, not both")
    source = Path(args.input) if args.input else example_photo()
    if not source.exists():
        hint = " (a broken symbolic link)" if source.is_symlink() else ""
        raise UsageError(f"input not found: {source}{hint}")
    model = Path(args.model) if args.model else default_model_path()
    if not args.model and not model.exists():
        raise UsageError(
            f"the default model {model} is not here (it ships in the repository's "
            "saved_models/, not in a wheel); pass --model"
        )
    try:
        model = check_model_path(model)
    except (FileNotFoundError, ModelLoadError) as err:
        raise UsageError(str(err)) from err
    if source.is_dir():
        try:
            sources, problems = list_folder(source, args.recursive)
        except OSError as err:
            raise NothingToRead(f"cannot list folder {source} ({err.strerror or err})") from err
        if not sources and not problems:
            raise NothingToRead(
                f"folder {source} holds no images or videos"
                + ("" if args.recursive else " (add --recursive for sub-folders)")
            )
    else:
        kind, reason = file_kind(source)
        sources, problems = ([(source, kind)], []) if kind else ([], [(source, reason)])
    plan = Plan(source, sources, problems, model)
    if args.annotate:
        plan.annotate = _check_annotate(Path(args.annotate), source, sources)
    if args.output:
        output = Path(args.output)
        if _same_file(output, source) or (plan.annotate and output == plan.annotate):
            raise UsageError(f"--output {output} would overwrite an input or --annotate")
        try:
            plan.output = outputs.prepare_file(output, "--output")
        except outputs.OutputError as err:
            raise UsageError(str(err)) from err
    return plan


def _check_annotate(path: Path, source: Path, sources: List[Tuple[Path, str]]) -> Path:
    suffix = path.suffix.lower()
    try:
        if source.is_dir():
            if source.resolve() == path.resolve():
                raise UsageError(f"--annotate {path} is the input folder; choose another folder")
            return outputs.prepare_folder(path, "--annotate")
        if _same_file(path, source):
            raise UsageError(f"--annotate {path} would overwrite the input")
        if sources and sources[0][1] == VIDEO:
            if not suffix:
                return outputs.prepare_folder(path, "--annotate")
            if suffix not in outputs.VIDEO_OUTPUT_SUFFIXES:
                raise UsageError(
                    f"--annotate {path}: for a video give a .avi or .mp4 file, or a folder "
                    "(no suffix) for PNG frames"
                )
            return outputs.prepare_file(path, "--annotate")
        if suffix and suffix not in outputs.IMAGE_OUTPUT_SUFFIXES:
            raise UsageError(
                f"--annotate {path}: unknown image suffix {suffix!r}; use .png or .jpg "
                "(no suffix writes PNG)"
            )
        return outputs.prepare_file(path, "--annotate")
    except outputs.OutputError as err:
        raise UsageError(str(err)) from err
