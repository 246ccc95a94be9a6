"""tfvae: a Keras/TensorFlow model zoo of autoencoders, trained with model.fit and served as SavedModels."""
import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(r'__version__ = "([^"]+)"', (Path(__file__).parent / "tfvae" / "__init__.py").read_text()).group(1)

setup(
    name="tfvae",
    version=VERSION,
    description="Autoencoders and VAEs in Keras/TensorFlow Probability, exported for TensorFlow Serving.",
    long_description=(Path(__file__).parent / "README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tfvae", "tfvae.*"]),
    python_requires=">=3.11",
    # The stack is pinned to the versions that work together: TFP 0.25 layers need Keras 2 (tf-keras)
    # of the same minor version as TensorFlow; TFDS needs importlib_resources but does not declare it.
    install_requires=[
        "tensorflow==2.21.*",
        "tf-keras==2.21.*",
        "tensorflow-probability==0.25.*",
        "tensorflow-datasets==4.9.*",
        "importlib_resources",
        "scikit-learn",
        "matplotlib",
        "numpy",
    ],
    extras_require={
        # The gRPC client and its PredictRequest protos; REST and warm-up need neither. The tests
        # also write TensorBoard logs through a Keras 3 TensorBoard callback (tensorboard), and
        # run in two processes (pytest-xdist, pytest.ini).
        "serving": ["tensorflow-serving-api==2.21.*", "grpcio>=1.24.3,<2"],
        "test": ["pytest", "pytest-xdist", "hypothesis>=6.100", "nbclient", "ipykernel",
                 "tensorboard", "tensorflow-serving-api==2.21.*", "grpcio>=1.24.3,<2"],
    },
    entry_points={"console_scripts": ["tfvae=tfvae.cli:main"]},
)
