"""Parsing the trainers' absl flags inside a test."""

import contextlib

from absl import flags


@contextlib.contextmanager
def parsed_flags(program: str, *argv: str):
    """The trainer flags parsed from ``argv`` as ``program`` would (reset afterwards)."""
    flags.FLAGS.unparse_flags()
    flags.FLAGS([program, *argv])
    try:
        yield flags.FLAGS
    finally:
        flags.FLAGS.unparse_flags()
