"""The ``keras-fer`` command line (``keras_fer.cli:main`` in setup.py).

Each subcommand lives in its own module exposing ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only to build the parser, and must keep their
heavy imports (TensorFlow, MediaPipe) inside ``run`` so ``keras-fer --help`` stays fast.
Add a subcommand by adding its module to :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Optional, Sequence

SUBCOMMANDS = {
    "predict": "keras_fer.inference.cli",
    "serve": "keras_fer.inference.rest_server",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``keras-fer`` parser with one sub-parser per entry of :data:`SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="keras-fer", description="Identity-aware facial expression recognition."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parses ``argv`` (default ``sys.argv[1:]``) and runs the subcommand; returns its status."""
    args = build_parser().parse_args(argv)
    # TensorFlow's C++ info logs would drown the command's own stderr messages.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return int(args._run(args))


if __name__ == "__main__":
    sys.exit(main())
