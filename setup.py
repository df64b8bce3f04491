"""keras-fer: identity-aware facial expression recognition (Keras 3, TF Serving, LiteRT)."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
_TEST_ONLY = ("pytest", "scikit-image", "dlib-bin")


def _read(name):
    return [
        line.split("#")[0].strip()
        for line in (here / name).read_text().splitlines()
        if line.split("#")[0].strip() and not line.startswith(_TEST_ONLY)
    ]


# `pip install keras-fer` is inference with .tflite models (no TensorFlow, Keras or JAX);
# `keras-fer[all]` adds training, SavedModel export and serving, QAT and the pipeline.
inference = _read("requirements-infer.txt")
requirements = _read("requirements.txt")

setup(
    name="keras-fer",
    version="0.1.0",
    description="Identity-aware facial expression recognition: IDEnNet, TFE-JL, IDFERM, IF-GAN",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["keras_fer", "keras_fer.*", "trainers", "trainers.*"]),
    package_data={
        "keras_fer": ["assets/*.tflite", "assets/*.md", "assets/*.jpg"],
        "trainers": ["flagfiles/*.flags"],
    },
    install_requires=inference,
    extras_require={"all": [r for r in requirements if r not in inference]},
    entry_points={"console_scripts": ["keras-fer=keras_fer.cli:main"]},
    license="Apache-2.0",
)
