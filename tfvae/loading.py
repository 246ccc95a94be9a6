"""Load an exported model back, with TensorFlow alone, and call its signatures with numpy arrays.

    model = tfvae.load("saved_models/vae_digits")          # the latest version
    z = model.encode(images)["mean"]
    images = model.sample([0, 1, 2])["x"]
    terms = model.score(images)                            # {"loss", "elbo", "kl", ...}

Inputs are checked against each signature before TensorFlow sees them, so a wrong shape, dtype or
a NaN gets an error that names what was expected instead of a graph-execution trace.
"""
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfvae import validation
from tfvae.exporting import CARD_FILENAME, versions
from tfvae.signatures import SignatureMethods, as_array

#: where `load("vae_mnist")` looks for a shipped model: the repository's saved_models/ folder.
SHIPPED_MODELS = Path(__file__).resolve().parent.parent / "saved_models"


class ExportNotFoundError(FileNotFoundError):
    """No export at the given path or name, or not the requested version."""


class InvalidExportError(ValueError):
    """The folder exists but does not hold a loadable SavedModel."""


def resolve(path_or_name, version=None):
    """The folder of one version: `path_or_name` is a version folder, a model folder holding
    numbered versions, or the name of a model in the shipped saved_models/."""
    path = Path(path_or_name)
    if not path.exists() and len(path.parts) == 1 and (SHIPPED_MODELS / path).exists():
        path = SHIPPED_MODELS / path
    if not path.exists():
        shipped = sorted(p.name for p in SHIPPED_MODELS.iterdir() if p.is_dir()) \
            if SHIPPED_MODELS.is_dir() else []
        raise ExportNotFoundError(
            f"no export at {str(path_or_name)!r}: give a model folder (e.g. saved_models/NAME) or "
            f"a version folder" + (f", or one of the shipped models: {', '.join(shipped)}" if shipped else ""))
    if (path / "saved_model.pb").exists():
        if version is not None and path.name != str(version):
            raise ExportNotFoundError(f"{path} is version {path.name}, not {version}")
        return path
    available = versions(path)
    if not available:
        raise ExportNotFoundError(f"{path} holds no numbered version folder with a saved_model.pb")
    chosen = available[-1] if version is None else int(version)
    if chosen not in available:
        raise ExportNotFoundError(f"{path} has no version {version}; it has {available}")
    path = path / str(chosen)
    if not (path / "saved_model.pb").exists():
        raise InvalidExportError(f"{path} has no saved_model.pb: an incomplete or corrupt export")
    return path


def load(path_or_name, version=None):
    """Load an export (the latest version unless `version` is given) as a `LoadedModel`.

    The version is loaded as it is: a damaged latest version raises InvalidExportError, naming
    it, rather than quietly loading an older one."""
    validation.check_path("path_or_name", path_or_name)
    validation.check_version(version)
    return LoadedModel(resolve(path_or_name, version))


class LoadedModel(SignatureMethods):
    """An exported model: `encode`, `decode`, `sample`, `reconstruct` (also `model(x)`) and
    `score` take numpy arrays (or tensors) and return dicts of numpy arrays; `run` calls any
    signature by name. `card` is the model card saved with the export.

        model = LoadedModel("saved_models/vae_digits/1")
        model.sample(3)["x"].shape       # (3, *input_shape): seeds 0, 1, 2
    """

    def __init__(self, path):
        self.path = Path(path)
        self.version = int(self.path.name) if self.path.name.isdigit() else None
        try:
            self._saved = tf.saved_model.load(str(self.path))
        except Exception as error:  # TF raises several types for a damaged file
            raise InvalidExportError(f"could not load the SavedModel in {self.path}: "
                                     f"{type(error).__name__}: {str(error).splitlines()[0][:300]}") from None
        self.signatures = dict(self._saved.signatures)
        card_file = self.path / "assets" / CARD_FILENAME
        try:
            self.card = json.loads(card_file.read_text()) if card_file.exists() else None
        except (ValueError, UnicodeDecodeError) as error:
            raise InvalidExportError(f"the model card {card_file} is damaged: {error}") from None

    def __repr__(self):
        name = self.card["model"] if self.card else "model"
        return f"<LoadedModel {name} from {self.path} signatures={sorted(self.signatures)}>"

    def input_spec(self, signature):
        """The TensorSpec of a signature's single input."""
        (spec,) = self.signatures[signature].structured_input_signature[1].values()
        return spec

    def __call__(self, x):
        """The reconstruction of a batch of inputs, as `reconstruct(x)`."""
        return self.reconstruct(x)

    def _run_signature(self, name, value):
        return self.run(name, value)

    def run(self, signature, value):
        """Check `value` against the signature's input and run it; a dict of numpy arrays."""
        if signature not in self.signatures:
            raise KeyError(f"no signature {signature!r}; this export has {sorted(self.signatures)}")
        spec = self.input_spec(signature)
        tensor = _checked(value, spec, signature)
        outputs = self.signatures[signature](**{spec.name: tensor})
        return {key: tensor.numpy() for key, tensor in outputs.items()}


def _checked(value, spec, signature):
    """`value` as a tensor matching `spec`, or a clear TypeError/ValueError."""
    expected = "[batch, " + ", ".join(str(d) for d in spec.shape[1:]) + "]"
    what = f"{signature}() takes {spec.name} of shape {expected} and dtype {spec.dtype.name}"
    try:
        array = as_array(value)
    except (ValueError, TypeError) as error:  # ragged nested lists, odd objects
        raise ValueError(f"{what}; got something that is not an array: {error}") from None
    if spec.dtype.is_floating:
        if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
            raise TypeError(f"{what}; got dtype {array.dtype}")
    elif array.dtype.kind not in "iu":
        raise TypeError(f"{what}; got dtype {array.dtype} (integers are needed)")
    if not spec.shape.is_compatible_with(array.shape):
        hint = ""
        if tuple(array.shape) == tuple(spec.shape[1:]):
            hint = " (one example? add a batch axis: x[None])"
        raise ValueError(f"{what}; got shape {list(array.shape)}{hint}")
    if spec.dtype.is_floating and not np.all(np.isfinite(array)):
        raise ValueError(f"{what}; got non-finite values (NaN or inf)")
    if spec.dtype.is_floating and array.size and np.abs(array).max() > spec.dtype.max:
        raise ValueError(f"{what}; got values too large for {spec.dtype.name}")
    if spec.dtype.is_integer and array.size and (array.max() > spec.dtype.max
                                                 or array.min() < spec.dtype.min):
        raise ValueError(f"{what}; got values outside the {spec.dtype.name} range")
    return tf.convert_to_tensor(array, dtype=spec.dtype)
