"""keras_fer.pipeline."""
