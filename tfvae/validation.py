"""Argument checks for the public entry points: a wrong type, shape or value gets an error that
names the argument, raised before any TensorFlow work starts.

Plain Python and numpy only: `tfvae.loading` uses this module and must load without tf_keras or
TensorFlow Probability.

    check_positive_int("latent_dim", 0)     # ValueError: latent_dim=0 must be an integer >= 1
    check_examples(x, (8, 8, 1), "fit")      # ValueError naming the expected [batch, 8, 8, 1]
"""
import inspect
import math
import numbers
import os
from collections.abc import Mapping

import numpy as np


class WrongTypeError(TypeError, ValueError):
    """An argument of the wrong type. Also a ValueError, so that `except ValueError` (the models'
    convention for bad arguments) catches every bad argument."""


def _show(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def is_int(value):
    """An integer of any kind (Python or numpy), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value):
    """A real number of any kind (Python or numpy), but not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_int(name, value, minimum=1):
    """`value` as an int >= minimum; WrongTypeError for a non-integer, ValueError below minimum."""
    if not is_int(value):
        raise WrongTypeError(f"{name}={_show(value)} must be an integer >= {minimum}, "
                             f"not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}={_show(value)} must be an integer >= {minimum}")
    return int(value)


def check_positive_int(name, value):
    return check_int(name, value, minimum=1)


def check_widths(name, value):
    """`value` as a tuple of layer widths (positive integers; empty for no hidden layer)."""
    if not is_sequence(value) or not all(is_int(u) for u in value):
        raise WrongTypeError(f"{name}={_show(value)} must be a tuple of positive integers")
    if any(u < 1 for u in value):
        raise ValueError(f"{name}={tuple(value)!r} must be positive integers")
    return tuple(int(u) for u in value)


def check_number(name, value, minimum=None, positive=False):
    """`value` as a finite float (>= minimum, or > 0 when positive), or an error naming it."""
    if not is_real(value):
        raise WrongTypeError(f"{name}={_show(value)} must be a number, not {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name}={_show(value)} must be a finite number")
    if positive and value <= 0:
        raise ValueError(f"{name}={_show(value)} must be > 0")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}={_show(value)} must be >= {minimum}")
    return float(value)


def check_path(name, value):
    """A non-empty str or os.PathLike."""
    if not isinstance(value, (str, os.PathLike)):
        raise WrongTypeError(f"{name}={_show(value)} must be a path (str or pathlib.Path), "
                        f"not {type(value).__name__}")
    if not os.fspath(value):
        raise ValueError(f"{name} must be a non-empty path")
    return value


def check_version(value):
    """None or a version number >= 1."""
    return None if value is None else check_int("version", value, minimum=1)


def is_sequence(value):
    return (hasattr(value, "__iter__") and hasattr(value, "__len__")
            and not isinstance(value, (str, bytes, Mapping)))


def _check_int_leaves(name, value, depth=0):
    """A sequence (of sequences) of integers, as shapes and layer widths are."""
    if depth > 2 or not is_sequence(value):
        raise WrongTypeError(f"{name}={_show(value)} must be a tuple of integers")
    for item in value:
        if is_sequence(item):
            _check_int_leaves(name, item, depth + 1)
        elif not is_int(item):
            raise WrongTypeError(f"{name}={_show(value)} must be a tuple of integers, but holds "
                            f"{_show(item, 20)} ({type(item).__name__})")


def check_like_default(name, value, default):
    """Type-check `value` against the kind of the argument's default value.

    bool -> a bool; int -> an integer; float -> a finite number; str -> a str or None;
    tuple -> a sequence of integers (or of such sequences); None -> anything, but a number must
    be finite. Ranges (latent_dim >= 1, beta >= 0, ...) are each family's own checks.
    """
    if isinstance(default, bool):
        if not isinstance(value, (bool, np.bool_)):
            raise WrongTypeError(f"{name}={_show(value)} must be True or False")
    elif is_int(default):
        if not is_int(value):
            raise WrongTypeError(f"{name}={_show(value)} must be an integer, "
                             f"not {type(value).__name__}")
    elif is_real(default):
        check_number(name, value)
    elif isinstance(default, str):
        if value is not None and not isinstance(value, str):
            raise WrongTypeError(f"{name}={_show(value)} must be a string, "
                                 f"not {type(value).__name__}")
    elif isinstance(default, (tuple, list)):
        _check_int_leaves(name, value)
    elif default is None and is_real(value) and not math.isfinite(value):
        raise ValueError(f"{name}={_show(value)} must be a finite number")


#: what tf_keras.Model's constructor itself accepts, besides a family's own arguments
_KERAS_ARGUMENTS = ("trainable", "dtype", "dynamic", "autocast")


def constructor_defaults(cls, base):
    """{argument: default} of `cls`'s constructor, read from its `__init__` and its parents' up
    to `base` (a variant that forwards `*args, **kwargs` inherits its parent's arguments), and
    the names its positional arguments go to (the first signature without `*args`)."""
    defaults, positional = {}, None
    for klass in cls.__mro__:
        if klass is base:
            break
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())[1:]
        for p in params:
            if p.default is not p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                defaults.setdefault(p.name, p.default)
        if positional is None and not any(p.kind == p.VAR_POSITIONAL for p in params):
            positional = [p.name for p in params if p.kind == p.POSITIONAL_OR_KEYWORD]
    return defaults, positional or []


def check_constructor_arguments(cls, base, args, kwargs):
    """Type-check a model constructor's arguments against their defaults (see
    `check_like_default`) before it runs, so that every family gets these checks without writing
    them; an argument no constructor in the chain takes is an error too. Returns the arguments
    given, by name."""
    defaults, positional = constructor_defaults(cls, base)
    named = dict(zip(positional, args))
    named.update(kwargs)
    for name, value in named.items():
        if name in defaults:
            check_like_default(name, value, defaults[name])
        elif name not in _KERAS_ARGUMENTS and name not in positional:
            raise WrongTypeError(f"{cls.__name__}() got an unexpected argument {name!r}; it takes "
                                 f"{', '.join(sorted(defaults))}")
    return named


def as_array(value):
    """`value` (a tensor, an array or nested lists) as a numpy array."""
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    return np.asarray(value)


def lossless_cast(array, dtype):
    """`array` as `dtype` when that changes no value a caller meant, else None: floats within
    the float type's range (rounded to the nearest, as TF Serving's JSON parser rounds every
    number), integers that the float type holds exactly, integers within an integer type's
    range. Booleans, strings and the like never cast.

        lossless_cast(np.array([0.5]), np.float32).dtype     # float32
        lossless_cast(np.array([0.5]), np.int64)             # None: a fraction is not a seed
    """
    dtype = np.dtype(dtype)
    if array.dtype == dtype:
        return array
    if array.dtype.kind not in "fiu" or dtype.kind not in "fiu":
        return None
    if dtype.kind == "f" and array.dtype.kind == "f":
        finite = array[np.isfinite(array)]
        if finite.size and np.abs(finite).max() > np.finfo(dtype).max:
            return None
        return array.astype(dtype)
    if dtype.kind == "f":  # integers to a float type: exactly, or not at all
        exact = 2 ** (np.finfo(dtype).nmant + 1)
        return array.astype(dtype) if not array.size or np.abs(array).max() <= exact else None
    if array.dtype.kind == "f":
        return None
    info = np.iinfo(dtype)
    if array.size and (array.min() < info.min or array.max() > info.max):
        return None
    return array.astype(dtype)


def takes(where, name, shape, dtype=None):
    """The start of every input error: "encode() takes x of shape [batch, 8, 8, 1] and dtype
    float32". `shape` lists the sizes, None for any (the first is the batch); None: any shape."""
    if shape is None:
        text = "any shape"
    else:
        text = "[" + ", ".join("batch" if size is None and i == 0 else "?" if size is None
                               else str(size) for i, size in enumerate(shape)) + "]"
    return f"{where} takes {name} of shape {text}" + (
        f" and dtype {np.dtype(dtype).name}" if dtype is not None else "")


def conform(value, shape, dtype, where, name):
    """The one input check of every way into a model (`fit` and `evaluate`, a loaded export's
    signatures, the serving clients): `value` as a numpy array of `dtype` whose shape fits
    `shape` (None for any size; None: any shape), cast only where no value changes
    (`lossless_cast`); anything else is refused before TensorFlow sees it, with one set of
    messages that start with `takes(where, name, shape, dtype)`.

        conform(images, [None, 28, 28, 1], np.float32, "encode()", "x")
    """
    dtype = np.dtype(dtype)
    what = takes(where, name, shape, dtype)
    try:
        array = as_array(value)
    except (ValueError, TypeError) as error:  # ragged nested lists, odd objects
        raise ValueError(f"{what}; got something that is not an array: {error}") from None
    needs_integers = " (integers are needed)" if dtype.kind in "iu" else ""
    if array.dtype.kind not in "fiu" or (dtype.kind in "iu" and array.dtype.kind == "f"):
        raise WrongTypeError(f"{what}; got dtype {array.dtype}{needs_integers}")
    if shape is not None and (array.ndim != len(shape) or any(
            want is not None and want != have for want, have in zip(shape, array.shape))):
        hint = " (one example? add a batch axis: x[None])" if (
            len(shape) > 1 and array.ndim == len(shape) - 1 and all(
                want is None or want == have for want, have in zip(shape[1:], array.shape))) \
            else ""
        raise ValueError(f"{what}; got shape {list(array.shape)}{hint}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError(f"{what}; got non-finite values (NaN or inf)")
    cast = lossless_cast(array, dtype)
    if cast is None:
        raise ValueError(f"{what}; got {array.dtype.name} values that {dtype.name} cannot hold "
                         f"(convert them yourself if that is meant)")
    return cast


def by_input_name(inputs, names, where):
    """`inputs` as a dict by input name: a dict must name exactly `names`; a lone value stands
    for the one input of a signature that has one."""
    names = sorted(names)
    if not isinstance(inputs, dict):
        if len(names) != 1:
            raise ValueError(f"{where} takes inputs {names}: pass a dict {{name: array}}")
        return {names[0]: inputs}
    if set(inputs) != set(names):
        raise ValueError(f"{where} takes inputs {names}; got {sorted(inputs)}")
    return inputs


def check_same_rows(arrays, where):
    """Inputs given together, {name: array}, must have as many rows (their first axis)."""
    rows = {name: len(array) for name, array in arrays.items() if np.ndim(array)}
    if len(set(rows.values())) > 1:
        raise ValueError(f"{where}: every input needs the same batch size; got {rows}")


def non_finite_variables(variables):
    """The names of the variables (or arrays with a `name`) holding a NaN or an infinity."""
    return [v.name for v in variables if not np.all(np.isfinite(as_array(v)))]


def check_examples(x, data_shape, where, unit_interval=False):
    """Check what a model is given to train or evaluate on, before TensorFlow sees it.

    Arrays (numpy, lists, tensors) go through `conform` as float32 [n >= 1, *data_shape], and
    must be in [0, 1] when `unit_interval` (Bernoulli and discretized-logistic likelihoods). A
    tf.data.Dataset must yield batches [batch, *data_shape] of numbers (of (x, ...) tuples: x is
    checked). Other inputs (generators, Keras Sequences) pass through to Keras.
    """
    shape = (None, *data_shape)
    what = takes(f"{where}()", "examples", shape, np.float32)
    if x is None:
        raise ValueError(f"{what}; got None (pass an array of examples or a tf.data.Dataset)")
    element_spec = getattr(x, "element_spec", None)
    if element_spec is not None:  # a tf.data.Dataset
        _check_element_spec(element_spec, data_shape, what)
        return
    if not (hasattr(x, "numpy") or isinstance(x, (np.ndarray, list, tuple))):
        return  # a generator or a Keras Sequence: Keras checks those
    array = conform(x, shape, np.float32, f"{where}()", "examples")
    if array.shape[0] == 0:
        raise ValueError(f"{what}; got no examples (shape {list(array.shape)})")
    if unit_interval and (array.min() < 0 or array.max() > 1):
        raise ValueError(f"{what} with values in [0, 1] for this likelihood; got values in "
                         f"[{array.min()}, {array.max()}] (8-bit images? divide by 255)")


def _check_element_spec(spec, data_shape, what):
    if isinstance(spec, (tuple, list)):
        spec = spec[0]
    if isinstance(spec, Mapping) or not hasattr(spec, "shape") or not hasattr(spec, "dtype"):
        return  # dicts and nests: left to Keras
    if not (spec.dtype.is_floating or spec.dtype.is_integer or spec.dtype.is_bool):
        raise WrongTypeError(f"{what}; the dataset yields dtype {spec.dtype.name}")
    shape = spec.shape
    if shape.rank is None:
        return
    if shape.rank == len(data_shape) and shape.is_compatible_with(data_shape):
        raise ValueError(f"{what}; the dataset yields single examples of shape "
                         f"{shape.as_list()}: batch it, e.g. dataset.batch(128)")
    if shape.rank != len(data_shape) + 1 or not shape[1:].is_compatible_with(data_shape):
        raise ValueError(f"{what}; the dataset yields {shape.as_list()}")
