"""keras_fer.inference."""
