"""Load an exported model back, with TensorFlow alone, and call its signatures with numpy arrays.

    model = tfvae.load("runs/vae_digits")                  # an export of yours: the latest version
    z = model.encode(images)["mean"]
    images = model.sample([0, 1, 2])["x"]
    terms = model.score(images)                            # {"loss", "elbo", "kl", ...}
    zoo = tfvae.load("vae_mnist")                          # a shipped model, by name

Inputs are checked against each signature before TensorFlow sees them, so a wrong shape, dtype or
a NaN gets an error that names what was expected instead of a graph-execution trace.

A bare name ("vae_mnist") means a shipped model: one listed in the zoo's manifest,
saved_models/zoo.json, never some other folder that happens to sit in saved_models/ (a user's
export, say). Any path ("saved_models/vae_digits", "./x") loads whatever export is there.
"""
import json
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfvae import cards, validation
from tfvae.exporting import versions
from tfvae.signatures import SignatureMethods, input_names

#: the zoo's folder when tfvae runs from a checkout (e.g. `pip install -e .`): the repository's
#: saved_models/. After a plain `pip install .` this is inside site-packages, where no zoo is.
SHIPPED_MODELS = Path(__file__).resolve().parent.parent / "saved_models"
#: an environment variable naming the zoo's folder instead (relative to the working directory
#: or absolute), e.g. TFVAE_SAVED_MODELS=path/to/tfvae/saved_models
ENVIRONMENT_VARIABLE = "TFVAE_SAVED_MODELS"
#: the file in the zoo's folder listing the shipped models: name -> its family ("model"),
#: "class", "description", "input_shape", "dataset" and the "versions" shipped
MANIFEST = "zoo.json"
REPOSITORY = "https://github.com/tfvae/tfvae"


class ExportNotFoundError(FileNotFoundError):
    """No export at the given path or name, or not the requested version."""


class InvalidExportError(ValueError):
    """The folder exists but does not hold a loadable SavedModel."""


def shipped_root():
    """The folder shipped models are looked up in: $TFVAE_SAVED_MODELS if set, else SHIPPED_MODELS.

        tfvae.loading.shipped_root() / "vae_mnist"       # the folder tfvae.load("vae_mnist") reads
    """
    # Read at every call, not at import, so that setting the variable (or patching the
    # attribute) takes effect at once.
    return Path(os.environ.get(ENVIRONMENT_VARIABLE) or SHIPPED_MODELS)


def manifest(root=None):
    """The zoo's manifest: {name: {"model", "class", "description", "input_shape", "dataset",
    "versions"}}, from zoo.json in `root` (by default `shipped_root()`).

        tfvae.loading.manifest()["vae_mnist"]["input_shape"]     # [28, 28, 1]

    Raises ExportNotFoundError, saying where the shipped models live and how to point tfvae at
    them, when there is no manifest (e.g. after a non-editable `pip install .`), and
    InvalidExportError when the manifest is damaged.
    """
    root = shipped_root() if root is None else Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise ExportNotFoundError(_zoo_not_found(root))
    try:
        models = json.loads(path.read_text())["models"]
        for name, entry in models.items():
            # Only bare names: an entry must not reach outside the zoo's folder.
            numbers = entry["versions"]
            if not _is_name(name) or not numbers or not all(
                    type(v) is int and v >= 1 for v in numbers):
                raise ValueError(f"bad entry {name!r}: {entry!r}")
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
        raise InvalidExportError(f"the zoo's manifest {path} is damaged: "
                                 f"{type(error).__name__}: {error}") from None
    return models


def shipped_models(root=None):
    """The names of the shipped models, sorted: the manifest's, not every folder in saved_models/.

        tfvae.loading.shipped_models()       # ["ae_mnist", ..., "vae_mnist"]

    `root` is the zoo's folder (by default `shipped_root()`). Raises as `manifest()` does when
    the zoo is not found.
    """
    return sorted(manifest(root))


def resolve(path_or_name, version=None):
    """The folder of one version: `path_or_name` is a version folder, a model folder holding
    numbered versions, or the name of a shipped model (see `shipped_models()`).

        resolve("vae_mnist")                 # <zoo>/vae_mnist/1: the latest version shipped
        resolve("runs/vae_digits", 2)        # runs/vae_digits/2

    A bare name that exists in the working directory is that folder, as any path is.
    """
    path = Path(path_or_name)
    if not path.exists() and _is_name(path_or_name):
        return _resolve_shipped(os.fspath(path_or_name), version)
    if not path.exists():
        raise ExportNotFoundError(
            f"no export at {str(path_or_name)!r}: give a model folder (e.g. saved_models/NAME) or "
            f"a version folder" + _shipped_listing())
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
    return _version_folder(path / str(chosen))


def _resolve_shipped(name, version):
    root = shipped_root()
    try:
        models = manifest(root)
    except ExportNotFoundError as error:
        raise ExportNotFoundError(
            f"no export at {name!r}: give a model folder (e.g. saved_models/NAME) or a version "
            f"folder. If {name!r} is a shipped model: {error}") from None
    folder = root / name
    if name not in models:
        hint = ""
        if folder.exists():  # a user's export beside the zoo: say how to load it instead
            hint = (f"; {_shown(folder)} is not one of them (an export of yours?): load it by "
                    f"its path, tfvae.load({str(_shown(folder))!r})")
        raise ExportNotFoundError(
            f"no export at {name!r}: give a model folder (e.g. saved_models/NAME) or a version "
            f"folder, or one of the shipped models: {', '.join(sorted(models)) or '(none)'}{hint}")
    # Only the versions shipped: one a user exported into the same folder is theirs, by path.
    shipped = sorted(models[name]["versions"])
    chosen = shipped[-1] if version is None else int(version)
    if chosen not in shipped:
        raise ExportNotFoundError(
            f"the zoo ships {name} as version {', '.join(map(str, shipped))}, not version {version}"
            + (f"; {_shown(folder)}/{version} is not shipped: load it by its path, "
               f"tfvae.load({str(_shown(folder))!r}, version={version})"
               if (folder / str(version)).exists() else ""))
    path = folder / str(chosen)
    if not path.is_dir():
        raise ExportNotFoundError(
            f"{_shown(path)} is missing: the zoo's manifest lists {name} version {chosen}; "
            f"restore saved_models/ from the repository ({REPOSITORY}) or retrain it "
            f"(python bench/train_zoo.py --models {models[name].get('model', 'NAME')})")
    return _version_folder(path)


def _version_folder(path):
    if not (path / "saved_model.pb").exists():
        raise InvalidExportError(f"{path} has no saved_model.pb: an incomplete or corrupt export")
    return path


def _is_name(path_or_name):
    # A bare name has no separator as given: "./x" and "saved_models/x" are paths. A Path
    # drops "./" (Path("./x") is Path("x")), so there a one-part relative path is a name, as before.
    text = os.fsdecode(os.fspath(path_or_name))
    return text not in ("", ".", "..") and not any(
        separator in text for separator in ("/", os.sep, os.altsep) if separator)


def _shipped_listing():
    try:
        names = shipped_models()
    except (ExportNotFoundError, InvalidExportError):  # no zoo here: the path is what failed
        return ""
    return f", or one of the shipped models: {', '.join(names)}" if names else ""


def _shown(path):
    # Relative to the working directory when inside it: the form a user would type.
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(os.getcwd()))
    except ValueError:
        return path


def _zoo_not_found(root):
    if os.environ.get(ENVIRONMENT_VARIABLE):
        where = f"{ENVIRONMENT_VARIABLE}={os.environ[ENVIRONMENT_VARIABLE]} holds no {MANIFEST}"
    else:
        where = (f"there is no {MANIFEST} in {root} (a non-editable `pip install .` leaves the "
                 f"models out)")
    return (f"the shipped models live in the saved_models/ folder of the tfvae repository "
            f"({REPOSITORY}), and {where}. Clone the repository, then load one by its path, "
            f"tfvae.load(\"path/to/tfvae/saved_models/vae_mnist\"), or point tfvae at the "
            f"folder: export {ENVIRONMENT_VARIABLE}=path/to/tfvae/saved_models")


def load(path_or_name, version=None):
    """Load an export (the latest version unless `version` is given) as a `LoadedModel`:
    `path_or_name` is an export's folder, or a shipped model's name (see `resolve`).

        tfvae.load("vae_mnist").sample(4)["x"].shape        # (4, 28, 28, 1)

    The version is loaded as it is: a damaged latest version raises InvalidExportError, naming
    it, rather than quietly loading an older one."""
    validation.check_path("path_or_name", path_or_name)
    validation.check_version(version)
    return LoadedModel(resolve(path_or_name, version))


class LoadedModel(SignatureMethods):
    """An exported model: `encode`, `decode`, `sample`, `reconstruct` (also `model(x)`) and
    `score` take numpy arrays (or tensors) and return dicts of numpy arrays; `run` calls any
    signature by name. `card` is the model card saved with the export.

        model = LoadedModel("runs/vae_digits/1")
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
        try:
            self.card = cards.read(self.path)
        except ValueError as error:
            raise InvalidExportError(str(error)) from None

    def __repr__(self):
        name = self.card["model"] if self.card else "model"
        return f"<LoadedModel {name} from {self.path} signatures={sorted(self.signatures)}>"

    def input_specs(self, signature):
        """The TensorSpecs of a signature's inputs, by name."""
        return dict(self.signatures[signature].structured_input_signature[1])

    def input_spec(self, signature):
        """The TensorSpec of a signature's first input ("x", "z" or "seed")."""
        return self.input_specs(signature)[input_names(signature)[0]] \
            if input_names(signature) else next(iter(self.input_specs(signature).values()))

    def __call__(self, x):
        """The reconstruction of a batch of inputs, as `reconstruct(x)`."""
        return self.reconstruct(x)

    def _run_signature(self, name, inputs):
        return self.run(name, _without_unknown_seeds(inputs, self.input_specs(name)))

    def run(self, signature, inputs):
        """Check `inputs` (a dict by input name, or the value of a signature's one input)
        against the signature and run it; a dict of numpy arrays."""
        if signature not in self.signatures:
            raise KeyError(f"no signature {signature!r}; this export has {sorted(self.signatures)}")
        specs = self.input_specs(signature)
        if not isinstance(inputs, dict):
            if len(specs) != 1:
                raise ValueError(f"{signature}() takes inputs {sorted(specs)}: pass a dict "
                                 f"{{name: array}}")
            inputs = {next(iter(specs)): inputs}
        if set(inputs) != set(specs):
            raise ValueError(f"{signature}() takes inputs {sorted(specs)}; got {sorted(inputs)}")
        arrays = {name: validation.conform(inputs[name], spec.shape.as_list(),
                                           spec.dtype.as_numpy_dtype, f"{signature}()", name)
                  for name, spec in specs.items()}
        validation.check_same_rows(arrays, f"{signature}()")
        outputs = self.signatures[signature](**{k: tf.constant(v) for k, v in arrays.items()})
        return {key: tensor.numpy() for key, tensor in outputs.items()}


def _without_unknown_seeds(inputs, taken):
    """`inputs` without a seed or k that the signature does not take: exports written before
    the signatures took seeds draw with TensorFlow's own random ops."""
    return {name: value for name, value in inputs.items()
            if name in taken or name not in ("seed", "k")}
