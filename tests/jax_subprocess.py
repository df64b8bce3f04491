"""The JAX side of the tests that check a step on both backends: the suite runs on TensorFlow,
so JAX runs in a subprocess, on the CPU, with XLA's expensive CPU optimisation passes off
(they dominate a one- or two-step run; no check depends on them)."""

import json
import os
import subprocess
import sys
from pathlib import Path

FAST_XLA = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
TESTS_DIR = str(Path(__file__).resolve().parent)


def jax_env(**extra: str) -> dict:
    """This process's environment with Keras on JAX on the CPU and fast XLA, plus ``extra``."""
    return dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", XLA_FLAGS=FAST_XLA,
                **extra)


def jax_report(module: str, function: str, *args: str, timeout: int = 600) -> dict:
    """``tests/<module>.py``'s ``function(*args)`` run on JAX in a subprocess; returns its
    JSON-serialisable result (the test fails with the subprocess's stderr if it fails)."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); "
            f"import {module} as t; "
            f"print('REPORT ' + json.dumps(t.{function}(*sys.argv[2:])))")
    proc = subprocess.run([sys.executable, "-c", code, TESTS_DIR, *map(str, args)],
                          env=jax_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("REPORT "))
    return json.loads(line[len("REPORT "):])
