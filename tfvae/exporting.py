"""Export a trained model in TF Serving's `<name>/<version>/` layout: a SavedModel, or the
same signatures as LiteRT or ONNX (`tfvae.formats`).

    path = export(model, "saved_models/vae_digits", data="digits", metrics={"test_elbo": -30.5})
    # -> saved_models/vae_digits/1, then 2, ...
    export(model, "exports/vae_digits_litert", format="litert")   # .../1/model.tflite

The export module holds the model's variables and one `tf.function` per signature of the
contract in `tfvae.signatures` (`encode`, `decode`, `sample`, `reconstruct`, `score`, and
`serving_default` = `reconstruct`), each with a fixed, batch-major input signature. It tracks the
variables only, not the Keras objects, so the SavedModel loads and runs with TensorFlow alone: no
tfvae, TFP or tf_keras at serving time.

Each version also carries the model card (`assets/tfvae_card.json`) and TF Serving's warm-up
requests (`assets.extra/tf_serving_warmup_requests`, see `tfvae.warmup`).
"""
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import tensorflow as tf

from tfvae import cards, formats, validation, warmup
from tfvae.cards import CARD_FILENAME
from tfvae.loading import versions
from tfvae.signatures import ALIASES, SIGNATURES, input_specs
from tfvae.validation import WrongTypeError

_TEMPORARY_PREFIX = ".tmp-"


class ExportModule(tf.Module):
    """Wraps a trained tfvae model in serving functions, one attribute per signature of
    `tfvae.signatures.SIGNATURES`; see the module docstring.

        module = ExportModule(model)
        tf.saved_model.save(module, "some/folder", signatures=module.signatures())
    """

    def __init__(self, model, card_path=None):
        super().__init__(name="tfvae_export")
        # Variables only: tracking the Keras model would make tf.saved_model.save serialize its
        # Keras object graph (and trace every layer) too.
        # The trained state (weights, batch-norm statistics, a fitted code density), in the
        # model's own order, which tfvae.models.from_pretrained reads back; not the metrics.
        self.model_variables = list(model.state_variables())
        for name, signature in SIGNATURES.items():
            specs = input_specs(name, model.input_shape, model.latent_shape)
            setattr(self, name, _serving_function(getattr(model, signature.method), specs))
        if card_path is not None:
            self.card = tf.saved_model.Asset(str(card_path))

    def signatures(self):
        """The functions by signature name, aliases included, for tf.saved_model.save."""
        functions = {name: getattr(self, name) for name in SIGNATURES}
        return {**{alias: functions[name] for alias, name in ALIASES.items()}, **functions}


def export(model, model_dir, *, format="saved_model", data=None, metrics=None,
           test_protocol=None, card=None, version=None):
    """Write `model` as the next version under `model_dir` (TF Serving's layout) and return the
    version's path.

    The SavedModel is written to a temporary sibling folder and renamed into place, so a crash
    never leaves a partial numbered version that TF Serving would try to load, and an existing
    version is never overwritten.

    Args:
        model: a trained tfvae model.
        model_dir: e.g. "saved_models/vae_mnist"; versions go in model_dir/1, model_dir/2, ...
            One model folder holds one format.
        format: "saved_model" (TF Serving), "litert" or "onnx" (see `tfvae.formats` for the
            files and what each needs installed).
        data: a description of the training data for the card (e.g. "mnist" or a dict).
        metrics: figures for the card, e.g. {"test_elbo": -98.1}.
        test_protocol: what those test figures scored, as fields `tfvae evaluate` reads (see
            tfvae.cards): {"dataset": "mnist", "split": "test", "binarize": "static",
            "seed": 0, "take": None, "k": 5000}.
        card: extra card entries.
        version: an explicit version number; it must not exist yet.
    """
    _check_arguments(model, model_dir, version, card)
    formats.check_format(format)
    if test_protocol is not None:
        test_protocol = cards.check_test_protocol(test_protocol)
    model_dir = Path(model_dir)
    if version is not None and (model_dir / str(int(version))).exists():
        raise FileExistsError(f"version {version} of {model_dir} exists")
    if model_dir.exists() and not model_dir.is_dir():
        raise FileExistsError(f"model_dir {model_dir} is a file, not a folder")
    _check_one_format(model_dir, format)
    bad = validation.non_finite_variables(model.variables)
    if bad:  # a server would answer with garbage
        raise ValueError(f"refusing to export: non-finite values in {', '.join(bad[:5])}")
    left_out = {}
    if format != "saved_model":  # the card says what the converted files hold
        left_out = dict(getattr(model, "tensorflow_only_signatures", {}))
        card = {**(card or {}), "format": format, "signatures_left_out": left_out}
    try:  # before anything is written: a value JSON cannot hold fails here
        card_text = json.dumps(cards.model_card(model, data, metrics, test_protocol, card),
                               indent=2)
    except (TypeError, ValueError) as error:
        raise WrongTypeError(f"export(): data, metrics and card must be JSON-serializable "
                             f"(numbers, strings, lists, dicts): {error}") from None
    model_dir.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(model_dir)
    # Host and pid in the name let a later export remove this folder if the process is killed.
    staging = Path(tempfile.mkdtemp(
        prefix=f"{_TEMPORARY_PREFIX}{socket.gethostname()}-{os.getpid()}-", dir=model_dir))
    try:
        # The card is copied into the SavedModel's assets/ under its own file name.
        (staging / "card").mkdir()
        card_file = staging / "card" / CARD_FILENAME
        card_file.write_text(card_text)
        module = ExportModule(model, card_path=card_file)
        saved = staging / "saved_model"
        tf.saved_model.save(module, str(saved), signatures=module.signatures())
        # TF Serving replays these requests when it loads the version, so the first client
        # request does not pay for graph initialisation.
        warmup.write_warmup_requests(saved, model_name=model_dir.name)
        if format != "saved_model":  # the same signatures converted, beside the same card
            published = staging / format
            (published / "assets").mkdir(parents=True)
            shutil.copy(card_file, published / "assets" / CARD_FILENAME)
            formats.write(format, module, saved, published, left_out=left_out)
            saved = published
        _sync(saved)  # on disk before it is named: a power cut cannot leave a partial version
        # Claim the next free version with an atomic rename; retry if a concurrent export won.
        while True:
            number = int(version) if version is not None else (max(versions(model_dir), default=0) + 1)
            target = model_dir / str(number)
            try:
                os.rename(saved, target)
                break
            except OSError:
                if version is not None or not target.exists():
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _sync(model_dir, files=False)
    return target


def convert(name_or_path, model_dir, *, format, version=None):
    """Export a shipped or exported model (`tfvae.models.from_pretrained`'s argument) again in
    `format` under `model_dir`, its card's data, figures and test protocol kept: the zoo as
    LiteRT or ONNX without storing a second copy of its weights in the repository.

        convert("vae_mnist", "exports/vae_mnist_onnx", format="onnx")  # .../vae_mnist_onnx/1
    """
    from tfvae.loading import resolve
    from tfvae.models import from_pretrained

    model = from_pretrained(name_or_path)  # refuses an export without a card
    source = cards.read(resolve(name_or_path))
    return export(model, model_dir, format=format, version=version,
                  data=source.get("data"), metrics=source.get("metrics"),
                  test_protocol=source.get("test_protocol"))


def _check_arguments(model, model_dir, version, card):
    needed = [s.method for s in SIGNATURES.values()] + ["input_shape", "latent_shape",
                                                        "state_variables", "get_config"]
    if not all(hasattr(model, name) for name in needed):
        raise WrongTypeError(f"export() takes a tfvae model (e.g. tfvae.models.get('vae', ...)), "
                             f"not {type(model).__name__}")
    validation.check_path("model_dir", model_dir)
    validation.check_version(version)
    if card is not None and not isinstance(card, dict):
        raise WrongTypeError(f"card must be a dict or None, not {type(card).__name__}")


def _check_one_format(model_dir, format):
    """A model folder holds versions of one format: TF Serving, given the folder, would fail on
    a version that is not a SavedModel, and the latest version would change format."""
    for number in versions(model_dir):
        present = formats.format_of(model_dir / str(number))
        if present is not None and present != format:
            raise FileExistsError(
                f"{model_dir} holds {present} exports (version {number}); export the {format} "
                f"format into a folder of its own, e.g. {model_dir}_{format}")


def _remove_abandoned_staging(model_dir):
    """Remove the staging folders of exports on this machine whose process is gone (killed
    before its `finally` ran). Folders of running exports, or of other machines, stay."""
    prefix = f"{_TEMPORARY_PREFIX}{socket.gethostname()}-"
    for path in model_dir.glob(prefix + "*"):
        pid = path.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _process_exists(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _sync(path, files=True):
    """fsync the files under `path` (when `files`) and the folders, so that what a rename
    publishes is complete on disk."""
    path = Path(path)
    folders = [path]
    if files:
        for item in path.rglob("*"):
            if item.is_dir():
                folders.append(item)
            else:
                with open(item, "rb") as handle:
                    os.fsync(handle.fileno())
    for folder in folders:
        try:
            handle = os.open(folder, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(handle)
        except OSError:  # some filesystems refuse to sync folders
            pass
        finally:
            os.close(handle)


def _serving_function(function, specs):
    """A tf.function of `function` with a fixed input signature that checks its inputs' shapes
    inside the graph. TF Serving's C++ session feeds tensors without checking them against the
    signature, and these graphs would silently accept some wrong shapes (a [2, 8, 8] or [2, 64]
    batch of 8x8x1 images is flattened; a [2, 8, 8, 2] batch gives 4 rows); with the check such a
    request gets INVALID_ARGUMENT naming both shapes."""
    def checked(*values):
        return function(*[tf.ensure_shape(value, spec.shape) for value, spec in zip(values, specs)])
    checked.__name__ = function.__name__  # names the graph function in error messages
    return tf.function(checked, input_signature=specs)
