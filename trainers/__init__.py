"""The trainers: ``python -m trainers.<method> --flagfile=...`` (docs/training.md).

Run as a command, a trainer keeps TensorFlow's native start-up lines (oneDNN, CUDA probing,
CPU features: eight lines written from C++ to descriptor 2 while TensorFlow is imported,
which no environment variable silences) off the terminal, so that a user mistake reads as the
one ``error:`` line it ends in: descriptor 2 points at ``/dev/null`` until the flags are
checked (:func:`keras_fer.inference.quiet.native_stderr_back`, called by
``common.trainer_main``), and ``sys.stderr`` writes to a copy of the real one all along.
``--verbose`` keeps every line.
"""

import os
import sys

# sys.argv[0] is "-m" while ``python -m trainers.<method>`` imports this package; a test or
# a script importing a trainer module is left alone.
if sys.argv[:1] == ["-m"] and "--verbose" not in sys.argv:
    from keras_fer.inference.quiet import native_stderr_off

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    native_stderr_off()
