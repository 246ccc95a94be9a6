"""Tests for tfvae.data (digits run everywhere; MNIST tests need ../shared/data)."""
import os
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


def test_pipelines_run_with_fixed_sizes_and_no_autotuning():
    """Releasing an autotuned iterator waits for tf.data's tuning thread, for up to seconds,
    and model.fit releases one every epoch (bench/epoch_boundary.py): every pipeline runs with
    autotuning off, and still yields every example once a pass."""
    x = np.random.default_rng(0).random((50, 4, 4, 1)).astype(np.float32)
    for ds in (data.load("digits", batch_size=32, binarize="dynamic"),
               data.load("digits", "test", batch_size=None),
               data.from_arrays(x, batch_size=8, binarize="static", shuffle=False)):
        assert ds.options().autotune.enabled is False
    seen = as_array(data.from_arrays(x, batch_size=8, seed=4))
    assert sorted(map(bytes, seen)) == sorted(map(bytes, x))


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


@pytest.mark.parametrize("dtype, scale, levels", [
    (np.uint8, 255, [0, 1, 128, 254, 255]),  # 8-bit images (MNIST, folders of images)
    (np.uint8, 16, [0, 1, 8, 15, 16]),  # the digits
    (np.float32, 1, [0, 1 / 1024, 0.3, 1 - 1 / 1024, 1]),  # from_arrays
    (np.uint16, 65535, [0, 1, 40_000, 65535]),  # 16-bit TFDS images
])
def test_dynamic_bits_are_bernoulli_of_the_grey_level_without_bias(dtype, scale, levels):
    # The pipeline draws a byte a pixel and settles the one byte in 256 that ties with the grey
    # level by a further uniform. Two million pixels a level put each count within 5 standard
    # errors of n p; the usual slips put some level 5-40 standard errors off (settling ties by
    # a fair coin or always one way, comparing with p instead of the tie's fraction, rounding
    # p to 8 bits), and p = 0 and p = 1 must come out exactly.
    n = 2_000_001  # not a multiple of 4: the bytes come four to a random word
    images = np.repeat(np.array(levels, dtype)[:, None], n, axis=1)
    bits = data.bernoulli_bits(tf.constant(images), scale, tf.constant([3, 7], tf.int64)).numpy()
    assert bits.dtype == np.float32 and bits.shape == images.shape
    assert set(np.unique(bits)) == {0.0, 1.0}
    p = np.array(levels, np.float64) / scale
    ones = bits.sum(axis=1, dtype=np.float64)
    np.testing.assert_array_equal(ones[p == 0], 0)
    np.testing.assert_array_equal(ones[p == 1], n)
    inner = (p > 0) & (p < 1)
    z = (ones - n * p)[inner] / np.sqrt(n * p * (1 - p))[inner]
    assert np.abs(z).max() < 5, z
    empty = data.bernoulli_bits(tf.zeros([0, 3], dtype), scale, tf.constant([3, 7], tf.int64))
    assert empty.shape == (0, 3)


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


def _offline_download_fails_fast(data_dir):
    """data.load("mnist", download=True) into an empty folder, offline: DataNotFoundError with
    today's message plus the unreachable host, in seconds (TFDS alone retries ~3.5 minutes)."""
    import time

    start = time.perf_counter()
    with pytest.raises(data.DataNotFoundError) as err:
        data.load("mnist", "test", data_dir=data_dir, download=True)
    elapsed = time.perf_counter() - start
    assert elapsed < 30, f"offline failure took {elapsed:.0f} s"
    message = str(err.value)
    for words in ("TFDS dataset 'mnist' not found in", "Provide it with data_dir=",
                  "download skipped, the network is unreachable",
                  "cannot reach storage.googleapis.com:443"):
        assert words in message, message
    assert not any(data_dir.iterdir()), "nothing is written into the data folder"


def test_offline_download_fails_fast_for_real(tmp_path):
    """On a machine without internet (this project's CI), for real."""
    import socket
    import urllib.request

    if urllib.request.getproxies():
        pytest.skip("a proxy is configured: the download may go through it")
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=5).close()
    except OSError:
        return _offline_download_fails_fast(tmp_path)
    pytest.skip("storage.googleapis.com is reachable: the download would run")


def test_offline_download_fails_fast_without_dns(tmp_path, monkeypatch):
    """Anywhere: no name resolves, as on a machine without a network."""
    import socket

    def no_network(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    _offline_download_fails_fast(tmp_path)


# --- real MNIST from ../shared/data -------------------------------------------

@needs_mnist
def test_mnist_from_shared_tfds():
    ds = data.load("mnist", "test", batch_size=32, data_dir=TFDS_DIR, with_labels=True,
                   take=100)
    x, y = next(iter(ds))
    assert x.shape == (32, 28, 28, 1) and x.dtype == tf.float32 and y.dtype == tf.int64
    assert float(tf.reduce_min(x)) == 0.0 and float(tf.reduce_max(x)) == 1.0
    assert data.input_shape("mnist") == (28, 28, 1)
    # Each load reads its split into memory: 1% of train (600 = 1% of 60,000) and not the
    # whole train split keeps this quick; test_mnist_is_decoded_once counts the test split.
    assert int(data.load("mnist", "train[:1%]", batch_size=None, data_dir=TFDS_DIR,
                         shuffle=False).cardinality()) == 600
    # A slice of the training split shuffles by default, as "train" does; the test split not.
    first = lambda ds: np.asarray(next(iter(ds)))  # noqa: E731
    sliced = data.load("mnist", "train[:1%]", batch_size=64, data_dir=TFDS_DIR, seed=2)
    assert not np.array_equal(first(sliced), first(sliced))   # a fresh order every pass
    assert [data.is_training_split(s) for s in ("train", "train[:90%]", " train[10%:] ",
                                                "train[:5%]+train[50%:]", "test", "test[:1%]",
                                                "train+test", "validation")] == [
        True, True, True, True, False, False, False, False]


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


@pytest.mark.usefixtures("shared_data")
@needs_mnist
def test_mnist_is_decoded_once_into_memory():
    ds = data.load("mnist", "test", batch_size=1000, data_dir=TFDS_DIR, shuffle=False)
    assert int(ds.cardinality()) == 10  # batches of 1000: the whole test split
    # After construction the pipeline reads no file and decodes no PNG: its whole graph (with
    # every function the maps run) is a range of indices, a gather from an in-memory tensor
    # and arithmetic. Before, it was a TFRecord reader with a PNG decoder per example.
    graph = tf.compat.v1.GraphDef.FromString(ds._as_serialized_graph().numpy())
    ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
    assert "RangeDataset" in ops and ("GatherV2" in ops or "ResourceGather" in ops)
    assert not [op for op in ops if "Decode" in op or "Record" in op or "Parse" in op
                or "ReadFile" in op], sorted(ops)
    # Two passes give the same grey images, and they are TFDS's own pixels / 255.
    first, second = as_array(ds), as_array(ds)
    np.testing.assert_array_equal(first, second)
    import tensorflow_datasets as tfds
    builder = tfds.builder("mnist", data_dir=str(TFDS_DIR))
    direct = np.stack([d["image"] for d in tfds.as_numpy(
        builder.as_dataset("test", shuffle_files=False).take(200))])
    np.testing.assert_array_equal(first[:200], direct.astype(np.float32) / 255.0)
    assert first.dtype == np.float32 and 0.0 < np.mean(first == 0) < 1.0


# --- from_arrays --------------------------------------------------------------

def digits_test_images():
    """The digits test split exactly as load() sees it (float32 in [0, 1]), with labels."""
    ds = data.load("digits", "test", batch_size=None, shuffle=False, with_labels=True)
    images, labels = zip(*ds.as_numpy_iterator())
    return np.stack(images), np.array(labels)


def test_from_arrays_shapes_dtype_and_values():
    x = np.random.default_rng(0).random((50, 6, 5, 2))  # float64 in [0, 1)
    ds = data.from_arrays(x, batch_size=16, shuffle=False)
    assert ds.element_spec.shape.as_list() == [None, 6, 5, 2]
    assert ds.element_spec.dtype == tf.float32
    assert [len(b) for b in ds] == [16, 16, 16, 2]
    np.testing.assert_array_equal(as_array(ds), x.astype(np.float32))
    flat = data.from_arrays(x.reshape(50, -1), batch_size=None, shuffle=False)
    assert flat.element_spec.shape.as_list() == [60] and int(flat.cardinality()) == 50
    tensor = data.from_arrays(tf.constant(x[:4], tf.float32), batch_size=4, shuffle=False)
    np.testing.assert_array_equal(as_array(tensor), x[:4].astype(np.float32))
    bools = as_array(data.from_arrays(x[:8] > 0.5, batch_size=8, shuffle=False))
    assert bools.dtype == np.float32 and set(np.unique(bools)) == {0.0, 1.0}
    # No binarization: values outside [0, 1] (standardized data, say) are the caller's choice.
    centred = as_array(data.from_arrays(x - 0.5, batch_size=50, shuffle=False))
    assert centred.min() < 0


def test_from_arrays_is_the_same_pipeline_as_load():
    # The digits test split fed through from_arrays gives load()'s batches bit for bit, with
    # every combination of shuffling and binarization: one pipeline, written once.
    images, labels = digits_test_images()
    for binarize in (None, "dynamic", "static"):
        for shuffle in (False, True):
            kwargs = dict(batch_size=32, binarize=binarize, shuffle=shuffle, seed=5)
            loaded = data.load("digits", "test", with_labels=True, **kwargs)
            given = data.from_arrays(images, labels=labels, **kwargs)
            for (xa, ya), (xb, yb) in zip(loaded, given):
                np.testing.assert_array_equal(xa, xb)
                np.testing.assert_array_equal(ya, yb)


def test_from_arrays_shuffle_is_seeded_and_fresh_each_pass():
    x = np.random.default_rng(1).random((64, 4, 4, 1)).astype(np.float32)
    first = lambda ds: np.asarray(next(iter(ds)))  # noqa: E731
    ds = data.from_arrays(x, batch_size=8, seed=2)
    a, b = first(ds), first(ds)
    assert not np.array_equal(a, b)  # reshuffled each pass
    np.testing.assert_array_equal(a, first(data.from_arrays(x, batch_size=8, seed=2)))
    assert not np.array_equal(a, first(data.from_arrays(x, batch_size=8, seed=3)))
    np.testing.assert_array_equal(first(data.from_arrays(x, batch_size=8, shuffle=False)), x[:8])


def test_from_arrays_binarization_dynamic_fresh_static_fixed():
    x = np.random.default_rng(2).random((40, 5, 5, 1)).astype(np.float32)
    dynamic = data.from_arrays(x, batch_size=10, binarize="dynamic", shuffle=False, seed=1)
    a, b = as_array(dynamic), as_array(dynamic)
    assert set(np.unique(a)) == {0.0, 1.0} and not np.array_equal(a, b)
    again = data.from_arrays(x, batch_size=10, binarize="dynamic", shuffle=False, seed=1)
    np.testing.assert_array_equal(a, as_array(again))  # reproducible for a seed
    static = data.from_arrays(x, batch_size=10, binarize="static", seed=1)
    c, d = as_array(static), as_array(static)
    assert set(np.unique(c)) == {0.0, 1.0}
    assert not np.array_equal(c, d)  # shuffled differently...
    assert sorted(map(bytes, c)) == sorted(map(bytes, d))  # ...but the same fixed bits
    unshuffled = as_array(data.from_arrays(x, batch_size=7, binarize="static", shuffle=False,
                                           seed=1))
    assert sorted(map(bytes, unshuffled)) == sorted(map(bytes, c))  # batching does not matter
    # Example i's bits are Bernoulli(x_i): with x = 0 or 1 they are x itself.
    hard = (x > 0.5).astype(np.float32)
    np.testing.assert_array_equal(as_array(data.from_arrays(
        hard, batch_size=40, binarize="static", shuffle=False)), hard)


def test_from_arrays_labels_stay_with_their_images():
    n = 30
    x = np.broadcast_to((np.arange(n) / n)[:, None, None, None], (n, 3, 3, 1)).copy()
    ds = data.from_arrays(x, batch_size=7, labels=np.arange(n), seed=4)
    images, labels = [], []
    for xb, yb in ds:
        images.append(xb.numpy()), labels.append(yb.numpy())
    images, labels = np.concatenate(images), np.concatenate(labels)
    assert labels.dtype == np.int64 and sorted(labels) == list(range(n))
    assert not np.array_equal(labels, np.arange(n))  # shuffled...
    np.testing.assert_allclose(images[:, 0, 0, 0] * n, labels, atol=1e-4)  # ...together


def test_batches_cross_chunk_boundaries_as_batch_would_make_them(monkeypatch):
    # The pipeline gathers (and binarizes) several batches at once, then slices them apart.
    # With chunks of 3 batches of 7 over 50 examples (chunks of 21, 21, 8) the batches must be
    # batch()'s: 7 of 7 then 1, in order, labels with their images, fresh bits in every chunk.
    monkeypatch.setattr(data, "_CHUNK_BYTES", 3 * 7 * 4 * 9)
    n = 50
    x = np.broadcast_to((np.arange(n) / n)[:, None, None, None], (n, 3, 3, 1)).astype(np.float32)
    ordered = data.from_arrays(x, batch_size=7, shuffle=False)
    assert [len(b) for b in ordered] == [7] * 7 + [1] and int(ordered.cardinality()) == 8
    np.testing.assert_array_equal(as_array(ordered), x)
    shuffled = data.from_arrays(x, batch_size=7, labels=np.arange(n), seed=4)
    pairs = [(xb.numpy(), yb.numpy()) for xb, yb in shuffled]
    labels = np.concatenate([yb for _, yb in pairs])
    assert [len(yb) for _, yb in pairs] == [7] * 7 + [1] and sorted(labels) == list(range(n))
    np.testing.assert_allclose(np.concatenate([xb for xb, _ in pairs])[:, 0, 0, 0] * n, labels,
                               atol=1e-4)
    grey = np.full((n, 3, 3, 1), 0.5, np.float32)
    bits = as_array(data.from_arrays(grey, batch_size=7, binarize="dynamic", shuffle=False))
    chunks = bits[:21], bits[21:42]
    assert not np.array_equal(*chunks)  # each chunk draws its own bits
    assert 0.3 < bits.mean() < 0.7
    unbatched = data.from_arrays(x, batch_size=None, shuffle=False)
    assert int(unbatched.cardinality()) == n
    np.testing.assert_array_equal(np.stack(list(unbatched.as_numpy_iterator())), x)


GOOD = np.random.default_rng(3).random((6, 4, 4, 1)).astype(np.float32)


@pytest.mark.parametrize("x, kwargs, words", [
    ((GOOD * 255).astype(np.uint8), {}, ["uint8", "0..", "x / 255.0"]),
    ((GOOD > 0.5).astype(np.int64), {}, ["int64", "0..1", "astype"]),
    (GOOD.astype(str), {}, ["dtype", "<U"]),
    (GOOD.astype(np.complex64), {}, ["complex64", "numeric"]),
    (np.where(GOOD > 0.9, np.nan, GOOD), {}, ["NaN"]),
    (np.where(GOOD > 0.9, np.inf, GOOD), {}, ["inf"]),
    (np.float32(0.5), {}, ["single number"]),
    (GOOD[0, :, 0, 0], {}, ["shape [4]", "x[None]"]),
    (GOOD[..., 0], {}, ["[n, height, width]", "x[..., None]"]),
    (GOOD[None], {}, ["rank 5"]),
    (GOOD[:0], {}, ["no examples"]),
    (GOOD * 2 - 0.5, {"binarize": "dynamic"}, ["[-0.", "1.", "binarize='dynamic'", "[0, 1]"]),
    (GOOD + 1, {"binarize": "static"}, ["binarize='static'", "255"]),
    (tf.data.Dataset.from_tensor_slices(GOOD), {}, ["tf.data.Dataset"]),
    ([[0.1, 0.2], [0.3]], {}, ["numpy"]),
    (GOOD, {"labels": np.arange(5)}, ["labels", "6"]),
    (GOOD, {"labels": np.array(["a"] * 6)}, ["labels", "numeric"]),
    (GOOD, {"batch_size": 0}, ["batch_size"]),
    (GOOD, {"batch_size": 2.5}, ["batch_size"]),
    (GOOD, {"seed": -1}, ["seed"]),
    (GOOD, {"shuffle": "yes"}, ["shuffle"]),
    (GOOD, {"binarize": "always"}, ["binarize", "dynamic", "static"]),
])
def test_from_arrays_refuses_bad_input_saying_what_to_do(x, kwargs, words):
    with pytest.raises(ValueError) as err:  # validation.WrongTypeError is a ValueError too
        data.from_arrays(x, **kwargs)
    for word in words:
        assert word in str(err.value)


# --- from_directory -----------------------------------------------------------

def write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(np.asarray(image, np.uint8)).numpy())


@pytest.fixture
def folder(tmp_path):
    """Two classes of 8x8 PNGs whose constant grey level encodes (class, index): 'cats' 5 gray
    images, 'dogs' 3 RGB images (one in a nested folder); a non-image file besides."""
    root = tmp_path / "pets"
    for i in range(5):
        write_png(root / "cats" / f"{i}.png", np.full((8, 8, 1), 10 + 20 * i))
    for i in range(3):
        nested = "deep/" if i == 2 else ""
        write_png(root / "dogs" / f"{nested}{i}.png", np.full((8, 8, 3), 150 + 20 * i))
    (root / "cats" / "notes.txt").write_text("not an image")
    return root


def test_from_directory_grayscale_values_labels_and_order(folder):
    ds = data.from_directory(folder, 8, batch_size=None, shuffle=False, with_labels=True)
    assert ds.element_spec[0].shape.as_list() == [8, 8, 1] and ds.class_names == ["cats", "dogs"]
    images, labels = zip(*ds.as_numpy_iterator())
    images = np.stack(images)
    # Sorted file order (cats/0..4, dogs/0, dogs/1, dogs/deep/2), exact 8-bit values / 255.
    grey = [10, 30, 50, 70, 90, 150, 170, 190]
    np.testing.assert_array_equal(images[:, 0, 0, 0], np.float32(grey) / np.float32(255))
    assert np.all(images == images[:, :1, :1, :])  # constant images stay constant
    assert list(labels) == [0] * 5 + [1] * 3
    names = [os.path.relpath(p, folder).replace(os.sep, "/") for p in ds.file_paths]
    assert names[-2:] == ["dogs/1.png", "dogs/deep/2.png"] and len(names) == 8


def test_from_directory_rgb_resizes_and_converts(folder):
    ds = data.from_directory(folder, (4, 6), "rgb", batch_size=3, shuffle=False)
    assert ds.element_spec.shape.as_list() == [None, 4, 6, 3]
    x = as_array(ds)
    assert x.shape == (8, 4, 6, 3) and x.dtype == np.float32
    # Gray images become three equal channels; a constant image resized is still constant.
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
    np.testing.assert_allclose(x[:, 0, 0, 0], np.float32([10, 30, 50, 70, 90, 150, 170, 190])
                               / 255, atol=1 / 255)
    assert np.all(x == x[:, :1, :1, :])
    # A real picture shrinks by averaging: a checkerboard becomes mid-grey.
    board = np.indices((16, 16)).sum(0)[..., None] % 2 * 255
    write_png(folder.parent / "board" / "b.png", board)
    small = as_array(data.from_directory(folder.parent / "board", 4, batch_size=1))
    np.testing.assert_allclose(small, 0.5, atol=0.05)
    color = np.zeros((8, 8, 3), np.uint8)
    color[..., 0] = 255  # pure red
    write_png(folder.parent / "red" / "r.png", color)
    red_grey = as_array(data.from_directory(folder.parent / "red", 8, batch_size=1))
    np.testing.assert_allclose(red_grey, 0.299, atol=0.01)  # ITU-R 601 luma of red


def test_from_directory_reads_jpeg_bmp_gif_and_several_folders(tmp_path):
    image = np.full((6, 6, 3), 200, np.uint8)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.JPG").write_bytes(tf.io.encode_jpeg(image).numpy())
    write_png(tmp_path / "b" / "y.png", image[..., :1])
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(image).save(tmp_path / "b" / "z.bmp")
    Image.fromarray(image).save(tmp_path / "b" / "w.gif")
    ds = data.from_directory([tmp_path / "a", tmp_path / "b"], 6, batch_size=None,
                             shuffle=False)
    x = as_array(ds)
    assert x.shape == (4, 6, 6, 1)
    np.testing.assert_allclose(x, 200 / 255, atol=3 / 255)  # jpeg and gif are lossy


def test_from_directory_validation_split_is_disjoint_complete_and_seeded(folder):
    def subset(name, seed=0, **kwargs):
        return data.from_directory(folder, 8, validation_split=0.25, subset=name, seed=seed,
                                   **kwargs)
    training, validation = subset("training"), subset("validation")
    assert len(validation.file_paths) == 2 and len(training.file_paths) == 6
    assert set(training.file_paths).isdisjoint(validation.file_paths)
    everything = data.from_directory(folder, 8).file_paths
    assert sorted(training.file_paths + validation.file_paths) == sorted(everything)
    assert len(as_array(training)) == 6 and len(as_array(validation)) == 2
    assert subset("validation").file_paths == validation.file_paths  # deterministic
    held_out = {tuple(subset("validation", seed=s).file_paths) for s in range(6)}
    assert len(held_out) > 1  # the seed picks the held-out files
    first = lambda ds: np.asarray(next(iter(ds)))  # noqa: E731
    np.testing.assert_array_equal(first(subset("training", batch_size=4, seed=1)),
                                  first(subset("training", batch_size=4, seed=1)))


def test_from_directory_binarizes_like_the_others(folder):
    dyn = data.from_directory(folder, 8, batch_size=4, binarize="dynamic", shuffle=False)
    a, b = as_array(dyn), as_array(dyn)
    assert set(np.unique(a)) == {0.0, 1.0} and not np.array_equal(a, b)
    static = data.from_directory(folder, 8, batch_size=4, binarize="static", seed=2)
    assert sorted(map(bytes, as_array(static))) == sorted(map(bytes, as_array(static)))
    # The same images through from_arrays give the same bits: one pipeline.
    grey = as_array(data.from_directory(folder, 8, batch_size=8, shuffle=False))
    np.testing.assert_array_equal(
        as_array(data.from_directory(folder, 8, binarize="static", seed=2, shuffle=False)),
        as_array(data.from_arrays(grey, binarize="static", seed=2, shuffle=False)))


def test_from_directory_names_the_files_it_cannot_decode(folder):
    (folder / "dogs" / "broken.png").write_bytes(b"\x89PNG but not really")
    (folder / "cats" / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError) as err:
        data.from_directory(folder, 8)
    message = str(err.value)
    assert "could not decode 2 of 10 image files" in message
    assert "dogs/broken.png (" in message and "cats/empty.jpg (" in message
    assert str(folder) not in message  # named relative to the folder, readably


@pytest.mark.parametrize("make, kwargs, error, words", [
    (lambda root: None, {}, FileNotFoundError, ["does not exist"]),
    (lambda root: root.mkdir(), {}, ValueError, ["is empty"]),
    (lambda root: (root.mkdir(), (root / "a.txt").write_text("x"), (root / "b.npz").write_bytes(
        b"x")), {}, ValueError, ["no image files", ".png", ".jpg", ".gif", "1 .txt", "1 .npz"]),
    (lambda root: (root.parent.mkdir(exist_ok=True), root.write_text("x")), {}, ValueError,
     ["is a file, not a folder"]),
])
def test_from_directory_refuses_bad_folders(tmp_path, make, kwargs, error, words):
    root = tmp_path / "images"
    make(root)
    with pytest.raises(error) as err:
        data.from_directory(root, 8, **kwargs)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("kwargs, words", [
    (dict(image_size=0), ["image_size=0", "positive"]),
    (dict(image_size=(8,)), ["image_size", "(height, width)"]),
    (dict(image_size="8"), ["image_size"]),
    (dict(image_size=8, color_mode="rgba"), ["color_mode", "grayscale", "rgb"]),
    (dict(image_size=8, subset="training"), ["subset", "validation_split"]),
    (dict(image_size=8, validation_split=0.2), ["subset='training'", "'validation'"]),
    (dict(image_size=8, validation_split=1.5, subset="training"), ["validation_split", "(0, 1)"]),
    (dict(image_size=8, validation_split=0.2, subset="test"), ["subset", "training"]),
    (dict(image_size=8, validation_split=0.01, subset="validation"), ["leaves no", "8 image"]),
    (dict(image_size=8, batch_size=0), ["batch_size"]),
    (dict(image_size=8, seed=-2), ["seed"]),
    (dict(image_size=8, shuffle=None), ["shuffle"]),
    (dict(image_size=8, binarize="yes"), ["binarize"]),
    (dict(image_size=8, with_labels="yes"), ["with_labels"]),
])
def test_from_directory_refuses_bad_arguments(folder, kwargs, words):
    with pytest.raises(ValueError) as err:
        data.from_directory(folder, **kwargs)
    for word in words:
        assert word in str(err.value)


def test_from_directory_labels_need_class_folders(folder):
    write_png(folder / "loose.png", np.zeros((8, 8, 1)))
    with pytest.raises(ValueError, match="directly in it .*'loose.png'"):
        data.from_directory(folder, 8, with_labels=True)
    assert len(data.from_directory(folder, 8).file_paths) == 9  # fine without labels
