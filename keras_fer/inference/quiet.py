"""Keeping TensorFlow, LiteRT, MediaPipe and absl log lines off a command's stderr.

LiteRT and MediaPipe log from C++ straight to file descriptor 2 (``INFO: Created TensorFlow
Lite XNNPACK delegate``, ``W0000 ... inference_runner_litert.cc``...), before and after any
Python code could filter them, and no environment variable silences all of them.
:func:`silence_native_stderr` points descriptor 2 at ``/dev/null`` for the rest of the
process and gives Python's ``sys.stderr`` a private copy of the real one, so the command's own
messages, progress bar and (with ``--verbose``) tracebacks still reach the terminal.
"""

from __future__ import annotations

import logging
import os
import sys


def quiet_python_loggers() -> None:
    """TensorFlow's and absl's Python loggers at ERROR, TF's C++ logs at ERROR."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GLOG_minloglevel", "2")
    for name in ("tensorflow", "absl", "keras"):
        logging.getLogger(name).setLevel(logging.ERROR)


_REAL_STDERR: int | None = None  # a copy of the real descriptor 2 while it is silenced


def silence_native_stderr() -> None:
    """Sends native writes to descriptor 2 to ``/dev/null``; ``sys.stderr`` keeps working.

    For command-line entry points only (a library must not take a process's descriptors).
    Does nothing when descriptor 2 cannot be duplicated (no stderr at all).
    """
    quiet_python_loggers()
    native_stderr_off()


def native_stderr_off() -> None:
    """Points descriptor 2 at ``/dev/null`` and ``sys.stderr`` at a private copy of the real
    one; Python's loggers are left as they are (the trainers keep their INFO lines).
    :func:`native_stderr_back` undoes the first half."""
    global _REAL_STDERR
    try:
        sys.stderr.flush()
        private = os.dup(2)
    except (OSError, ValueError, AttributeError):
        return
    _REAL_STDERR = os.dup(private)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    sys.stderr = os.fdopen(private, "w", buffering=1, encoding=encoding, errors="backslashreplace")


def native_stderr_back() -> None:
    """Points descriptor 2 back at the real stderr (a no-op unless it was silenced)."""
    global _REAL_STDERR
    if _REAL_STDERR is not None:
        os.dup2(_REAL_STDERR, 2)
        os.close(_REAL_STDERR)
        _REAL_STDERR = None
