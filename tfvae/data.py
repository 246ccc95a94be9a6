"""Image datasets as batched ``tf.data`` pipelines of float32 images in [0, 1].

Three sources, one pipeline: ``load`` (built-in and TFDS datasets), ``from_arrays`` (arrays you
already have) and ``from_directory`` (a folder of image files) each decode their images once,
into memory, and then shuffle, batch, binarize and prefetch in exactly the same way.

Example:
    >>> from tfvae import data
    >>> ds = data.load("digits", batch_size=32, binarize="dynamic")
    >>> next(iter(ds)).shape
    TensorShape([32, 8, 8, 1])
    >>> ds = data.from_arrays(np.random.rand(100, 8, 8, 1), batch_size=32)
    >>> ds = data.from_directory("my_images", image_size=32, color_mode="rgb")
"""
import os
import re

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
#: the shuffle buffer of training.epoch_batches (the in-memory pipeline shuffles fully)
SHUFFLE_BUFFER = 10_000
_READ_BATCH = 4096  # examples per step when reading a TFDS split or a folder into memory
_CHUNK_BYTES = 1 << 25  # float32 bytes of the batches the pipeline makes with one gather
#: tf.data's autotuning in the pipeline (bench/epoch_boundary.py measures it with and without):
#: releasing an autotuned iterator waits for autotuning's background thread, for up to seconds,
#: and model.fit releases one every epoch. Off, the pipeline's fixed sizes below serve.
_AUTOTUNE = False
#: the files from_directory reads
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_COLOR_MODES = {"grayscale": 1, "rgb": 3}
_SUBSETS = ("training", "validation")


class DataNotFoundError(FileNotFoundError):
    """The dataset is not available locally and could not be downloaded."""


def names():
    """Returns the built-in dataset names (any TFDS image dataset also works)."""
    return tuple(_SHAPES)


def input_shape(name):
    """Returns the natural image shape of dataset ``name``, e.g. (28, 28, 1).

    A ``from_directory`` dataset's shape is ``(height, width, 1)`` for color_mode "grayscale"
    and ``(height, width, 3)`` for "rgb"; a ``from_arrays`` dataset's is ``x.shape[1:]``.

    Args:
        name: a built-in name (see ``names()``) or another TFDS image dataset.
    """
    if name in _SHAPES:
        return _SHAPES[name]
    return tuple(_tfds_builder(name, None).info.features["image"].shape)


def load(name="digits", split="train", batch_size=128, binarize=None, *, shuffle=None,
         seed=0, data_dir=None, with_labels=False, download=True, take=None):
    """Loads an image dataset as a batched, prefetched ``tf.data.Dataset``.

    The split is read and decoded once, here, into memory (8-bit images stay uint8 there and
    become float32 one batch at a time), so every pass over the dataset is cheap.

    Example:
        >>> ds = load("mnist", batch_size=128, binarize="dynamic")  # fresh bits every epoch
        >>> model.fit(ds, epochs=10)

    Args:
        name: "digits" (scikit-learn, 8x8, offline), "binarized_mnist" (static
            50k/10k/10k split) or any TFDS image dataset ("mnist", "cifar10", ...).
        split: "train" / "test" ("validation" for binarized_mnist); TFDS datasets
            accept TFDS split strings such as "train[:10%]".
        batch_size: examples per batch, or None for unbatched examples.
        binarize: None, "dynamic" (fresh Bernoulli(x) bits on every pass over the
            data) or "static" (Bernoulli(x) drawn once, fixed by ``seed``).
        shuffle: defaults to True for the training split ("train", a slice of it such as
            "train[:90%]", or slices of it joined with "+"), else False.
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
    _check_binarize(binarize)
    if name == "digits":
        images, labels, scale = _digits(split)
    elif name == "binarized_mnist":
        if with_labels:
            raise ValueError("binarized_mnist has no labels; use with_labels=False "
                             "(or name='mnist' with binarize='static')")
        if binarize not in (None, "static"):
            raise ValueError(f"binarized_mnist is already binarized (static, fixed "
                             f"bits); binarize={binarize!r} is not allowed, use None")
        binarize = None  # values are already exactly 0/1
        images, labels, scale = _binarized_mnist(split, data_dir, download, take)
    else:
        images, labels, scale = _tfds(name, split, data_dir, download, with_labels, take)
    if take is not None:
        images, labels = images[:take], labels[:take]
    if shuffle is None:
        shuffle = is_training_split(split)
    return _pipeline(images, labels if with_labels else None, scale=scale,
                     batch_size=batch_size, binarize=binarize, shuffle=shuffle, seed=seed)


def is_training_split(split):
    """Whether ``split`` reads only training examples: "train", or TFDS slices of it such as
    "train[:90%]" and "train[:10%]+train[50%:]" (a held-out part of the training set is
    still training data, read in a fresh order every epoch unless told otherwise)."""
    return all(part.strip().split("[")[0].strip() == "train" for part in split.split("+"))


def from_arrays(x, batch_size=128, binarize=None, *, shuffle=True, seed=0, labels=None):
    """Your own images, as the same batched pipeline ``load`` gives.

    Example:
        >>> x = np.random.rand(1000, 28, 28, 1)  # float images in [0, 1]
        >>> ds = from_arrays(x, batch_size=64, binarize="dynamic", seed=1)
        >>> model.fit(ds, epochs=5)
        >>> pairs = from_arrays(x, labels=y)      # (images, labels) batches
        >>> from_arrays(x_uint8 / 255.0)          # 8-bit images: scale them first

    Args:
        x: float images in [0, 1], shaped [n, height, width, channels] or flat [n, features]:
            a numpy array, anything ``np.asarray`` takes, or a tf.Tensor. (Bool arrays count as
            0/1.) Values outside [0, 1] are allowed only when ``binarize`` is None.
        batch_size: examples per batch, or None for unbatched examples.
        binarize: None, "dynamic" (fresh Bernoulli(x) bits on every pass) or "static"
            (drawn once, fixed by ``seed`` and the example's index).
        shuffle: reshuffle the examples on every pass (seeded by ``seed``).
        seed: seeds the shuffle and the binarization.
        labels: optional, one label per example (length n): the dataset then yields
            ``(images, labels)``; integer labels become int64.

    Returns:
        A prefetched ``tf.data.Dataset`` of float32 batches shaped (batch, *x.shape[1:]).

    Raises:
        ValueError (or validation.WrongTypeError, also a ValueError): integer images not
        scaled to [0, 1], a non-numeric dtype, NaN or inf, a shape that is not a batch of
        images or vectors, no examples, values outside [0, 1] with ``binarize``, labels of the
        wrong length, or a bad batch_size, seed, shuffle or binarize.
    """
    _check_pipeline_arguments(batch_size, binarize, shuffle, seed)
    images = _check_images(x, binarize)
    labels = _check_labels(labels, len(images))
    return _pipeline(images, labels, scale=1, batch_size=batch_size, binarize=binarize,
                     shuffle=shuffle, seed=seed)


def from_directory(path, image_size, color_mode="grayscale", batch_size=128, binarize=None, *,
                   shuffle=True, seed=0, validation_split=None, subset=None, with_labels=False):
    """A folder (or folders) of image files, as the same batched pipeline ``load`` gives.

    Image files (.png, .jpg, .jpeg, .bmp, .gif; the first frame of an animation) are found in
    ``path`` and all its subfolders, in sorted order, decoded once up front, resized to
    ``image_size`` and converted to ``color_mode``, and kept in memory as uint8.

    Example:
        >>> train = from_directory("faces", 32, "rgb", validation_split=0.1, subset="training")
        >>> valid = from_directory("faces", 32, "rgb", validation_split=0.1, subset="validation",
        ...                        shuffle=False)
        >>> model = tfvae.models.get("vae", input_shape=(32, 32, 3))
        >>> model.fit(train, epochs=10); model.evaluate(valid)

    Args:
        path: a folder, or a list of folders, holding image files (in subfolders too).
        image_size: an int (square) or (height, width): every image is resized to it
            (bilinear, antialiased when shrinking), whatever its own size.
        color_mode: "grayscale" (1 channel; color images are converted) or "rgb" (3 channels;
            gray images are repeated). Alpha channels are dropped.
        batch_size: examples per batch, or None for unbatched examples.
        binarize: None, "dynamic" or "static", as in ``load``.
        shuffle: reshuffle the examples on every pass (seeded by ``seed``).
        seed: seeds the shuffle, the binarization and the validation split.
        validation_split: a fraction in (0, 1): hold out that share of the files, chosen by a
            fixed permutation seeded by ``seed``. Needs ``subset``; call once with "training"
            and once with "validation" (and the same seed) to get two disjoint subsets that
            cover every file.
        subset: "training" or "validation", with ``validation_split``.
        with_labels: yield ``(images, labels)``: each top-level subfolder of ``path`` is a
            class, numbered in alphabetical order (as Keras' image_dataset_from_directory).

    Returns:
        A prefetched ``tf.data.Dataset`` of float32 batches shaped (batch, height, width, 1 or
        3). It also has ``file_paths`` (the files, in unshuffled order) and, with
        ``with_labels``, ``class_names``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an empty folder, no image files, files that cannot be decoded (named),
            or a bad argument.
    """
    _check_pipeline_arguments(batch_size, binarize, shuffle, seed)
    roots = _check_folders(path)
    height, width = _check_image_size(image_size)
    if not isinstance(color_mode, str) or color_mode not in _COLOR_MODES:
        raise ValueError(f"color_mode must be one of {list(_COLOR_MODES)}, got {color_mode!r}")
    _check_validation_split(validation_split, subset)
    if not isinstance(with_labels, (bool, np.bool_)):
        raise validation.WrongTypeError(f"with_labels={with_labels!r} must be True or False")

    files, shown, labels, class_names = _find_images(roots, with_labels)
    if validation_split is not None:
        count = len(files)
        held_out = int(round(validation_split * count))
        if not 0 < held_out < count:
            raise ValueError(f"validation_split={validation_split} of {count} image files "
                             f"leaves {'no' if held_out == 0 else 'no training'} files for "
                             f"{'validation' if held_out == 0 else 'training'}: use a "
                             f"fraction between {1 / count:.3g} and {1 - 1 / count:.3g}")
        # A fixed permutation of the sorted files: for one seed, the two subsets are disjoint
        # and together cover every file. Each subset keeps the sorted order.
        order = np.random.default_rng(seed).permutation(count)
        chosen = np.sort(order[:held_out] if subset == "validation" else order[held_out:])
        files, shown = [files[i] for i in chosen], [shown[i] for i in chosen]
        labels = labels[chosen] if labels is not None else None
    images = _decode_files(files, shown, height, width, _COLOR_MODES[color_mode])
    ds = _pipeline(images, labels, scale=255, batch_size=batch_size, binarize=binarize,
                   shuffle=shuffle, seed=seed)
    ds.file_paths = files
    if with_labels:
        ds.class_names = class_names
    return ds


# ---- the one pipeline ----------------------------------------------------------------------
def _pipeline(images, labels, *, scale, batch_size, binarize, shuffle, seed):
    """The pipeline every source ends in: in-memory images -> (static bits) -> shuffle ->
    gather a chunk of batches -> float32 in [0, 1] or dynamic bits -> batches -> prefetch.

    Args:
        images: numpy array [n, ...] in memory, uint8 (or float32) holding value * scale.
        labels: numpy array [n, ...] to yield beside the images, or None for images alone.
        scale: images / scale is in [0, 1] (255 for 8-bit images, 16 for digits, 1 for bits).
    """
    if binarize == "static":
        images, scale = _static_bits(images, scale, seed), 1
    # One copy in memory, captured by the map below. The pipeline shuffles *indices* (a full
    # shuffle costs 8 bytes an example) and gathers and converts (or binarizes) a chunk of many
    # batches with one op each: per-batch ops cost as much again in dispatch as in work, and
    # their bursts slow the training step that shares the cores (measured in bench/throughput.py).
    images = tf.convert_to_tensor(images)
    labels = None if labels is None else tf.convert_to_tensor(labels)
    count = int(images.shape[0])
    chunk_size = examples_per_chunk(batch_size, images.shape[1:])
    ds = tf.data.Dataset.range(count)
    if shuffle:
        ds = ds.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(chunk_size)
    seed64 = tf.constant(seed, tf.int64)

    def to_unit(index):
        # Cast after gathering: memory stays at 1 byte a pixel for 8-bit images.
        x = tf.cast(tf.gather(images, index), tf.float32)
        return x if scale == 1 else x / scale

    if binarize == "dynamic":
        # A stateful op with a fixed seed inside map() would replay the same bits for every
        # new iterator (every epoch); Dataset.random with rerandomize_each_iteration gives
        # fresh per-chunk seeds on each pass while staying reproducible for a given `seed`.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, seeds)

        def fetch(index, s):
            x = bernoulli_bits(tf.gather(images, index), scale, tf.stack([s, seed64]))
            return x if labels is None else (x, tf.gather(labels, index))
    else:
        def fetch(index):
            x = to_unit(index)
            return x if labels is None else (x, tf.gather(labels, index))
    # One chunk in the making while the batches of the one before are sliced: one thread keeps
    # ahead of training: an MNIST chunk, 10,600 images, binarizes in about 35 ms
    # (bench/bernoulli.py), and training on them takes about 0.23 s even for the IWAE paper's
    # small VAE (bench/throughput.py, 45,561 images/s).
    ds = ds.map(fetch, num_parallel_calls=tf.data.AUTOTUNE if _AUTOTUNE else 1)
    if batch_size is None:
        ds = ds.unbatch()
    else:
        def batches(*chunk):
            # Slices of the chunk, a batch each: as batch() would have made them from the
            # same shuffled order, the last one short.
            chunk = chunk if len(chunk) > 1 else chunk[0]  # (images, labels) or images
            size = tf.shape(tf.nest.flatten(chunk)[0], out_type=tf.int64)[0]
            return tf.data.Dataset.range(0, size, batch_size).map(
                lambda start: tf.nest.map_structure(lambda t: t[start:start + batch_size], chunk))
        ds = ds.flat_map(batches)
    # flat_map forgets how many elements there are; fit() and the progress bars need it.
    length = count if batch_size is None else -(-count // batch_size)
    ds = ds.apply(tf.data.experimental.assert_cardinality(length))
    if _AUTOTUNE:
        return ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(2).with_options(options)


def examples_per_chunk(batch_size, example_shape):
    """Examples the pipeline gathers at once: whole batches, about _CHUNK_BYTES as float32."""
    per_batch = batch_size or 1
    example_bytes = 4 * int(np.prod(example_shape))
    return per_batch * max(1, _CHUNK_BYTES // (per_batch * example_bytes))


def bernoulli_bits(images, scale, seed):
    """float32 bits ~ Bernoulli(images / scale), exactly, from one random byte a pixel.

    Split a uniform u = (b + w) / 256 into a random byte b and a remainder w ~ U[0, 1). With
    t = 256 * p, u < p holds for sure when b < floor(t), fails for sure when b > floor(t), and
    hangs on w < t - floor(t) only when b == floor(t): one pixel in 256, and only those draw w.
    The bits are Bernoulli(p) with no rounding of p to 8 bits, from a quarter of the Philox
    draws of a float32 uniform a pixel; those draws were most of the pipeline's work.
    """
    byte_seed, remainder_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))

    def in_256ths(v):  # t = 256 * v / scale, exactly 256 for v = scale
        t = tf.cast(v, tf.float32) * 256
        return t if scale == 1 else t / scale

    if images.dtype == tf.uint8 and scale == 255:
        # 8-bit images (MNIST's path) skip the float passes over the chunk: floor(256 k / 255)
        # = k for k < 255, and for 255 the tie below is sure.
        level = images
    else:
        level = tf.cast(tf.minimum(in_256ths(images), 255), tf.uint8)  # p = 1 ties at 255
    count = tf.size(images)
    words = tf.random.stateless_uniform([(count + 3) // 4], byte_seed, minval=None,
                                        maxval=None, dtype=tf.uint32)
    byte = tf.reshape(tf.reshape(tf.bitcast(words, tf.uint8), [-1])[:count], tf.shape(images))
    bits = byte < level
    tied = tf.where(tf.equal(byte, level))
    fraction = in_256ths(tf.gather_nd(images, tied)) - tf.cast(tf.gather_nd(level, tied),
                                                               tf.float32)
    remainder = tf.random.stateless_uniform(tf.shape(fraction), remainder_seed)
    bits = tf.tensor_scatter_nd_update(bits, tied, remainder < fraction)
    return tf.cast(bits, tf.float32)


def _static_bits(images, scale, seed):
    """Bernoulli(images / scale) drawn once, as uint8 0/1: example i's bits come from the
    stateless seed (seed, i), so they do not depend on shuffling, batching or the call."""
    seed64 = tf.constant(seed, tf.int64)

    @tf.function(input_signature=[tf.TensorSpec([None, *images.shape[1:]], images.dtype),
                                  tf.TensorSpec([None], tf.int64)])
    def draw(x, index):
        x = tf.cast(x, tf.float32) / scale

        def bits(a):  # a float32 uniform a pixel: the bits static datasets have always had
            example, i = a
            uniform = tf.random.stateless_uniform(tf.shape(example), tf.stack([seed64, i]))
            return tf.cast(uniform < example, tf.uint8)

        # Each example draws with its own seed, so no single op covers a chunk (pfor has no
        # converter for stateless RNG and would fall back to a loop anyway): a parallel loop.
        return tf.map_fn(bits, (x, index), fn_output_signature=tf.uint8, parallel_iterations=256)

    out = np.empty(images.shape, np.uint8)
    for start in range(0, len(images), _READ_BATCH):
        stop = min(start + _READ_BATCH, len(images))
        out[start:stop] = draw(images[start:stop], np.arange(start, stop, dtype=np.int64))
    return out


# ---- argument checks -----------------------------------------------------------------------
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


def _check_binarize(binarize):
    if not (binarize is None or isinstance(binarize, str)) or binarize not in _BINARIZE:
        raise ValueError(f"binarize must be one of {_BINARIZE}, got {binarize!r}")


def _check_pipeline_arguments(batch_size, binarize, shuffle, seed):
    """from_arrays' and from_directory's share of load's checks, with the same messages."""
    if batch_size is not None:
        validation.check_int("batch_size", batch_size, minimum=1)
    validation.check_int("seed", seed, minimum=0)
    if not isinstance(shuffle, (bool, np.bool_)):
        raise validation.WrongTypeError(f"shuffle={shuffle!r} must be True or False")
    _check_binarize(binarize)


def _check_images(x, binarize):
    """from_arrays' x as a float32 numpy array [n, ...], or an error saying what to do."""
    if hasattr(x, "element_spec"):
        raise validation.WrongTypeError(
            "x is a tf.data.Dataset; from_arrays takes an array of images (pass a dataset to "
            "model.fit directly)")
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()  # a tf.Tensor or tf.Variable
    try:
        array = np.asarray(x)
    except (ValueError, TypeError) as error:  # ragged nested lists
        raise validation.WrongTypeError(
            f"x must be an array of images; numpy cannot make an array of it: {error}") from None
    if array.dtype.kind not in "biuf":
        raise validation.WrongTypeError(
            f"x has dtype {array.dtype}: from_arrays takes a numeric array of float images in "
            f"[0, 1] (e.g. x.astype('float32'))")
    shape = list(array.shape)
    layouts = "[n, height, width, channels] or flat vectors [n, features]"
    if array.ndim == 0:
        raise ValueError(f"x is a single number: from_arrays takes a batch of images, {layouts}")
    if array.ndim == 1:
        raise ValueError(f"x has shape {shape}, no batch of examples: from_arrays takes "
                         f"{layouts} (one flat example? add a batch axis: x[None])")
    if array.ndim == 3:
        raise ValueError(f"x has shape {shape}, [n, height, width]: add a channel axis, "
                         f"x[..., None], to make it [n, height, width, 1]")
    if array.ndim > 4:
        raise ValueError(f"x has shape {shape} (rank {array.ndim}): from_arrays takes {layouts}")
    if shape[0] == 0:
        raise ValueError(f"x holds no examples (shape {shape})")
    if 0 in shape[1:]:
        raise ValueError(f"x has empty examples (shape {shape})")
    if array.dtype.kind in "iu":
        low, high = array.min(), array.max()
        fix = "x / 255.0" if high > 1 else "x.astype('float32')"
        raise ValueError(f"x has dtype {array.dtype} with values {low}..{high}: from_arrays "
                         f"takes float images in [0, 1]; scale it first, e.g. {fix}")
    array = np.ascontiguousarray(array, dtype=np.float32)  # bool -> 0/1
    finite = np.isfinite(array)
    if not finite.all():
        raise ValueError(f"x holds {int(array.size - finite.sum())} non-finite values (NaN or "
                         f"inf); replace or drop those examples")
    if binarize is not None:
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 1:
            raise ValueError(f"x has values in [{low:.4g}, {high:.4g}]; binarize={binarize!r} "
                             f"draws Bernoulli(x) bits and needs values in [0, 1] (8-bit "
                             f"images? divide by 255)")
    return array


def _check_labels(labels, count):
    if labels is None:
        return None
    if hasattr(labels, "numpy") and not isinstance(labels, np.ndarray):
        labels = labels.numpy()
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError) as error:
        raise validation.WrongTypeError(f"labels must be an array: {error}") from None
    if labels.dtype.kind not in "biuf":
        raise validation.WrongTypeError(f"labels has dtype {labels.dtype}; it must be numeric")
    if labels.ndim == 0 or len(labels) != count:
        raise ValueError(f"labels has shape {list(labels.shape)}; it needs one label per "
                         f"example of x, {count} in all")
    return labels.astype(np.int64 if labels.dtype.kind in "biu" else np.float32)


def _check_folders(path):
    """from_directory's path as a list of existing folders."""
    paths = list(path) if isinstance(path, (list, tuple)) else [path]
    if not paths:
        raise ValueError("path is an empty list; give a folder or a list of folders")
    folders = []
    for p in paths:
        validation.check_path("path", p)
        p = os.fspath(p)
        if not os.path.exists(p):
            raise FileNotFoundError(f"path {p!r} does not exist")
        if not os.path.isdir(p):
            raise ValueError(f"path {p!r} is a file, not a folder; give the folder that holds "
                             f"the image files")
        folders.append(p)
    return folders


def _check_image_size(image_size):
    size = (image_size, image_size) if validation.is_int(image_size) else image_size
    if (not validation.is_sequence(size) or len(size) != 2
            or not all(validation.is_int(d) for d in size)):
        raise validation.WrongTypeError(f"image_size={image_size!r} must be an integer or a "
                                        f"(height, width) pair of integers")
    if min(size) < 1:
        raise ValueError(f"image_size={image_size!r} must be positive (pixels)")
    return int(size[0]), int(size[1])


def _check_validation_split(validation_split, subset):
    if validation_split is None:
        if subset is not None:
            raise ValueError(f"subset={subset!r} needs validation_split, the fraction to hold "
                             f"out (e.g. validation_split=0.1)")
        return
    if not validation.is_real(validation_split) or not 0 < validation_split < 1:
        raise ValueError(f"validation_split={validation_split!r} must be a fraction in (0, 1), "
                         f"e.g. 0.1")
    if subset is None:
        raise ValueError(f"validation_split={validation_split} needs subset='training' or "
                         f"subset='validation'")
    if not isinstance(subset, str) or subset not in _SUBSETS:
        raise ValueError(f"subset must be one of {list(_SUBSETS)}, got {subset!r}")


# ---- sources -------------------------------------------------------------------------------
def _digits(split):
    if split not in _DIGITS_SPLITS:
        raise ValueError(f"unknown split {split!r} for 'digits'; valid splits: "
                         f"{list(_DIGITS_SPLITS)}")
    from sklearn.datasets import load_digits

    digits = load_digits()  # shipped with scikit-learn: no network needed
    order = np.random.default_rng(0).permutation(len(digits.target))[_DIGITS_SPLITS[split]]
    # Pixel values are 0..16: uint8 with scale 16 gives exactly value / 16 in float32.
    images = digits.images[order, :, :, None].astype(np.uint8)
    return images, digits.target[order].astype(np.int64), 16


def _binarized_mnist(split, data_dir, download, take):
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
            return _tfds("binarized_mnist", split, data_dir, download, False, take)
        except DataNotFoundError as e:
            raise DataNotFoundError(f"{e} Or point data_dir= (or TFVAE_BINARIZED_MNIST) "
                                    f"at binarized_mnist.npz.") from None
    if not os.path.isfile(path):
        raise DataNotFoundError(f"binarized_mnist: no such file {path!r}")
    with np.load(path) as npz:  # bits packed 8 per byte along the last axis
        bits = np.unpackbits(npz[_NPZ_SPLITS[split]], axis=1)[:, :784]
    return bits.reshape(-1, 28, 28, 1), np.zeros(len(bits), np.int64), 1


def source(name, data_dir=None):
    """Where `load(name, ...)` takes its examples from, as a card names it (never a path):
    "scikit-learn digits", "binarized_mnist.npz", or the TFDS builder and version, e.g.
    "TFDS mnist 3.0.1"; "TFDS" when the builder cannot be named."""
    if name == "digits":
        return "scikit-learn digits"
    if name == "binarized_mnist":
        # load's order: an .npz file or a folder holding one, $TFVAE_BINARIZED_MNIST, else TFDS.
        folder = os.fspath(data_dir or "")
        if (folder.endswith(".npz") or os.path.isfile(os.path.join(folder, "binarized_mnist.npz"))
                or os.environ.get("TFVAE_BINARIZED_MNIST")):
            return "binarized_mnist.npz"
    try:
        builder = _tfds_builder(name, data_dir)
        return f"TFDS {builder.name} {builder.version}"
    except Exception:  # a dataset that loaded: only its version could not be named
        return "TFDS"


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


def _tfds(name, split, data_dir, download, with_labels, take):
    """A TFDS split read and decoded once into memory: (uint8 images, int64 labels, scale)."""
    builder = _tfds_builder(name, data_dir)
    if with_labels and "label" not in builder.info.features:
        raise ValueError(f"TFDS dataset {name!r} has no 'label' feature")
    if not builder.is_prepared():
        reason, prepared = "download=False", False
        # Offline, TFDS would spend minutes retrying before it fails: check the hosts first.
        unreachable = _unreachable_download_host(builder) if download else None
        if unreachable:
            reason = f"download skipped, the network is unreachable: {unreachable}"
        elif download:
            try:
                builder.download_and_prepare()
            except Exception as e:  # no network, quota, ...: report briefly below
                reason = f"download failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
            prepared = builder.is_prepared()
        if not prepared:
            raise DataNotFoundError(
                f"TFDS dataset {name!r} not found in {builder.data_dir} ({reason}). "
                f"Provide it with data_dir= (a TFDS data folder holding {name}/), the "
                f"TFDS_DATA_DIR environment variable, or run once with internet access "
                f"and download=True.") from None
    feature = builder.info.features["image"]
    if None in tuple(feature.shape):
        raise ValueError(f"TFDS dataset {name!r} has images of varying size "
                         f"{tuple(feature.shape)}; save them to a folder and use "
                         f"from_directory(..., image_size=...) to resize them")
    ds = builder.as_dataset(split=split, shuffle_files=False)  # bad split -> ValueError
    if take is not None:
        ds = ds.take(take)  # decode only what is used
    has_label = "label" in builder.info.features
    ds = ds.map(lambda d: (d["image"], tf.cast(d["label"], tf.int64) if has_label
                           else tf.constant(0, tf.int64))).batch(_READ_BATCH)
    chunks = list(ds.as_numpy_iterator())
    if not chunks:
        raise ValueError(f"split {split!r} of TFDS dataset {name!r} holds no examples")
    images = np.concatenate([c[0] for c in chunks])
    labels = np.concatenate([c[1] for c in chunks])
    scale = np.iinfo(images.dtype).max if images.dtype.kind == "u" else 1
    return images, labels, scale


#: seconds to reach a download host before calling the network unreachable
_REACH_TIMEOUT = 5.0


def _unreachable_download_host(builder, timeout=_REACH_TIMEOUT):
    """Why the builder's download would fail for want of a network, e.g. "cannot reach
    storage.googleapis.com:443, gaierror: [Errno -2] Name or service not known", or None when
    every host it downloads from (or the proxy in between) answers a TCP connection within
    `timeout` seconds, or when TFDS lists no URLs for it (the download then just runs).

        _unreachable_download_host(tfds.builder("mnist"))   # None with a network

    TFDS retries a failed download 10 times with exponential backoff, about 3.5 minutes
    before it gives up offline, and offers no setting for it (its DownloadConfig has none; the
    count is a module constant of its downloader); one connection per host tells in seconds. The URLs are the
    ones in the dataset's checksums file, the files download_and_prepare fetches.
    """
    import urllib.parse
    import urllib.request

    try:
        urls = sorted(builder.url_infos or ())
    except Exception:  # no checksums file to read: nothing to check
        return None
    proxies = urllib.request.getproxies()  # the *_proxy variables, which requests honours too
    checked = set()
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        default_port = {"http": 80, "https": 443, "ftp": 21}.get(parts.scheme)
        if default_port is None or not parts.hostname:
            continue
        address = (parts.hostname, parts.port or default_port)
        proxy = proxies.get(parts.scheme)
        if proxy and not urllib.request.proxy_bypass(parts.hostname):
            proxy = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
            address = (proxy.hostname, proxy.port or (443 if proxy.scheme == "https" else 80))
        if address in checked:
            continue
        checked.add(address)
        problem = _connect(address, timeout)
        if problem:
            return f"cannot reach {address[0]}:{address[1]}, {problem}"
    return None


def _connect(address, timeout):
    """None if a TCP connection to (host, port) opens within `timeout` seconds, else why not.
    The name lookup runs in a thread too: the system resolver has no timeout of its own."""
    import socket
    import threading

    outcome = []

    def attempt():
        try:
            socket.create_connection(address, timeout=timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(f"{type(error).__name__}: {error}")

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"


def _find_images(roots, with_labels):
    """Image files under each root, sorted: (paths, names to show, labels or None, classes)."""
    files, shown, classes = [], [], []
    for root in roots:
        found, others = [], {}
        for folder, subfolders, names in os.walk(root):
            subfolders.sort()
            for name in names:
                ext = os.path.splitext(name)[1].lower()
                if ext in IMAGE_EXTENSIONS:
                    relative = os.path.relpath(os.path.join(folder, name), root)
                    found.append(tuple(relative.split(os.sep)))
                else:
                    others[ext or "(no extension)"] = others.get(ext or "(no extension)", 0) + 1
        if not found and not others:
            raise ValueError(f"folder {root!r} is empty: from_directory needs image files in it "
                             f"or its subfolders")
        if not found:
            seen = ", ".join(f"{count} {ext}" for ext, count in
                             sorted(others.items(), key=lambda item: -item[1])[:5])
            raise ValueError(f"folder {root!r} holds no image files (the extensions that count: "
                             f"{', '.join(IMAGE_EXTENSIONS)}); it holds {sum(others.values())} "
                             f"other files: {seen}")
        found.sort()  # by path components: the same order on every machine
        if with_labels:
            loose = [parts for parts in found if len(parts) == 1]
            if loose:
                raise ValueError(f"with_labels=True makes each subfolder of {root!r} a class, "
                                 f"but {len(loose)} image files lie directly in it (e.g. "
                                 f"{loose[0][0]!r}): move them into a class subfolder")
            classes.extend(parts[0] for parts in found)
        files.extend(os.path.join(root, *parts) for parts in found)
        shown.extend("/".join(parts) for parts in found)
    if not with_labels:
        return files, shown, None, None
    class_names = sorted(set(classes))
    index = {name: i for i, name in enumerate(class_names)}
    return files, shown, np.array([index[c] for c in classes], np.int64), class_names


def _decode_files(files, shown, height, width, channels):
    """Every file decoded, converted and resized, once: a uint8 array [n, height, width,
    channels]. Files that cannot be read or decoded are named in a ValueError."""

    def decode(index, path):
        image = tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
        have = tf.shape(image)[-1]
        # Drop alpha: RGBA -> RGB, gray+alpha -> gray.
        image = tf.cond(have >= 3, lambda: image[..., :3], lambda: image[..., :1])
        if channels == 1:
            image = tf.cond(tf.shape(image)[-1] == 3, lambda: tf.image.rgb_to_grayscale(image),
                            lambda: image)
        else:
            image = tf.cond(tf.shape(image)[-1] == 1, lambda: tf.image.grayscale_to_rgb(image),
                            lambda: image)
        image.set_shape([None, None, channels])

        def resize():
            # Antialiased bilinear: plain bilinear when enlarging, area-like when shrinking.
            resized = tf.image.resize(image, (height, width), method="bilinear", antialias=True)
            return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

        same = tf.reduce_all(tf.shape(image)[:2] == (height, width))
        return index, tf.cond(same, lambda: image, resize)

    count = len(files)
    paths = tf.data.Dataset.from_tensor_slices((np.arange(count, dtype=np.int64), files))
    # One parallel pass; a file that fails is dropped here and named below.
    decoded = paths.map(decode, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    images = np.empty((count, height, width, channels), np.uint8)
    done = np.zeros(count, bool)
    for index, batch in decoded.batch(_READ_BATCH).as_numpy_iterator():
        images[index], done[index] = batch, True
    if not done.all():
        bad = np.flatnonzero(~done)
        reasons = []
        for i in bad[:3]:
            try:
                decode(tf.constant(i), tf.constant(files[i]))
                reasons.append(f"{shown[i]} (failed in the parallel pass only)")
            except tf.errors.OpError as error:
                reasons.append(f"{shown[i]} ({_op_message(error, files[i], shown[i])})")
        more = f", and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ValueError(f"could not decode {len(bad)} of {count} image files: "
                         f"{', '.join(reasons)}{more}")
    return images


def _op_message(error, path, shown):
    """A TensorFlow error's message without its op plumbing, naming the file as shown."""
    message = error.message.replace(path, shown)
    message = re.sub(r"\{\{[^}]*\}\}\s*", "", message)
    message = re.sub(r"\s*\[Op:\w+\].*$", "", message, flags=re.S)
    return message.strip().splitlines()[0][:160] if message.strip() else type(error).__name__
