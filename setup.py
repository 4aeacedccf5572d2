"""Packaging for the multi-task ranking pipeline (console script: ``pipeline``)."""
import re

from setuptools import find_packages, setup

VERSION = re.search(r'__version__ = "([^"]+)"', open("pipeline/__init__.py", encoding="utf-8").read()).group(1)

# Versions verified together on Python 3.11 / Java 17 (see README, "Dependencies").
INSTALL_REQUIRES = [
    "pyspark==4.0.1",
    "delta-spark==4.0.1",
    "pyarrow==14.0.2",
    "numpy>=1.26,<2",
    "pandas>=2.2,<3",
    "petastorm==0.12.1",
    "torch==2.13.0",
    "horovod==0.28.1",
    "pyyaml>=6",
    "tqdm>=4.66",
    "matplotlib>=3.8,<3.11",
    # Tracking and the model registry (pipeline/tracking.py). 3.17.2 installs beside the pins above
    # without moving them (it downgrades python-dateutil to 2.9 and importlib_metadata to 9.1).
    "mlflow==3.17.2",
]

setup(
    name="mtrank",
    version=VERSION,
    description="Spark + Delta + Petastorm + Horovod pipeline for multi-task ranking models (ESMM, MMoE, PLE, ...)",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["pipeline", "pipeline.*"]),
    package_data={"pipeline": ["log4j2.properties"]},
    install_requires=INSTALL_REQUIRES,
    # nbclient, nbformat, ipykernel: tests/notebooks executes notebooks/*.ipynb in a kernel on .venv's python.
    extras_require={"dev": ["pytest>=8", "pytest-timeout>=2.3", "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29"]},
    entry_points={"console_scripts": ["pipeline=pipeline.cli:main"]},
)
