"""Shared fixtures.

Real-data tests read ``$FER_DATA_DIR`` (default ``../shared/data``). When the data is
missing they skip with the reason, unless ``FER_REQUIRE_DATA=1`` (set by ``.ci/run``),
where a missing dataset is a hard failure: CI must never go green by skipping.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from keras_fer.data.paths import data_dir  # noqa: E402


def _need(*parts):
    path = data_dir().joinpath(*parts)
    if not path.exists():
        msg = (
            f"real data not found at {path}: set FER_DATA_DIR to the folder holding "
            "ckplus48/, ckplus_neutral/, ferplus/ and orl_faces/ (see docs/data.md)."
        )
        if os.environ.get("FER_REQUIRE_DATA") == "1":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def ckplus48_dir():
    return _need("ckplus48", "CK+48")


@pytest.fixture(scope="session")
def ckplus_neutral_dir():
    return _need("ckplus_neutral", "CK+")


@pytest.fixture(scope="session")
def ferplus_dir():
    return _need("ferplus", "data")


@pytest.fixture(scope="session")
def fer2013_recovered_csv():
    return _need("ferplus", "fer2013_original_labels_recovered.csv")


@pytest.fixture(scope="session")
def orl_dir():
    return _need("orl_faces")
