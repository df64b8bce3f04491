"""keras-fer: identity-aware facial expression recognition (Keras 3, TF Serving, LiteRT)."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
requirements = [
    line.split("#")[0].strip()
    for line in (here / "requirements.txt").read_text().splitlines()
    if line.split("#")[0].strip() and not line.startswith(("pytest", "scikit-image", "dlib-bin"))
]

setup(
    name="keras-fer",
    version="0.1.0",
    description="Identity-aware facial expression recognition: IDEnNet, TFE-JL, IDFERM, IF-GAN",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["keras_fer", "keras_fer.*", "trainers", "trainers.*"]),
    package_data={"keras_fer": ["assets/*.tflite", "assets/*.md"], "trainers": ["flagfiles/*.flags"]},
    install_requires=requirements,
    entry_points={"console_scripts": ["keras-fer=keras_fer.cli:main"]},
    license="Apache-2.0",
)
