"""Load an exported model back, with TensorFlow alone, and call its signatures with numpy arrays.
LiteRT and ONNX exports (tfvae.formats) load the same way, run by their own runtimes, without
TensorFlow (tfvae.runtimes).

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

from tfvae import cards, formats, validation
from tfvae.signatures import ALIASES, SignatureMethods, get, input_names, names

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


def versions(model_dir):
    """The integer versions present under `model_dir`, ascending (temporary folders excluded)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


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
    if formats.format_of(path) is not None:
        if version is not None and path.name != str(version):
            raise ExportNotFoundError(f"{path} is version {path.name}, not {version}")
        return path
    available = versions(path)
    if not available:
        raise ExportNotFoundError(f"{path} holds no numbered version folder with an export "
                                  f"(a saved_model.pb, model.tflite or encode.onnx)")
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
    if formats.format_of(path) is None:
        raise InvalidExportError(f"{path} has no saved_model.pb, model.tflite or encode.onnx: "
                                 f"an incomplete or corrupt export")
    return path


def _is_name(path_or_name):
    # A bare name has no separator as given: "./x" and "saved_models/x" are paths. A Path
    # drops "./" (Path("./x") is Path("x")), so there a one-part relative path is a name, as before.
    text = os.fsdecode(os.fspath(path_or_name))
    return text not in ("", ".", "..") and not any(
        separator in text for separator in ("/", os.sep, os.altsep) if separator)


def _shipped_listing():
    try:
        shipped = shipped_models()
    except (ExportNotFoundError, InvalidExportError):  # no zoo here: the path is what failed
        return ""
    return f", or one of the shipped models: {', '.join(shipped)}" if shipped else ""


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
    """Load an export (the latest version unless `version` is given): `path_or_name` is an
    export's folder, or a shipped model's name (see `resolve`). A SavedModel gives a
    `LoadedModel`, run by TensorFlow; a LiteRT or ONNX export a `tfvae.runtimes.LiteRTModel`
    or `ONNXModel`, run by its runtime without TensorFlow. All have the same methods.

        tfvae.load("vae_mnist").sample(4)["x"].shape        # (4, 28, 28, 1)

    The version is loaded as it is: a damaged latest version raises InvalidExportError, naming
    it, rather than quietly loading an older one."""
    validation.check_path("path_or_name", path_or_name)
    validation.check_version(version)
    path = resolve(path_or_name, version)
    format = formats.format_of(path)
    if format == "saved_model":
        return LoadedModel(path)
    from tfvae import runtimes

    return {"litert": runtimes.LiteRTModel, "onnx": runtimes.ONNXModel}[format](path)


class Export(SignatureMethods):
    """An export of any format: its `path`, `version` and model `card`, and `run`, which checks
    a signature's inputs and calls the format's runtime (`_call`, which a subclass defines, as
    it defines `signature_inputs`). `encode`, `decode`, `sample`, `reconstruct` (also
    `model(x)`), `score` and `log_likelihood` take numpy arrays and return dicts of them.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.version = int(self.path.name) if self.path.name.isdigit() else None
        try:
            self.card = cards.read(self.path)
        except ValueError as error:
            raise InvalidExportError(str(error)) from None

    def __repr__(self):
        name = self.card["model"] if self.card else "model"
        return (f"<{type(self).__name__} {name} from {self.path} "
                f"signatures={sorted(self.signature_names())}>")

    def __call__(self, x):
        """The reconstruction of a batch of inputs, as `reconstruct(x)`."""
        return self.reconstruct(x)

    def signature_names(self):
        """The names of the signatures this export has."""
        raise NotImplementedError

    def signature_inputs(self, signature):
        """{input name: (shape with None for the batch, numpy dtype)} of a signature."""
        raise NotImplementedError

    def _call(self, signature, arrays):
        """Run signature on checked numpy arrays (a dict by input name): a dict of numpy arrays."""
        raise NotImplementedError

    def _run_signature(self, name, inputs):
        return self.run(name, _without_unknown_seeds(inputs, self.signature_inputs(name)))

    def run(self, signature, inputs):
        """Check `inputs` (a dict by input name, or the value of a signature's one input)
        against the signature and run it; a dict of numpy arrays."""
        if signature not in self.signature_names():
            why = ((self.card or {}).get("signatures_left_out") or {}).get(signature)
            raise KeyError(f"no signature {signature!r}" + (f" ({why})" if why else "") +
                           f"; this export has {sorted(self.signature_names())}")
        specs = self.signature_inputs(signature)
        inputs = validation.by_input_name(inputs, specs, f"{signature}()")
        arrays = {name: validation.conform(inputs[name], shape, dtype, f"{signature}()", name)
                  for name, (shape, dtype) in specs.items()}
        validation.check_same_rows(arrays, f"{signature}()")
        return self._call(signature, arrays)


class ConvertedExport(Export):
    """A LiteRT or ONNX export: the signatures of the contract (tfvae.signatures) and their
    aliases, with the shapes the model card gives."""

    def __init__(self, path):
        super().__init__(path)
        if not self.card or "input_shape" not in self.card or "latent_shape" not in self.card:
            raise InvalidExportError(f"{self.path} has no model card with input_shape and "
                                     f"latent_shape: not a tfvae export")

    def signature_names(self):
        left_out = self.card.get("signatures_left_out") or {}
        return tuple(n for n in names() if ALIASES.get(n, n) not in left_out)

    def signature_inputs(self, signature):
        return {i.name: (i.shape(self.card["input_shape"], self.card["latent_shape"]),
                         np.dtype(i.dtype)) for i in get(signature).inputs}

    def _call(self, signature, arrays):
        return self._run_converted(ALIASES.get(signature, signature), arrays)

    def _run_converted(self, signature, arrays):
        raise NotImplementedError


class LoadedModel(Export):
    """A SavedModel export, run by TensorFlow: `signatures` are its concrete functions.

        model = LoadedModel("runs/vae_digits/1")
        model.sample(3)["x"].shape       # (3, *input_shape): seeds 0, 1, 2
    """

    def __init__(self, path):
        import tensorflow as tf

        super().__init__(path)
        try:
            self._saved = tf.saved_model.load(str(self.path))
        except Exception as error:  # TF raises several types for a damaged file
            raise InvalidExportError(f"could not load the SavedModel in {self.path}: "
                                     f"{type(error).__name__}: {str(error).splitlines()[0][:300]}") from None
        self.signatures = dict(self._saved.signatures)

    def signature_names(self):
        return self.signatures

    def input_specs(self, signature):
        """The TensorSpecs of a signature's inputs, by name."""
        return dict(self.signatures[signature].structured_input_signature[1])

    def input_spec(self, signature):
        """The TensorSpec of a signature's first input ("x", "z" or "seed")."""
        return self.input_specs(signature)[input_names(signature)[0]] \
            if input_names(signature) else next(iter(self.input_specs(signature).values()))

    def signature_inputs(self, signature):
        return {name: (spec.shape.as_list(), spec.dtype.as_numpy_dtype)
                for name, spec in self.input_specs(signature).items()}

    def _call(self, signature, arrays):
        import tensorflow as tf

        outputs = self.signatures[signature](**{k: tf.constant(v) for k, v in arrays.items()})
        return {key: tensor.numpy() for key, tensor in outputs.items()}


def _without_unknown_seeds(inputs, taken):
    """`inputs` without a seed or k that the signature does not take: exports written before
    the signatures took seeds draw with TensorFlow's own random ops."""
    return {name: value for name, value in inputs.items()
            if name in taken or name not in ("seed", "k")}
