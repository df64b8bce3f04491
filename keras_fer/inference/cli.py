"""``keras-fer predict``: classify every face of an image, a folder of images or a video.

Examples::

    keras-fer predict --example --annotate astronaut_faces.png    # the bundled photo
    keras-fer predict photo.jpg --annotate photo_faces.png       # the shipped default model
    keras-fer predict photos/ --model idennet_int8.tflite --annotate photos_faces/ > out.json
    keras-fer predict clip.mp4 --model saved_models/idennet --every 5 --annotate clip_faces.avi

The JSON report (stdout, or ``--output``) is::

    {"input": ..., "model": ..., "class_names": [...], "prior": {...} or null, "tta": ...,
     "results": [{"path": ..., ["frame": i, "time_s": t,] "faces": [{"box", "score", "class",
                  "class_id", "probabilities"}]}],
     "errors": [{"path": ..., "error": ...}]}

plus ``"interrupted": true`` when Ctrl-C stopped the run (the results so far are written,
exit status 130). An image without a face has ``"faces": []``.

Inputs are recognised by their bytes, not their names: a folder's images and videos (every
video's frames, with ``--every`` / ``--max_frames``) are read, in natural name order;
``--recursive`` enters sub-folders. Anything that cannot be read (corrupt, truncated, neither
image nor video, broken link) is listed under ``errors`` with the reason and on stderr.

Exit status: 0 when something was read; 1 when nothing could be read (an empty folder
included) or the run failed; 2 for a usage error (bad flag value, missing input or model, an
output that cannot be written), reported in one line before any model loads; 130 on Ctrl-C.
Every output file is written to a temporary file and renamed, so none is ever half-written.
Library and TensorFlow/LiteRT log lines are hidden unless ``--verbose``, which also shows
tracebacks. With a ``.tflite`` model nothing imports TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from keras_fer import io_atomic
from keras_fer.inference import outputs
from keras_fer.inference.arguments import (  # noqa: F401 - parse_class_names is public here
    NothingToRead,
    Plan,
    UsageError,
    check_arguments,
    parse_class_names,
)
from keras_fer.inference.defaults import DEFAULT_TTA, TTAS
from keras_fer.inference.inputs import IMAGE, file_kind, list_folder

HELP = "detect, align and classify faces in an image, a folder of images or a video"
PROG = "keras-fer predict"
EXIT_INTERRUPTED = 130

# One unit of work: its JSON fields, and a loader that returns the RGB/gray array (or raises).
Item = Tuple[Dict, Callable[[], np.ndarray]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the ``predict`` arguments on ``parser``."""
    parser.add_argument(
        "input", nargs="?", help="an image, a video, or a folder of images and videos"
    )
    parser.add_argument(
        "--example",
        action="store_true",
        help="predict the bundled example photo (scikit-image's astronaut, public domain)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="exported SavedModel directory or .tflite file (default: the shipped int8 model, "
        "keras_fer/inference/defaults.py)",
    )
    parser.add_argument(
        "--annotate",
        default=None,
        help="draw boxes and labels: an image file for an image (no suffix: PNG), an output "
        "folder for a folder, a video file (.avi/.mp4) or a folder of frames for a video",
    )
    parser.add_argument("--batch_size", type=int, default=16, help="images per batch (>= 1)")
    parser.add_argument("--every", type=int, default=1, help="video: keep every Nth frame (>= 1)")
    parser.add_argument("--max_frames", type=int, default=None, help="video: stop after N frames")
    parser.add_argument(
        "--min_confidence", type=float, default=0.5, help="face detection threshold in [0, 1]"
    )
    parser.add_argument(
        "--min_face",
        type=int,
        default=40,  # face_search.DEFAULT_MIN_FACE (not imported here: OpenCV slows start-up)
        help="smallest face side in pixels to find (>= 8; default 40): photos larger than 5x "
        "this are also searched in tiles of 5x this side and up; smaller finds smaller faces "
        "and is slower on large photos, larger is faster",
    )
    parser.add_argument("--num_threads", type=int, default=None, help="classifier CPU threads")
    parser.add_argument(
        "--class_names",
        default=None,
        help="comma-separated class names or a protocol name (ck7, ferplus8...), overriding "
        "those stored with the model",
    )
    parser.add_argument(
        "--prior",
        default="balanced",
        choices=("balanced", "training"),
        help="balanced (default): probabilities as if every expression were equally common "
        "(the model's class_prior.json, where it ships one); training: the model's own, "
        "under its training set's class frequencies (FER+: mostly neutral and happy faces)",
    )
    parser.add_argument(
        "--tta",
        default=DEFAULT_TTA,
        choices=TTAS,
        help="none (default): one pass; flip: average each face with its mirror image (twice "
        "the classification time; better on FER+ Valid, not on CK+)",
    )
    parser.add_argument("--recursive", action="store_true", help="folder: include sub-folders")
    parser.add_argument("--output", default=None, help="write the JSON here instead of stdout")
    parser.add_argument(
        "--progress", action="store_true", help="progress bar even when stderr is not a terminal"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--verbose", action="store_true", help="library log lines and tracebacks on stderr"
    )


class _VideoAnnotator:
    """Writes annotated frames to a video file (renamed into place on close) or PNG frames."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps, self._writer, self._tmp = path, fps, None, None

    def add(self, frame_index: int, image) -> None:
        import cv2

        if self.path.suffix.lower() not in outputs.VIDEO_OUTPUT_SUFFIXES:
            outputs.save_image(image, self.path / f"frame_{frame_index:06d}.png")
            return
        rgb = np.asarray(image)
        if self._writer is None:
            import tempfile

            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                prefix=f".{self.path.stem}.", suffix=self.path.suffix, dir=self.path.parent
            )
            os.close(fd)
            self._tmp = Path(tmp)
            codec = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
            size = (rgb.shape[1], rgb.shape[0])
            self._writer = cv2.VideoWriter(
                str(self._tmp), cv2.VideoWriter_fourcc(*codec), self.fps, size
            )
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self, keep: bool = True) -> None:
        """Finishes the file and renames it into place (``keep``) or deletes it."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if keep:
            os.chmod(self._tmp, 0o666 & ~outputs._umask())
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


def _frame_items(
    path: Path, every: int, max_frames: Optional[int], errors: List[Dict]
) -> Tuple[Iterator[Item], int, float]:
    """A video's kept frames as items, their expected count (0: unknown) and frame rate.

    A video that cannot be opened, or ends early, adds an entry to ``errors``.
    """
    from keras_fer.data.video import VideoTruncatedError, iter_frames, video_info

    try:
        info = video_info(path)
    except (ValueError, OSError) as err:
        errors.append({"path": str(path), "error": f"cannot open the video ({err})"})
        return iter(()), 0, 0.0
    fps = info.fps if info.fps > 0 else 0.0
    total = math.ceil(info.frame_count / every) if info.frame_count else 0
    if max_frames is not None:
        total = min(total, max_frames) if total else max_frames

    def items() -> Iterator[Item]:
        try:
            for index, frame in iter_frames(path, every, max_frames, check_length=True):
                fields = {"path": str(path), "frame": index}
                if fps:
                    fields["time_s"] = round(index / fps, 3)
                yield fields, lambda frame=frame: frame
        except VideoTruncatedError as err:
            errors.append({"path": str(path), "error": str(err).split(": ", 1)[1]})

    return items(), total, fps


def predict_path(
    predictor,
    source: str | Path,
    batch_size: int = 16,
    every: int = 1,
    max_frames: Optional[int] = None,
    annotate: Optional[str | Path] = None,
    recursive: bool = False,
    progress: bool = True,
    plan: Optional[Plan] = None,
) -> Dict:
    """Runs ``predictor`` on an image, a folder or a video; returns the JSON report.

    Args:
        predictor: a :class:`keras_fer.inference.predictor.Predictor`.
        source: image file, video file, or folder of images and videos (told by content).
        batch_size: images (or frames) whose faces are classified together.
        every: for a video, keep frames ``0, every, 2 * every, ...``.
        max_frames: for a video, stop after this many kept frames.
        annotate: where to draw boxes and labels (see the ``--annotate`` help), or ``None``.
        recursive: for a folder, include sub-folders.
        progress: show a tqdm progress bar on stderr.
        plan: the inputs as listed by :func:`check_arguments` (listed here when omitted).

    Returns:
        The report described in the module docstring; ``"interrupted": True`` is added when a
        ``KeyboardInterrupt`` stopped it (annotations written so far are complete files).
    """
    from tqdm import tqdm

    from keras_fer.data.imageio import ImageReadError, read_rgb
    from keras_fer.inference.annotate import draw_faces

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
    if every < 1:
        raise ValueError(f"every must be >= 1. Received: every={every}")
    source = Path(source)
    if plan is None:
        if not source.exists():
            raise FileNotFoundError(f"Input not found: {source}")
        if source.is_dir():
            sources, problems = list_folder(source, recursive)
        else:
            kind, reason = file_kind(source)
            sources, problems = ([(source, kind)], []) if kind else ([], [(source, reason)])
    else:
        sources, problems = plan.sources, plan.problems
    annotate = Path(annotate) if annotate else None
    report = {
        "input": str(source),
        "model": str(predictor.model_path),
        "class_names": list(predictor.class_names),
        "prior": _prior_note(predictor),
        "tta": predictor.tta,
        "results": [],
        "errors": [{"path": str(p), "error": reason} for p, reason in problems],
    }
    for path, reason in problems:
        print(f"skipped {path}: {reason}", file=sys.stderr)

    annotators: Dict[str, _VideoAnnotator] = {}
    iterators, total = [], 0
    for path, kind in sources:
        if kind == IMAGE:
            iterators.append(iter([({"path": str(path)}, lambda p=path: read_rgb(p))]))
            total += 1
            continue
        before = len(report["errors"])
        frames, count, fps = _frame_items(path, every, max_frames, report["errors"])
        for err in report["errors"][before:]:
            print(f"skipped {err['path']}: {err['error']}", file=sys.stderr)
        iterators.append(frames)
        total += count
        if annotate is not None:
            target = annotate
            if source.is_dir():
                target = annotate / path.relative_to(source).with_suffix("")
            annotators[str(path)] = _VideoAnnotator(target, fps / every if fps else 1.0)

    def annotate_one(fields: Dict, image: np.ndarray, faces: List[Dict]) -> None:
        drawn = draw_faces(image, faces)
        if "frame" in fields:
            annotators[fields["path"]].add(fields["frame"], drawn)
        elif source.is_dir():
            target = annotate / Path(fields["path"]).relative_to(source).with_suffix(".png")
            outputs.save_image(drawn, target)
        else:
            outputs.save_image(drawn, annotate)

    def flush(batch: List[Tuple[Dict, np.ndarray]]) -> None:
        for (fields, image), faces in zip(batch, predictor.predict_images([b[1] for b in batch])):
            report["results"].append({**fields, "faces": faces})
            if annotate is not None:
                annotate_one(fields, image, faces)
        batch.clear()

    batch: List[Tuple[Dict, np.ndarray]] = []
    bar = tqdm(
        total=total or None, desc="predict", unit="img", file=sys.stderr, disable=not progress
    )
    try:
        for frames in iterators:
            for fields, load in frames:
                bar.update(1)
                try:
                    batch.append((fields, load()))
                except ImageReadError as err:
                    report["errors"].append({"path": fields["path"], "error": err.reason})
                    tqdm.write(f"skipped {err.path}: {err.reason}", file=sys.stderr)
                    continue
                if len(batch) == batch_size:
                    flush(batch)
        flush(batch)
    except KeyboardInterrupt:
        report["interrupted"] = True
        if annotate is not None and annotate.is_dir():
            io_atomic.remove_own_temporaries(annotate)
    finally:
        bar.close()
        for annotator in annotators.values():
            annotator.close(keep=True)
    return report


def _write_report(report: Dict, output: Optional[Path]) -> None:
    text = json.dumps(report, indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        outputs.write_text(output, text)


def _interrupted(plan: Optional[Plan], report: Optional[Dict]) -> int:
    if report is None:
        removed = ""
        if plan is not None and plan.output is not None and plan.output.is_file():
            plan.output.unlink()
            removed = f"; the old {plan.output} was removed"
        print(f"{PROG}: interrupted before any result; nothing written{removed}", file=sys.stderr)
    else:
        where = plan.output if plan and plan.output else "stdout"
        print(
            f"{PROG}: interrupted after {len(report['results'])} results; those were "
            f"written to {where} with \"interrupted\": true",
            file=sys.stderr,
        )
    return EXIT_INTERRUPTED


def _prior_note(predictor) -> Optional[Dict]:
    """What the report's probabilities assume: ``None`` for the model's own."""
    prior = predictor.prior
    if prior is None:
        return None
    return {"tau": prior.tau, "file": str(prior.path),
            "train_prior": dict(zip(prior.class_names, prior.train_prior))}


def run(args: argparse.Namespace) -> int:
    """Runs ``keras-fer predict``; returns the exit status (see the module docstring)."""
    verbose = getattr(args, "verbose", False)
    if not verbose:
        from keras_fer.inference.quiet import silence_native_stderr

        silence_native_stderr()
    plan, report = None, None
    try:
        plan = check_arguments(args)
        from keras_fer.inference.predictor import ModelLoadError, Predictor

        try:
            predictor = Predictor(
                plan.model,
                min_confidence=args.min_confidence,
                num_threads=args.num_threads,
                class_names=parse_class_names(args.class_names),
                min_face=args.min_face,
                prior=args.prior,
                tta=args.tta,
            )
        except (ModelLoadError, ValueError) as err:
            raise UsageError(str(err)) from err
        show_progress = not args.quiet and (args.progress or sys.stderr.isatty())
        with predictor:
            report = predict_path(
                predictor,
                plan.source,
                batch_size=args.batch_size,
                every=args.every,
                max_frames=args.max_frames,
                annotate=plan.annotate,
                recursive=args.recursive,
                progress=show_progress,
                plan=plan,
            )
        _write_report(report, plan.output)
        if report.get("interrupted"):
            return _interrupted(plan, report)
    except KeyboardInterrupt:
        # Before the report was written: the previous --output is removed, never left looking
        # like this run's result.
        return _interrupted(plan, None)
    except UsageError as err:
        _fail(err, verbose)
        return 2
    except NothingToRead as err:
        _fail(err, verbose)
        return 1
    except Exception as err:  # noqa: BLE001 - one line for the user, traceback on --verbose
        _fail(err, verbose, f"{type(err).__name__}: ")
        return 1
    if not report["results"]:
        print(f"{PROG}: nothing could be read from {plan.source}", file=sys.stderr)
        return 1
    return 0


def _fail(err: BaseException, verbose: bool, prefix: str = "") -> None:
    if verbose:
        import traceback

        traceback.print_exception(err, file=sys.stderr)
    hint = "" if verbose else " (--verbose shows the details)"
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    print(f"{PROG}: {prefix}{message}{hint if prefix else ''}", file=sys.stderr)
