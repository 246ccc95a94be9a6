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
    # A range, so that an installed TensorFlow of it (Colab's) is kept rather than replaced: TFP 0.25
    # needs TensorFlow 2.18 or newer and its layers need Keras 2 (tf-keras); 2.21 is the newest
    # tested (.ci/run checks both ends). Each tf-keras release requires its own TensorFlow minor
    # version (tf-keras 2.19.* needs tensorflow>=2.19,<2.20), so pip can only pick matching pairs.
    # TFDS needs importlib_resources but does not declare it, and any tensorflow-metadata:
    # 1.21's generated protos need protobuf 6.31.1 or newer at run time, which it does not declare
    # either, and TensorFlow 2.18 and 2.19 need protobuf < 6 (`import tensorflow_datasets` then
    # fails); 1.17.3 runs on protobuf 4.25 to 7, under every TensorFlow of the range.
    install_requires=[
        "tensorflow>=2.18,<2.22",
        "tf-keras>=2.18,<2.22",
        "tensorflow-probability==0.25.*",
        "tensorflow-datasets==4.9.*",
        "tensorflow-metadata<1.21",
        "importlib_resources",
        "scikit-learn",
        "matplotlib",
        "numpy",
    ],
    extras_require={
        # The gRPC client and its PredictRequest protos; REST and warm-up need neither. The tests
        # also write TensorBoard logs through a Keras 3 TensorBoard callback (tensorboard), and
        # run in two processes (pytest-xdist, pytest.ini).
        "serving": ["tensorflow-serving-api>=2.18,<2.22", "grpcio>=1.24.3,<2"],
        # Export to and run the other formats (tfvae.formats, tfvae.runtimes): LiteRT's converter
        # ships with TensorFlow, its interpreter does not; ONNX needs the converter and the runtime.
        "litert": ["ai-edge-litert>=2"],
        "onnx": ["onnxruntime>=1.20", "tf2onnx>=1.17"],
        "test": ["pytest", "pytest-xdist", "hypothesis>=6.100", "nbclient", "ipykernel",
                 "tensorboard", "tensorflow-serving-api>=2.18,<2.22", "grpcio>=1.24.3,<2",
                 "ai-edge-litert>=2", "onnxruntime>=1.20", "tf2onnx>=1.17"],
    },
    entry_points={"console_scripts": ["tfvae=tfvae.cli:main"]},
)
