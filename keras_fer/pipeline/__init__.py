"""TFX-style pipeline without ``tfx``: ExampleGen -> Transform -> Trainer -> Evaluator -> Pusher.

``python -m keras_fer.pipeline --flagfile=...`` runs it (see ``__main__``);
:func:`keras_fer.pipeline.pipeline.run_pipeline` is the Python entry point, and
:mod:`keras_fer.pipeline.runner` the local DAG runner (caching, atomic artifacts, lineage).
"""
