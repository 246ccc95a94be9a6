"""Image datasets as batched ``tf.data`` pipelines of float32 images in [0, 1].

Example:
    >>> from tfvae import data
    >>> ds = data.load("digits", batch_size=32, binarize="dynamic")
    >>> next(iter(ds)).shape
    TensorShape([32, 8, 8, 1])
"""
import os

import numpy as np
import tensorflow as tf

from tfvae import validation

# tensorflow_datasets is imported lazily inside functions: it is slow to import
# and "digits" must keep working even when TFDS is broken or absent.

_SHAPES = {
    "digits": (8, 8, 1),
    "binarized_mnist": (28, 28, 1),
    "mnist": (28, 28, 1),
    "fashion_mnist": (28, 28, 1),
    "kmnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
}
_BINARIZE = (None, "dynamic", "static")
_DIGITS_SPLITS = {"train": slice(0, 1500), "test": slice(1500, None)}  # 1500 / 297
_NPZ_SPLITS = {"train": "train", "validation": "valid", "valid": "valid", "test": "test"}
_SHUFFLE_BUFFER = 10_000


class DataNotFoundError(FileNotFoundError):
    """The dataset is not available locally and could not be downloaded."""


def names():
    """Returns the built-in dataset names (any TFDS image dataset also works)."""
    return tuple(_SHAPES)


def input_shape(name):
    """Returns the natural image shape of dataset ``name``, e.g. (28, 28, 1).

    Args:
        name: a built-in name (see ``names()``) or another TFDS image dataset.
    """
    if name in _SHAPES:
        return _SHAPES[name]
    return tuple(_tfds_builder(name, None).info.features["image"].shape)


def load(name="digits", split="train", batch_size=128, binarize=None, *, shuffle=None,
         seed=0, data_dir=None, with_labels=False, download=True, take=None):
    """Loads an image dataset as a batched, prefetched ``tf.data.Dataset``.

    Args:
        name: "digits" (scikit-learn, 8x8, offline), "binarized_mnist" (static
            50k/10k/10k split) or any TFDS image dataset ("mnist", "cifar10", ...).
        split: "train" / "test" ("validation" for binarized_mnist); TFDS datasets
            accept TFDS split strings such as "train[:10%]".
        batch_size: examples per batch, or None for unbatched examples.
        binarize: None, "dynamic" (fresh Bernoulli(x) bits on every pass over the
            data) or "static" (Bernoulli(x) drawn once, fixed by ``seed``).
        shuffle: defaults to True for split "train", else False.
        seed: seeds the shuffle and the binarization.
        data_dir: TFDS data folder (default: ``$TFDS_DATA_DIR`` or
            ~/tensorflow_datasets); for binarized_mnist also a folder holding
            ``binarized_mnist.npz`` or the path of that file.
        with_labels: yield ``(images, labels)`` (int64) instead of images alone.
        download: let TFDS download and prepare a missing dataset.
        take: keep only the first ``take`` examples (before shuffling).

    Returns:
        A ``tf.data.Dataset`` of float32 images shaped (batch, *input_shape(name)).

    Raises:
        ValueError: bad name, split, batch_size or binarize.
        DataNotFoundError: the dataset is missing and cannot be downloaded.
    """
    _check_arguments(name, split, batch_size, shuffle, seed, data_dir, with_labels, download, take)
    if not (binarize is None or isinstance(binarize, str)) or binarize not in _BINARIZE:
        raise ValueError(f"binarize must be one of {_BINARIZE}, got {binarize!r}")
    if name == "digits":
        ds = _digits(split)
    elif name == "binarized_mnist":
        if with_labels:
            raise ValueError("binarized_mnist has no labels; use with_labels=False "
                             "(or name='mnist' with binarize='static')")
        if binarize not in (None, "static"):
            raise ValueError(f"binarized_mnist is already binarized (static, fixed "
                             f"bits); binarize={binarize!r} is not allowed, use None")
        binarize = None  # values are already exactly 0/1
        ds = _binarized_mnist(split, data_dir, download)
    else:
        ds = _tfds(name, split, data_dir, download, with_labels)

    if take is not None:
        ds = ds.take(take)
    if binarize == "static":
        # Stateless and keyed by (seed, example index): the same bits on every pass
        # and every call, independent of the shuffle order.
        ds = ds.enumerate().map(
            lambda i, xy: (_bernoulli(xy[0], tf.stack([tf.cast(seed, tf.int64), i])), xy[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle is None:
        shuffle = split == "train"
    if shuffle:
        n = int(ds.cardinality())
        buffer = n if 0 < n <= _SHUFFLE_BUFFER else _SHUFFLE_BUFFER
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if batch_size is not None:
        ds = ds.batch(batch_size)
    if binarize == "dynamic":
        # A stateful op with a fixed seed inside map() would replay the same bits
        # for every new iterator (every epoch); Dataset.random with
        # rerandomize_each_iteration gives fresh per-batch seeds on each pass
        # while staying reproducible for a given `seed`.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda xy, s: (_bernoulli(xy[0], tf.stack([s, tf.cast(seed, tf.int64)])), xy[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    if not with_labels:
        ds = ds.map(lambda x, y: x)
    return ds.prefetch(tf.data.AUTOTUNE)


def _check_arguments(name, split, batch_size, shuffle, seed, data_dir, with_labels, download,
                     take):
    """Wrong types and values fail here, named, before any TensorFlow or TFDS work."""
    for argument, value in (("name", name), ("split", split)):
        if not isinstance(value, str) or not value:
            raise validation.WrongTypeError(f"{argument}={value!r} must be a non-empty string")
    if batch_size is not None:
        validation.check_int("batch_size", batch_size, minimum=1)
    if take is not None:
        validation.check_int("take", take, minimum=1)
    validation.check_int("seed", seed, minimum=0)
    for argument, value in (("shuffle", shuffle), ("with_labels", with_labels),
                            ("download", download)):
        allowed = isinstance(value, (bool, np.bool_)) or (argument == "shuffle" and value is None)
        if not allowed:
            raise validation.WrongTypeError(f"{argument}={value!r} must be True or False")
    if data_dir is not None:
        validation.check_path("data_dir", data_dir)


def _bernoulli(x, seed):
    return tf.cast(tf.random.stateless_uniform(tf.shape(x), seed) < x, tf.float32)


def _digits(split):
    if split not in _DIGITS_SPLITS:
        raise ValueError(f"unknown split {split!r} for 'digits'; valid splits: "
                         f"{list(_DIGITS_SPLITS)}")
    from sklearn.datasets import load_digits

    digits = load_digits()  # shipped with scikit-learn: no network needed
    order = np.random.default_rng(0).permutation(len(digits.target))[_DIGITS_SPLITS[split]]
    images = (digits.images[order, :, :, None] / 16.0).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((images, digits.target[order].astype(np.int64)))


def _binarized_mnist(split, data_dir, download):
    if split not in _NPZ_SPLITS:
        raise ValueError(f"unknown split {split!r} for 'binarized_mnist'; valid "
                         f"splits: {list(_NPZ_SPLITS)}")
    path = None
    if data_dir is not None and str(data_dir).endswith(".npz"):
        path = os.fspath(data_dir)
    elif data_dir is not None and os.path.isfile(os.path.join(data_dir, "binarized_mnist.npz")):
        path = os.path.join(data_dir, "binarized_mnist.npz")
    elif os.environ.get("TFVAE_BINARIZED_MNIST"):
        path = os.environ["TFVAE_BINARIZED_MNIST"]
    if path is None:  # fall back to TFDS's own binarized_mnist builder
        split = "validation" if split == "valid" else split
        try:
            return _tfds("binarized_mnist", split, data_dir, download, with_labels=False)
        except DataNotFoundError as e:
            raise DataNotFoundError(f"{e} Or point data_dir= (or TFVAE_BINARIZED_MNIST) "
                                    f"at binarized_mnist.npz.") from None
    if not os.path.isfile(path):
        raise DataNotFoundError(f"binarized_mnist: no such file {path!r}")
    with np.load(path) as npz:  # bits packed 8 per byte along the last axis
        bits = np.unpackbits(npz[_NPZ_SPLITS[split]], axis=1)[:, :784]
    images = bits.reshape(-1, 28, 28, 1).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((images, np.zeros(len(images), np.int64)))


def _tfds_builder(name, data_dir):
    import tensorflow_datasets as tfds

    # Without community datasets, list_builders is local and cheap (no GCS access).
    base = name.split(":")[0].split("/")[0]
    if base not in _SHAPES and base not in tfds.list_builders(with_community_datasets=False):
        raise ValueError(f"unknown dataset {name!r}; built-in names: {list(_SHAPES)} "
                         f"(any TFDS image dataset also works, e.g. 'svhn_cropped')")
    # TFDS reads TFDS_DATA_DIR only once, when it is imported; read it per call.
    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or None
    builder = tfds.builder(name, data_dir=data_dir)  # None -> ~/tensorflow_datasets
    if "image" not in builder.info.features:
        raise ValueError(f"TFDS dataset {name!r} has no 'image' feature")
    return builder


def _tfds(name, split, data_dir, download, with_labels):
    builder = _tfds_builder(name, data_dir)
    if with_labels and "label" not in builder.info.features:
        raise ValueError(f"TFDS dataset {name!r} has no 'label' feature")
    if not builder.is_prepared():
        reason = "download=False"
        if download:
            try:
                builder.download_and_prepare()
            except Exception as e:  # no network, quota, ...: report briefly below
                reason = f"download failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        if not builder.is_prepared():
            raise DataNotFoundError(
                f"TFDS dataset {name!r} not found in {builder.data_dir} ({reason}). "
                f"Provide it with data_dir= (a TFDS data folder holding {name}/), the "
                f"TFDS_DATA_DIR environment variable, or run once with internet access "
                f"and download=True.") from None
    ds = builder.as_dataset(split=split, shuffle_files=False)  # bad split -> ValueError
    has_label = "label" in builder.info.features
    return ds.map(
        lambda d: (tf.cast(d["image"], tf.float32) / 255.0,
                   tf.cast(d["label"], tf.int64) if has_label else tf.constant(0, tf.int64)),
        num_parallel_calls=tf.data.AUTOTUNE)
