"""Model cards as data: the JSON that travels inside every export (`assets/tfvae_card.json`).

    card = cards.read(tfvae.loading.resolve("vae_mnist"))
    card["metrics"]["test_log_likelihood"]      # -86.84
    cards.test_protocol(card)                   # what `tfvae evaluate` scores by default:
    # {"dataset": "mnist", "split": "test", "binarize": "static", "seed": 0, "take": None,
    #  "k": 5000}

A card holds what the model is (`model`, `class`, `config`, `input_shape`, `latent_shape`, the
`signatures` it answers), what it was trained on (`data`, free-form: names, never paths), how it
did (`metrics`), and, as fields a program reads as they are, the `test_protocol` its test
metrics followed: dataset, split, binarize (None, "dynamic" or "static"), seed, take (None: the
whole split) and k (the importance samples of a log-likelihood; None where there is none); for
an image folder also image_size, color_mode and validation_split. Plain Python only: the loader
reads cards without TensorFlow Probability or tf_keras.
"""
import json
import time
from pathlib import Path

from tfvae import validation

CARD_FILENAME = "tfvae_card.json"
#: the fields of a test protocol, in the order cards list them
PROTOCOL_FIELDS = ("dataset", "split", "binarize", "seed", "take", "k")
#: and those of an image folder's (`tfvae train --data-dir`)
FOLDER_FIELDS = ("image_size", "color_mode", "validation_split")


def jsonable(value):
    """`value` in JSON's types: tuples as lists, numpy values and tensors as numbers or lists,
    dict keys as strings; anything else as it is (json.dumps then names what it cannot hold)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "numpy"):
        value = value.numpy()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def check_test_protocol(protocol):
    """`protocol` with every field of PROTOCOL_FIELDS (None where not given), or a ValueError
    naming the field that is wrong."""
    if not isinstance(protocol, dict):
        raise validation.WrongTypeError(f"test_protocol must be a dict with fields "
                                        f"{list(PROTOCOL_FIELDS)}, not {type(protocol).__name__}")
    unknown = set(protocol) - set(PROTOCOL_FIELDS) - set(FOLDER_FIELDS)
    if unknown:
        raise ValueError(f"test_protocol has unknown fields {sorted(unknown)}; its fields are "
                         f"{list(PROTOCOL_FIELDS + FOLDER_FIELDS)}")
    protocol = {field: protocol.get(field) for field in PROTOCOL_FIELDS} | {
        field: protocol[field] for field in FOLDER_FIELDS if field in protocol}
    protocol["split"] = "test" if protocol["split"] is None else protocol["split"]
    protocol["seed"] = 0 if protocol["seed"] is None else protocol["seed"]
    if not isinstance(protocol["dataset"], str) or not protocol["dataset"]:
        raise ValueError(f"test_protocol's dataset={protocol['dataset']!r} must be a name")
    if not isinstance(protocol["split"], str):
        raise ValueError(f"test_protocol's split={protocol['split']!r} must be a split's name")
    if protocol["binarize"] not in (None, "dynamic", "static"):
        raise ValueError(f"test_protocol's binarize={protocol['binarize']!r} must be None, "
                         f"'dynamic' or 'static'")
    validation.check_int("test_protocol's seed", protocol["seed"], minimum=0)
    for field in ("take", "k"):
        if protocol[field] is not None:
            validation.check_int(f"test_protocol's {field}", protocol[field], minimum=1)
    if "image_size" in protocol:
        validation.check_int("test_protocol's image_size", protocol["image_size"], minimum=1)
    return protocol


def model_card(model, data=None, metrics=None, test_protocol=None, extra=None):
    """The JSON-able card of `model`: see the module docstring."""
    import tensorflow as tf

    import tfvae
    from tfvae.signatures import card_texts

    card = {
        "model": getattr(model, "registry_name", type(model).__name__),
        "class": type(model).__name__,
        "config": jsonable(model.get_config()),
        "data": data,
        "test_protocol": None if test_protocol is None else check_test_protocol(test_protocol),
        "metrics": jsonable(metrics or {}),
        "tfvae_version": tfvae.__version__,
        "tensorflow_version": tf.__version__,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "signatures": card_texts(),
        "input_shape": list(model.input_shape),
        "latent_shape": list(model.latent_shape),
    }
    # A family can describe itself, e.g. how its `sample` draws codes, and its own signatures
    # (which replace the generic text of those it names, and leave the others).
    info = jsonable(getattr(model, "card_info", dict)())
    card["signatures"].update(info.pop("signatures", {}))
    card.update(info)
    card.update(extra or {})
    return card


def read(version_folder):
    """The card of an export's version folder, or None if it has none; ValueError if the file
    is not a JSON object."""
    path = Path(version_folder) / "assets" / CARD_FILENAME
    if not path.exists():
        return None
    try:
        card = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"the model card {path} is damaged: {error}") from None
    if not isinstance(card, dict):
        raise ValueError(f"the model card {path} is not a JSON object")
    return card


def test_protocol(card):
    """The test protocol a card records, or None if it records none (or a broken one).

    Cards hold it as `test_protocol`; cards that `tfvae train` wrote before that field existed
    kept name, binarize, seed, take and test_split in `data` (the oldest no seed: the training
    seed, which also seeded the data, stands in), which are read as the same fields.
    """
    if not isinstance(card, dict):
        return None
    protocol = card.get("test_protocol")
    if protocol is None:
        protocol = _protocol_in_data(card)
    try:
        return None if protocol is None else check_test_protocol(protocol)
    except ValueError:
        return None


def _protocol_in_data(card):
    data = card.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    training = card.get("training") if isinstance(card.get("training"), dict) else {}
    protocol = {"dataset": data["name"], "split": data.get("test_split", "test"),
                "binarize": data.get("binarize"), "seed": data.get("seed", training.get("seed")),
                "take": data.get("take")}
    if data.get("source") == "image folder":
        size = data.get("image_size")
        protocol.update(take=None, image_size=size[0] if isinstance(size, list) and size else size,
                        color_mode=data.get("color_mode"),
                        validation_split=data.get("validation_split"))
    return protocol
