r"""Describe a dataset as JSON: images, per-class counts, subjects and skipped inputs.

Usage::

    python -m keras_fer.data describe --format=ckplus48 --path=../shared/data/ckplus48/CK+48
    python -m keras_fer.data describe --format=folder --path=faces --subject_regex='^([a-z]+)_' \
        --preview=preview.png
    python -m keras_fer.data describe --format=ferplus --path=data/ferplus/data --limit=100

``--format`` is a key of ``keras_fer.data.readers.READERS``; ``--path`` is the dataset's own
folder or file (the trainers' ``--data_dir`` is the folder above: given that instead, the
error names the folder to pass). The JSON goes to stdout; the reader's warnings (one per
skipped input) go to stderr; a dataset error is one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import inspect
import json
import sys
from typing import List, Sequence

from absl import app, flags, logging

from keras_fer.data.describe import describe
from keras_fer.data.readers import READERS, DatasetError, load

_FORMAT = flags.DEFINE_enum("format", None, sorted(READERS), "Dataset reader to use.")
_PATH = flags.DEFINE_string("path", None, "Dataset folder (or CSV file for the CSV readers).")
_PREVIEW = flags.DEFINE_string("preview", None, "Optional PNG of sample faces per class.")
_SUBJECT_REGEX = flags.DEFINE_string(
    "subject_regex", None, "For --format=folder: regex whose group 'subject' (or 1) is the id."
)
_LIMIT = flags.DEFINE_integer(
    "limit", None, "For the FER+ readers: read only the first N rows of each split."
)
_SHOW_SKIPPED = flags.DEFINE_integer("show_skipped", 5, "How many skipped inputs to list.")

COMMANDS = ("describe",)


def _reader_kwargs(fmt: str) -> dict:
    options = {"subject_regex": _SUBJECT_REGEX.value, "limit": _LIMIT.value}
    accepted = inspect.signature(READERS[fmt]).parameters
    kwargs = {}
    for key, value in options.items():
        if value is None:
            continue
        if key not in accepted:
            raise app.UsageError(f"--{key} is not an option of --format={fmt}.")
        kwargs[key] = value
    return kwargs


def _check_path(fmt: str, path: str) -> None:
    """Refuses the trainers' data root, naming the dataset folder ``--format`` reads."""
    from keras_fer.data import registry

    own = registry.folder_under_root(fmt, path)
    if own is not None:
        raise DatasetError(f"--path={path} is the data root (what the trainers' --data_dir "
                           f"takes); describe reads the dataset itself: --path={own}")


def main(argv: Sequence[str]) -> int:
    commands: List[str] = list(argv[1:])
    if commands != ["describe"]:
        raise app.UsageError(f"Expected one command from {COMMANDS}. Received: {commands}")
    _check_path(_FORMAT.value, _PATH.value)
    table = load(_FORMAT.value, _PATH.value, **_reader_kwargs(_FORMAT.value))
    if _PREVIEW.value:
        from keras_fer.data.preview import save_preview

        save_preview(table, _PREVIEW.value)
        logging.info("Wrote preview %s", _PREVIEW.value)
    print(json.dumps(describe(table, _SHOW_SKIPPED.value), indent=2))
    return 0


def run() -> None:
    """Entry point: a DatasetError becomes one clear message and exit status 2."""
    flags.mark_flags_as_required(["format", "path"])

    def guarded(argv: Sequence[str]) -> int:
        try:
            return main(argv)
        except DatasetError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

    app.run(guarded)


if __name__ == "__main__":
    run()
