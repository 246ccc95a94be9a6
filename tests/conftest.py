import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """../shared/data (real MNIST); tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared data folder ../shared/data (not found at {SHARED_DATA})")
    return SHARED_DATA


@pytest.fixture(scope="session")
def digits():
    """A small batch of real images (scikit-learn's 8x8 digits in [0, 1]), shape [64, 8, 8, 1]."""
    from sklearn.datasets import load_digits

    return (load_digits().images[:64, :, :, None] / 16.0).astype(np.float32)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
