"""The ``.tflite`` inference path imports neither TensorFlow, Keras, JAX nor MediaPipe (issue 21)."""

import subprocess
import sys

from PIL import Image
from skimage import data as skdata

HEAVY = ("tensorflow", "keras", "jax", "tf_keras", "mediapipe", "matplotlib")

SCRIPT = """
import contextlib, io, sys
from keras_fer import cli
import keras_fer
with contextlib.redirect_stdout(io.StringIO()) as out:
    status = cli.main(["predict", sys.argv[1], "--quiet"])
assert status == 0, status
assert '"happiness"' in out.getvalue()
with keras_fer.Predictor(num_threads=1) as predictor:
    [face] = predictor.predict_image(sys.argv[1])
print(face["class"], sorted(m for m in {heavy!r} if m in sys.modules))
"""


def test_tflite_predict_imports_no_tensorflow(tmp_path):
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skdata.astronaut()).save(photo)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(heavy=HEAVY), str(photo)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "happiness []"
