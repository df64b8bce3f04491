"""keras_fer.models."""
