"""``keras-fer predict``: classify every face of an image, a folder of images or a video.

Examples::

    keras-fer predict photo.jpg --model saved_models/idennet/1 --annotate photo_faces.png
    keras-fer predict photos/ --model idennet_int8.tflite --annotate photos_faces/ > out.json
    keras-fer predict clip.mp4 --model saved_models/idennet --every 5 --annotate clip_faces.avi

The JSON report (stdout, or ``--output``) is::

    {"input": ..., "model": ..., "class_names": [...],
     "results": [{"path": ..., ["frame": i, "time_s": t,] "faces": [{"box", "score", "class",
                  "class_id", "probabilities"}]}],
     "errors": [{"path": ..., "error": ...}]}

An image without a face has ``"faces": []``. A file that cannot be read is listed in
``errors`` (and on stderr) and skipped; the exit status is 1 only when nothing could be read.
This module imports TensorFlow and MediaPipe only when the command runs.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

HELP = "detect, align and classify faces in an image, a folder of images or a video"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")

# One unit of work: its JSON fields, and a loader that returns the RGB/gray array (or raises).
Item = Tuple[Dict, Callable[[], np.ndarray]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declares the ``predict`` arguments on ``parser``."""
    parser.add_argument("input", help="an image file, a folder of images, or a video file")
    parser.add_argument(
        "--model", required=True, help="exported SavedModel directory or .tflite file"
    )
    parser.add_argument(
        "--annotate",
        default=None,
        help="draw boxes and labels: an image file for an image, an output folder for a folder, "
        "a video file (.avi/.mp4) or a folder of frames for a video",
    )
    parser.add_argument("--batch_size", type=int, default=16, help="images per batch")
    parser.add_argument("--every", type=int, default=1, help="video: keep every Nth frame")
    parser.add_argument("--max_frames", type=int, default=None, help="video: stop after N frames")
    parser.add_argument(
        "--min_confidence", type=float, default=0.5, help="face detection threshold"
    )
    parser.add_argument("--num_threads", type=int, default=None, help="classifier CPU threads")
    parser.add_argument(
        "--class_names",
        default=None,
        help="comma-separated class names or a protocol name (ck7, ferplus8...), overriding "
        "those stored with the model",
    )
    parser.add_argument("--recursive", action="store_true", help="folder: include sub-folders")
    parser.add_argument("--output", default=None, help="write the JSON here instead of stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


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


def _image_items(source: Path, root: Optional[Path], recursive: bool) -> List[Item]:
    from keras_fer.data.imageio import read_rgb

    if root is None:
        return [({"path": str(source)}, lambda: read_rgb(source))]
    pattern = "**/*" if recursive else "*"
    files = sorted(
        (p for p in root.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=_natural_key,
    )
    return [({"path": str(p)}, lambda p=p: read_rgb(p)) for p in files]


def _video_items(
    source: Path, every: int, max_frames: Optional[int]
) -> Tuple[Iterator[Item], int, float]:
    """The frames to classify, their expected count (0: unknown) and the video's frame rate."""
    from keras_fer.data.video import iter_frames, video_info

    info = video_info(source)
    fps = info.fps if info.fps > 0 else 0.0
    total = math.ceil(info.frame_count / every) if info.frame_count else 0
    if max_frames is not None:
        total = min(total, max_frames) if total else max_frames

    def items() -> Iterator[Item]:
        for index, frame in iter_frames(source, every=every, max_frames=max_frames):
            fields = {"path": str(source), "frame": index}
            if fps:
                fields["time_s"] = round(index / fps, 3)
            yield fields, lambda frame=frame: frame

    return items(), total, fps


class _VideoAnnotator:
    """Writes annotated frames to a video file, or to a folder of PNG frames."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps, self._writer = path, fps, None

    def add(self, frame_index: int, image) -> None:
        import cv2

        if self.path.suffix.lower() not in VIDEO_SUFFIXES:
            self.path.mkdir(parents=True, exist_ok=True)
            image.save(self.path / f"frame_{frame_index:06d}.png")
            return
        rgb = np.asarray(image)
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            codec = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
            size = (rgb.shape[1], rgb.shape[0])
            self._writer = cv2.VideoWriter(
                str(self.path), cv2.VideoWriter_fourcc(*codec), self.fps, size
            )
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


def predict_path(
    predictor,
    source: str | Path,
    batch_size: int = 16,
    every: int = 1,
    max_frames: Optional[int] = None,
    annotate: Optional[str | Path] = None,
    recursive: bool = False,
    progress: bool = True,
) -> Dict:
    """Runs ``predictor`` on an image, a folder of images or a video; returns the JSON report.

    Args:
        predictor: a :class:`keras_fer.inference.predictor.Predictor`.
        source: image file, folder of images, or video file (by extension).
        batch_size: images (or frames) whose faces are classified together.
        every: for a video, keep frames ``0, every, 2 * every, ...``.
        max_frames: for a video, stop after this many kept frames.
        annotate: where to draw boxes and labels (see the ``--annotate`` help), or ``None``.
        recursive: for a folder, include images in sub-folders.
        progress: show a tqdm progress bar on stderr.

    Returns:
        The report described in the module docstring.
    """
    from tqdm import tqdm

    from keras_fer.data.imageio import ImageReadError
    from keras_fer.inference.annotate import draw_faces

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"Input not found: {source}")
    is_video = source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES
    annotate = Path(annotate) if annotate else None
    report = {
        "input": str(source),
        "model": str(predictor.model_path),
        "class_names": list(predictor.class_names),
        "results": [],
        "errors": [],
    }
    video_out = None
    if is_video:
        try:
            items, total, fps = _video_items(source, every, max_frames)
        except ValueError as err:  # OpenCV cannot open it: report, like an unreadable image
            report["errors"].append({"path": str(source), "error": str(err)})
            print(f"skipped {source}: {err}", file=sys.stderr)
            return report
        video_out = _VideoAnnotator(annotate, fps / every if fps else 1.0) if annotate else None
    else:
        items = _image_items(source, source if source.is_dir() else None, recursive)
        total = len(items)

    def annotate_one(fields: Dict, image: np.ndarray, faces: List[Dict]) -> None:
        drawn = draw_faces(image, faces)
        if video_out is not None:
            video_out.add(fields["frame"], drawn)
        elif source.is_dir():
            target = annotate / Path(fields["path"]).relative_to(source).with_suffix(".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            drawn.save(target)
        else:
            annotate.parent.mkdir(parents=True, exist_ok=True)
            drawn.save(annotate)

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
        for fields, load in items:
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
    finally:
        bar.close()
        if video_out is not None:
            video_out.close()
    return report


def run(args: argparse.Namespace) -> int:
    """Runs ``keras-fer predict``; returns the exit status."""
    from keras_fer.inference.predictor import Predictor

    source = Path(args.input)
    if not source.exists():
        print(f"keras-fer predict: input not found: {source}", file=sys.stderr)
        return 2
    try:
        predictor = Predictor(
            args.model,
            min_confidence=args.min_confidence,
            num_threads=args.num_threads,
            class_names=parse_class_names(args.class_names),
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"keras-fer predict: {err}", file=sys.stderr)
        return 2
    with predictor:
        report = predict_path(
            predictor,
            source,
            batch_size=args.batch_size,
            every=args.every,
            max_frames=args.max_frames,
            annotate=args.annotate,
            recursive=args.recursive,
            progress=not args.quiet,
        )
    text = json.dumps(report, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    else:
        print(text)
    return 1 if report["errors"] and not report["results"] else 0
