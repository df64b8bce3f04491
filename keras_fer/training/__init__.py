"""keras_fer.training."""
