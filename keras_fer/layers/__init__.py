"""keras_fer.layers."""
