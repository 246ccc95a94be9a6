"""Export a trained model as a SavedModel in TF Serving's `<name>/<version>/` layout.

The export module holds the model's variables and one `tf.function` per signature with a fixed,
batch-major input signature. It tracks the variables only, not the Keras objects, so the
SavedModel loads and runs with TensorFlow alone: no tfvae, TFP or tf_keras at serving time.

Signatures:
- `encode(x)`      -> `mean`, `stddev`, `z` (one posterior sample); families may add more;
- `decode(z)`      -> `x`, the likelihood's mean;
- `sample(seed)`   -> `z`, `x`: one sample per int64 seed, the same for the same seed;
- `reconstruct(x)` -> `x`; also `serving_default`.
"""
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import tensorflow as tf

CARD_FILENAME = "tfvae_card.json"
_TEMPORARY_PREFIX = ".tmp-"


class ExportModule(tf.Module):
    """Wraps a trained tfvae model in serving functions; see the module docstring."""

    def __init__(self, model, card_path=None):
        super().__init__(name="tfvae_export")
        # Variables only: tracking the Keras model would make tf.saved_model.save serialize its
        # Keras object graph (and trace every layer) too.
        self.model_variables = list(model.variables)
        x_spec = tf.TensorSpec([None, *model.input_shape], tf.float32, name="x")
        z_spec = tf.TensorSpec([None, *model.latent_shape], tf.float32, name="z")
        seed_spec = tf.TensorSpec([None], tf.int64, name="seed")

        self.encode = tf.function(model.encode_outputs, input_signature=[x_spec])
        self.decode = tf.function(model.decode_outputs, input_signature=[z_spec])
        self.sample = tf.function(model.sample_outputs, input_signature=[seed_spec])
        self.reconstruct = tf.function(model.reconstruct_outputs, input_signature=[x_spec])
        if card_path is not None:
            self.card = tf.saved_model.Asset(str(card_path))

    def signatures(self):
        return {"serving_default": self.reconstruct, "encode": self.encode,
                "decode": self.decode, "sample": self.sample, "reconstruct": self.reconstruct}


def versions(model_dir):
    """The integer versions present under `model_dir`, ascending (temporary folders excluded)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def model_card(model, data=None, metrics=None, extra=None):
    """The JSON-able card that travels inside the export: what the model is and how it did."""
    import tfvae

    card = {
        "model": getattr(model, "registry_name", type(model).__name__),
        "class": type(model).__name__,
        "config": _jsonable(model.get_config()),
        "data": data,
        "metrics": _jsonable(metrics or {}),
        "tfvae_version": tfvae.__version__,
        "tensorflow_version": tf.__version__,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "signatures": {
            "encode": "x [batch, *input_shape] float32 -> mean, stddev, z [batch, *latent_shape]",
            "decode": "z [batch, *latent_shape] float32 -> x [batch, *input_shape] (likelihood mean)",
            "sample": "seed [batch] int64 -> z, x (one sample per seed, deterministic)",
            "reconstruct": "x [batch, *input_shape] float32 -> x (reconstruction); serving_default",
        },
        "input_shape": list(model.input_shape),
        "latent_shape": list(model.latent_shape),
    }
    card.update(extra or {})
    return card


def export(model, model_dir, *, data=None, metrics=None, card=None, version=None):
    """Write `model` as the next version under `model_dir` (TF Serving's layout) and return the
    version's path.

    The SavedModel is written to a temporary sibling folder and renamed into place, so a crash
    never leaves a partial numbered version that TF Serving would try to load, and an existing
    version is never overwritten.

    Args:
        model: a trained tfvae model.
        model_dir: e.g. "saved_models/vae_mnist"; versions go in model_dir/1, model_dir/2, ...
        data: a description of the training data for the card (e.g. "mnist" or a dict).
        metrics: figures for the card, e.g. {"test_elbo": -98.1}.
        card: extra card entries.
        version: an explicit version number; it must not exist yet.
    """
    model_dir = Path(model_dir)
    if version is not None and (int(version) < 1 or (model_dir / str(int(version))).exists()):
        raise FileExistsError(f"version {version} of {model_dir} exists or is not a positive integer")
    _check_finite(model)
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=_TEMPORARY_PREFIX, dir=model_dir))
    try:
        # The card is copied into the SavedModel's assets/ under its own file name.
        (staging / "card").mkdir()
        card_file = staging / "card" / CARD_FILENAME
        card_file.write_text(json.dumps(model_card(model, data, metrics, card), indent=2))
        module = ExportModule(model, card_path=card_file)
        saved = staging / "saved_model"
        tf.saved_model.save(module, str(saved), signatures=module.signatures())
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
    return target


def _check_finite(model):
    """Refuse to export NaN or infinite weights: a server would answer with garbage."""
    bad = [v.name for v in model.variables if not bool(tf.reduce_all(tf.math.is_finite(v)))]
    if bad:
        raise ValueError(f"refusing to export: non-finite values in {', '.join(bad[:5])}")


def _jsonable(value):
    """Config and metric values as JSON types (tuples -> lists, numpy/tensors -> numbers)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "numpy"):
        value = value.numpy()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value

