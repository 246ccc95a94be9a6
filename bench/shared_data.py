"""Where the benchmarks find real MNIST: the shared data folder beside the repository
(../shared/data; MNIST in TFDS format under tensorflow_datasets/), which this project's machines
and CI hold. TFDS cannot download there."""
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TFDS_DIR = SHARED_DATA / "tensorflow_datasets"
