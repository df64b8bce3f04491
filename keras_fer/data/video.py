"""Reading video frames (files or camera indices) with OpenCV, as RGB uint8 arrays.

Frames come out in RGB order so they can go straight to :mod:`keras_fer.data.faces`, which
(like MediaPipe) expects RGB, whereas OpenCV decodes to BGR.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator, Optional, Tuple, Union

import cv2
import numpy as np

Source = Union[str, "os.PathLike[str]", int]


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the container reports about a video (``frame_count`` is 0 for live sources)."""

    width: int
    height: int
    fps: float
    frame_count: int


class VideoTruncatedError(ValueError):
    """A video file that ends before the frame count its container announces."""

    def __init__(self, source: Source, read: int, expected: int):
        self.read, self.expected = read, expected
        super().__init__(
            f"{source}: the video ends after {read} of the {expected} frames its header "
            "announces (truncated or corrupt)"
        )


def _open(source: Source) -> cv2.VideoCapture:
    if not isinstance(source, int) and not os.path.isfile(source):
        raise FileNotFoundError(f"Video file not found: {source}")
    capture = cv2.VideoCapture(source if isinstance(source, int) else str(source))
    if not capture.isOpened():
        raise ValueError(f"OpenCV cannot open video source {source!r}.")
    return capture


def video_info(source: Source) -> VideoInfo:
    """Size, frame rate and frame count of a video file or camera index."""
    capture = _open(source)
    try:
        return VideoInfo(
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            fps=float(capture.get(cv2.CAP_PROP_FPS)),
            frame_count=max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0),
        )
    finally:
        capture.release()


def iter_frames(
    source: Source,
    every: int = 1,
    max_frames: Optional[int] = None,
    check_length: bool = False,
) -> Iterator[Tuple[int, np.ndarray]]:
    """Yields ``(frame_index, rgb)`` for every ``every``-th frame of a video.

    Args:
        source: a video file path, or an integer camera index.
        every: keep frames ``0, every, 2 * every, ...`` (frames in between are decoded and
            dropped, since seeking is unreliable in many containers).
        max_frames: stop after yielding this many frames (``None``: until the video ends).
        check_length: raise :class:`VideoTruncatedError` (after the last frame) when a file
            ends more than one frame before the count its container announces.

    Yields:
        The frame's index in the video and the frame as uint8 ``(H, W, 3)`` RGB.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1. Received: every={every}")
    if max_frames is not None and max_frames < 0:
        raise ValueError(f"max_frames must be >= 0 or None. Received: max_frames={max_frames}")
    capture = _open(source)
    try:
        index, yielded = 0, 0
        while max_frames is None or yielded < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            if index % every == 0:
                yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                yielded += 1
            index += 1
        expected = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        stopped_early = max_frames is not None and yielded >= max_frames
        if check_length and not stopped_early and expected > 0 and index < expected - 1:
            raise VideoTruncatedError(source, index, expected)
    finally:
        capture.release()
