"""keras_fer.losses."""
