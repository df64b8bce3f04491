"""The trainers: ``python -m trainers.<method> --flagfile=...`` (docs/training.md).

Run as a command, a trainer keeps TensorFlow's native start-up lines (oneDNN, CUDA probing,
CPU features: eight lines written from C++ to descriptor 2 while TensorFlow is imported,
which no environment variable silences) off the terminal, so that a user mistake reads as the
one ``error:`` line it ends in: descriptor 2 points at ``/dev/null`` until the flags are
checked (:func:`native_stderr_back`), and ``sys.stderr`` writes to a copy of the real one all
along. ``--verbose`` keeps every line.
"""

import os
import sys

_REAL_STDERR = None

# sys.argv[0] is "-m" while ``python -m trainers.<method>`` imports this package; a test or
# a script importing a trainer module is left alone.
if sys.argv[:1] == ["-m"] and "--verbose" not in sys.argv:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        sys.stderr.flush()
        _REAL_STDERR = os.dup(2)
        sys.stderr = os.fdopen(os.dup(_REAL_STDERR), "w", buffering=1)
        _devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(_devnull, 2)
        os.close(_devnull)
    except (OSError, ValueError, AttributeError):
        _REAL_STDERR = None


def native_stderr_back() -> None:
    """Points descriptor 2 back at the real stderr (native warnings during training show)."""
    global _REAL_STDERR
    if _REAL_STDERR is not None:
        os.dup2(_REAL_STDERR, 2)
        os.close(_REAL_STDERR)
        _REAL_STDERR = None
