"""keras_fer.export."""
