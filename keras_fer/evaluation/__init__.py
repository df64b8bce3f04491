"""keras_fer.evaluation."""
