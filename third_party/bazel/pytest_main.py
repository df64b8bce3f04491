"""Runs one pytest file as a Bazel ``py_test``: ``pytest_main.py tests/test_x.py``.

Bazel's runfiles tree is read-only, so pytest's cache is off; the JUnit XML goes where
Bazel asks (``$XML_OUTPUT_FILE``) so test results show per test case.
"""

import os
import sys

import pytest

if __name__ == "__main__":
    args = ["-p", "no:cacheprovider", "-q", *sys.argv[1:]]
    if os.environ.get("XML_OUTPUT_FILE"):
        args.append(f"--junitxml={os.environ['XML_OUTPUT_FILE']}")
    sys.exit(pytest.main(args))
