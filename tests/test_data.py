"""Tests for tfvae.data (digits run everywhere; MNIST tests need ../shared/data)."""
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfvae import data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TFDS_DIR = SHARED / "tensorflow_datasets"
BIN_NPZ = SHARED / "binarized_mnist.npz"
needs_mnist = pytest.mark.skipif(
    not (TFDS_DIR / "mnist").is_dir(), reason=f"shared MNIST data not found at {TFDS_DIR}")
needs_binarized = pytest.mark.skipif(
    not BIN_NPZ.is_file(), reason=f"shared binarized MNIST not found at {BIN_NPZ}")


def as_array(ds):
    """All elements of an image dataset as one array (batched or not)."""
    parts = [np.asarray(b) for b in ds]
    batched = ds.element_spec.shape[0] is None
    return np.concatenate(parts) if batched else np.stack(parts)


# --- digits -------------------------------------------------------------------

def test_digits_shapes_dtype_range():
    ds = data.load("digits", batch_size=64)
    assert ds.element_spec.shape.as_list() == [None, 8, 8, 1]
    x = next(iter(ds))
    assert x.shape == (64, 8, 8, 1) and x.dtype == tf.float32
    everything = as_array(ds)
    assert everything.min() == 0.0 and everything.max() == 1.0
    assert data.input_shape("digits") == (8, 8, 1)
    assert "digits" in data.names() and "binarized_mnist" in data.names()


def test_digits_split_sizes_disjoint_and_deterministic():
    train = as_array(data.load("digits", "train", batch_size=None, shuffle=False))
    test = as_array(data.load("digits", "test", batch_size=None, shuffle=False))
    assert len(train) == 1500 and len(test) == 297
    again = as_array(data.load("digits", "train", batch_size=None, shuffle=False))
    np.testing.assert_array_equal(train, again)
    # Disjoint partition: train + test is exactly the full set, as a multiset of rows
    # (load_digits contains a few duplicate images, so sets of images would mislead).
    from sklearn.datasets import load_digits
    full = (load_digits().images / 16.0).astype(np.float32).reshape(1797, -1)
    both = np.concatenate([train, test]).reshape(1797, -1)
    assert sorted(map(bytes, both)) == sorted(map(bytes, full))


def test_digits_with_labels_and_take():
    ds = data.load("digits", "test", batch_size=10, with_labels=True, take=25)
    batches = list(ds)
    assert [len(x) for x, _ in batches] == [10, 10, 5]
    x, y = batches[0]
    assert x.shape == (10, 8, 8, 1) and y.dtype == tf.int64
    assert set(np.concatenate([b[1] for b in batches])) <= set(range(10))


def test_shuffle_default_and_seed():
    first = lambda ds: np.asarray(next(iter(ds)))  # noqa: E731
    test_ds = data.load("digits", "test", batch_size=8)
    np.testing.assert_array_equal(first(test_ds), first(test_ds))  # no shuffle
    train = data.load("digits", batch_size=8, seed=1)
    a, b = first(train), first(train)
    assert not np.array_equal(a, b)  # reshuffled each iteration
    np.testing.assert_array_equal(a, first(data.load("digits", batch_size=8, seed=1)))


# --- binarization -------------------------------------------------------------

def test_dynamic_binarization_is_fresh_each_iteration():
    ds = data.load("digits", "test", batch_size=None, binarize="dynamic", take=50)
    a, b = as_array(ds), as_array(ds)
    assert set(np.unique(a)) <= {0.0, 1.0}
    assert not np.array_equal(a, b)


def test_dynamic_binarization_mean_matches_grey_level():
    grey = as_array(data.load("digits", "test", batch_size=20, take=20))
    ds = data.load("digits", "test", batch_size=20, binarize="dynamic", take=20)
    draws = np.stack(list(ds.repeat(2000).as_numpy_iterator()))  # repeat() also rerolls
    assert len({d.tobytes() for d in draws}) == 2000
    error = np.abs(draws.mean(axis=0) - grey)
    # 2000 draws: per-pixel standard error <= 0.5 / sqrt(2000) = 0.011.
    assert error.max() < 0.06 and error.mean() < 0.008


def test_static_binarization_is_fixed():
    kwargs = dict(split="test", batch_size=None, binarize="static", take=50, seed=3)
    ds = data.load("digits", **kwargs)
    a = as_array(ds)
    assert set(np.unique(a)) == {0.0, 1.0}
    np.testing.assert_array_equal(a, as_array(ds))
    np.testing.assert_array_equal(a, as_array(data.load("digits", **kwargs)))
    # Shuffling reorders examples but does not change their bits.
    shuffled = as_array(data.load("digits", **kwargs, shuffle=True))
    assert sorted(map(bytes, a)) == sorted(map(bytes, shuffled))
    other_seed = as_array(data.load("digits", **{**kwargs, "seed": 4}))
    assert not np.array_equal(a, other_seed)


# --- bad input ----------------------------------------------------------------

def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError) as err:
        data.load("no_such_dataset")
    for name in ("digits", "binarized_mnist", "mnist", "cifar10", "TFDS"):
        assert name in str(err.value)


@pytest.mark.parametrize("kwargs, words", [
    (dict(binarize="yes"), ["dynamic", "static"]),
    (dict(split="validation"), ["train", "test"]),
    (dict(batch_size=0), ["batch_size"]),
])
def test_bad_arguments(kwargs, words):
    with pytest.raises(ValueError) as err:
        data.load("digits", **kwargs)
    for word in words:
        assert word in str(err.value)


def test_binarized_mnist_rejects_labels_and_dynamic():
    with pytest.raises(ValueError, match="no labels"):
        data.load("binarized_mnist", with_labels=True)
    with pytest.raises(ValueError, match="already binarized"):
        data.load("binarized_mnist", binarize="dynamic")


def test_missing_tfds_dataset_raises_data_not_found(tmp_path):
    with pytest.raises(data.DataNotFoundError) as err:
        data.load("fashion_mnist", data_dir=tmp_path, download=False)
    assert isinstance(err.value, FileNotFoundError)
    message = str(err.value)
    for word in ("fashion_mnist", str(tmp_path), "data_dir", "TFDS_DATA_DIR"):
        assert word in message


# --- real MNIST from ../shared/data -------------------------------------------

@needs_mnist
def test_mnist_from_shared_tfds():
    ds = data.load("mnist", "test", batch_size=32, data_dir=TFDS_DIR, with_labels=True,
                   take=100)
    x, y = next(iter(ds))
    assert x.shape == (32, 28, 28, 1) and x.dtype == tf.float32 and y.dtype == tf.int64
    assert float(tf.reduce_min(x)) == 0.0 and float(tf.reduce_max(x)) == 1.0
    assert data.input_shape("mnist") == (28, 28, 1)
    for split, n in [("train", 60000), ("test", 10000)]:
        unbatched = data.load("mnist", split, batch_size=None, data_dir=TFDS_DIR)
        assert int(unbatched.cardinality()) == n
    assert int(data.load("mnist", "train[:1%]", batch_size=None, data_dir=TFDS_DIR,
                         shuffle=False).cardinality()) == 600


@needs_mnist
def test_mnist_honours_tfds_data_dir_env(monkeypatch):
    # TFDS itself reads TFDS_DATA_DIR only once, at import; load() reads it per call.
    monkeypatch.setenv("TFDS_DATA_DIR", str(TFDS_DIR))
    x = next(iter(data.load("mnist", "test", batch_size=4, binarize="static", take=8,
                            download=False)))
    assert x.shape == (4, 28, 28, 1) and set(np.unique(x)) == {0.0, 1.0}


@needs_binarized
def test_binarized_mnist_from_shared_npz(monkeypatch):
    sizes = {"train": 50000, "validation": 10000, "valid": 10000, "test": 10000}
    for split, n in sizes.items():
        ds = data.load("binarized_mnist", split, batch_size=None, data_dir=BIN_NPZ)
        assert int(ds.cardinality()) == n
    x = as_array(data.load("binarized_mnist", "test", batch_size=500, data_dir=SHARED))
    assert x.shape == (10000, 28, 28, 1) and x.dtype == np.float32
    assert set(np.unique(x)) == {0.0, 1.0}
    assert 0.05 < x.mean() < 0.25  # MNIST-like ink density
    monkeypatch.setenv("TFVAE_BINARIZED_MNIST", str(BIN_NPZ))
    from_env = as_array(data.load("binarized_mnist", "test", batch_size=500))
    np.testing.assert_array_equal(x, from_env)
