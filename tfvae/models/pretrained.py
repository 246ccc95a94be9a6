"""Shipped and exported models back as trainable tf_keras models, for fine-tuning.

    model = tfvae.models.from_pretrained("vae_mnist")      # or "saved_models/vae_mnist", a path
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-4))
    model.fit(my_data, epochs=5)

The export stays TensorFlow-only: the model is rebuilt from the configuration in its model card
(plain values, and users' bodies in Keras' own serialization, never pickled code) and its
weights are read back from the SavedModel's variables, which the export module keeps in the
model's own order. The rebuilt model's reconstructions are checked against the export's
`reconstruct` signature before it is returned.
"""

import numpy as np
import tensorflow as tf

from tfvae import cards
from tfvae.models.registry import get_class

#: how far the rebuilt model's reconstructions may be from the export's
TOLERANCE = 1e-4


def _is_metric_variable(variable):
    # Exports written before the export module left the metrics out hold their Mean trackers'
    # `total` and `count` among the model's variables.
    return variable.name.split("/")[-1] in ("total:0", "count:0")


def from_pretrained(name_or_path, version=None):
    """The trainable tf_keras model of a shipped or exported model.

    Args:
        name_or_path: a shipped model's name ("vae_mnist", see saved_models/), a model folder
            holding numbered versions, or a version folder.
        version: the version to load; the latest by default.

    Returns:
        An uncompiled tfvae model with the export's trained weights: `compile()` and `fit` it
        to fine-tune, `tfvae.export` it again to serve the result. Its in-graph KL warm-up is
        off (kl_warmup_steps=0): it is trained already.

    Raises:
        tfvae.loading.ExportNotFoundError: no such export.
        tfvae.loading.InvalidExportError: the export has no model card, or its weights do not
            rebuild a model that gives the export's own reconstructions.
    """
    from tfvae.loading import InvalidExportError, resolve

    path = resolve(name_or_path, version)
    try:
        card = cards.read(path)
    except ValueError as error:
        raise InvalidExportError(str(error)) from None
    if card is None:
        raise InvalidExportError(f"{path} has no model card ({cards.CARD_FILENAME}): it was not "
                                 f"exported by tfvae.export, so its model cannot be rebuilt")
    config = dict(card["config"])
    if "kl_warmup_steps" in get_class(card["model"]).config_keys:
        # A trained model fine-tunes at the full objective: no second warm-up from step 0.
        config["kl_warmup_steps"] = 0
    model = get_class(card["model"]).from_config(config)
    saved = tf.saved_model.load(str(path))
    stored = [v for v in saved.model_variables if not _is_metric_variable(v)]
    targets = model.state_variables()
    shapes = [tuple(v.shape) for v in stored], [tuple(v.shape) for v in targets]
    if shapes[0] != shapes[1]:
        raise InvalidExportError(
            f"the variables of {path} ({len(stored)}) do not fit the model its card describes "
            f"({len(targets)}); first difference at "
            f"{next((i for i, (a, b) in enumerate(zip(*shapes)) if a != b), min(map(len, shapes)))}")
    for target, value in zip(targets, stored):
        target.assign(value)
    _check_reconstructions(model, saved, path, InvalidExportError)
    return model


def _check_reconstructions(model, saved, path, error):
    """The rebuilt model must reconstruct as the export does: inputs in [0, 1], which every
    likelihood accepts, drawn with a fixed seed."""
    probe = np.random.default_rng(0).random((4, *model.input_shape)).astype(np.float32)
    expected = saved.signatures["reconstruct"](x=tf.constant(probe))["x"].numpy()
    got = model(probe).numpy()
    gap = float(np.abs(expected - got).max())
    if not gap <= TOLERANCE:
        raise error(f"the model rebuilt from {path} reconstructs {gap:.3g} away from the "
                    f"export (tolerance {TOLERANCE}): its weights and card do not match")
