"""keras_fer.data."""
