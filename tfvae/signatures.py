"""The signature contract of a tfvae export: each signature's name, input, outputs, model method
and card text, defined once for the exporter, the model card, the warm-up writer, the loader and
the serving clients.

    from tfvae import signatures
    signatures.get("decode").input                        # "z"
    signatures.input_spec("encode", (28, 28, 1), (32,))   # [None, 28, 28, 1] float32, named "x"
    signatures.lone_output("serving_default")             # "x"

Every export has these five signatures, and `serving_default`, which is `reconstruct`:

| signature     | input                              | outputs every model gives        |
| ---           | ---                                | ---                              |
| `encode`      | `x` float32 [batch, *input_shape]  | `mean`, `stddev`, `z`            |
| `decode`      | `z` float32 [batch, *latent_shape] | `x`, the likelihood's mean       |
| `sample`      | `seed` int64 [batch]               | `z`, `x`: one sample per seed    |
| `reconstruct` | `x` float32 [batch, *input_shape]  | `x`                              |
| `score`       | `x` float32 [batch, *input_shape]  | `loss`, among the per-example terms |

Families may add outputs (hierarchical models `mean_1`, `z_2`, ...; autoencoders `code`; VAEs
`elbo`, `kl`, ... in `score`); they never remove one. Plain Python, numpy and TensorFlow only:
`tfvae.load` imports this module and must work without TensorFlow Probability and tf_keras.
"""
import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfvae import validation

#: the signature TF Serving runs when a request names none; it is `reconstruct`.
DEFAULT_SIGNATURE = "serving_default"


@dataclasses.dataclass(frozen=True)
class Signature:
    """One signature of an export.

    Attributes:
        name: e.g. "encode".
        input: the name of its single input: "x", "z" or "seed".
        dtype: the input's dtype.
        per_example: what one example's input is: "input_shape" (an input of the model),
            "latent_shape" (a code) or "scalar" (a seed).
        outputs: the outputs every model gives; a family may add more.
        method: the model method that computes the outputs from a batch of inputs.
        text: the generic description on the model card (a family's `card_info()` may replace it).
    """
    name: str
    input: str
    dtype: tf.DType
    per_example: str
    outputs: tuple
    method: str
    text: str


#: the contract, by name, in the order exports list them.
SIGNATURES = {s.name: s for s in [
    Signature("encode", "x", tf.float32, "input_shape", ("mean", "stddev", "z"), "encode_outputs",
              "x [batch, *input_shape] float32 -> mean, stddev, z [batch, *latent_shape]"),
    Signature("decode", "z", tf.float32, "latent_shape", ("x",), "decode_outputs",
              "z [batch, *latent_shape] float32 -> x [batch, *input_shape] (likelihood mean)"),
    Signature("sample", "seed", tf.int64, "scalar", ("z", "x"), "sample_outputs",
              "seed [batch] int64 -> z, x (one sample per seed, deterministic)"),
    Signature("reconstruct", "x", tf.float32, "input_shape", ("x",), "reconstruct_outputs",
              "x [batch, *input_shape] float32 -> x (reconstruction); serving_default"),
    Signature("score", "x", tf.float32, "input_shape", ("loss",), "score_outputs",
              "x [batch, *input_shape] float32 -> per-example loss terms in nats "
              "(one posterior sample for VAEs)"),
]}

#: other names of a signature in an export.
ALIASES = {DEFAULT_SIGNATURE: "reconstruct"}


def names():
    """Every signature name of an export, aliases included.

        names()   # ("encode", "decode", "sample", "reconstruct", "score", "serving_default")
    """
    return (*SIGNATURES, *ALIASES)


def get(name):
    """The `Signature` called `name` (an alias gives the signature it stands for); KeyError for a
    name that is not part of the contract.

        get("serving_default").name   # "reconstruct"
    """
    record = SIGNATURES.get(ALIASES.get(name, name))
    if record is None:
        raise KeyError(f"{name!r} is not a tfvae signature; they are {list(names())}")
    return record


def input_name(name):
    """The name of the single input of signature `name` ("x", "z", "seed"); None for a signature
    that is not part of the contract.

        input_name("sample")   # "seed"
    """
    return get(name).input if name in names() else None


def lone_output(name):
    """The name of the output of a signature whose every model gives exactly one output, which
    TF Serving's JSON leaves unnamed; None for the others and for names outside the contract.

        lone_output("decode")   # "x"
        lone_output("encode")   # None: mean, stddev, z
    """
    # A family may add outputs, but then the answer has several, which TF Serving names: an
    # unnamed answer of one of these signatures is always this output.
    if name not in names() or len(get(name).outputs) != 1:
        return None
    return get(name).outputs[0]


def input_spec(signature, model_input_shape, latent_shape):
    """The batch-major TensorSpec of a signature's input for a model with these shapes.

        input_spec("decode", (8, 8, 1), (2,))   # TensorSpec([None, 2], tf.float32, name="z")
    """
    record = get(signature)
    per_example = {"input_shape": tuple(model_input_shape), "latent_shape": tuple(latent_shape),
                   "scalar": ()}[record.per_example]
    return tf.TensorSpec([None, *per_example], record.dtype, name=record.input)


def card_texts():
    """The generic card text of each signature, a new dict on each call.

        card_texts()["sample"]   # "seed [batch] int64 -> z, x (one sample per seed, deterministic)"
    """
    return {name: record.text for name, record in SIGNATURES.items()}


def sample_seeds(value):
    """The seeds of a `sample` call: an int n gives 0..n-1 (n >= 1, else validation's error);
    anything else is left for the signature's input check.

        sample_seeds(3)   # array([0, 1, 2])
    """
    if np.ndim(value) == 0 and not isinstance(value, (str, bytes)):
        return np.arange(validation.check_int("sample() count", value, minimum=1))
    return value


def signature_defs(export_dir):
    """The SignatureDefs of the `serve` MetaGraph of a SavedModel (what TF Serving sees), by name,
    read from saved_model.pb without loading any function.

        signature_defs("saved_models/vae_mnist/1")["sample"].inputs["seed"].dtype   # DT_INT64
    """
    from tensorflow.core.protobuf import saved_model_pb2

    raw = (Path(export_dir) / "saved_model.pb").read_bytes()
    saved = saved_model_pb2.SavedModel.FromString(raw)
    for meta_graph in saved.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return {name: signature for name, signature in meta_graph.signature_def.items()
                    if not name.startswith("__")}  # __saved_model_init_op is not a signature
    raise ValueError(f"{export_dir} has no MetaGraph tagged 'serve'")


class SignatureMethods:
    """`encode`, `decode`, `sample`, `reconstruct` and `score` on top of `_run_signature(name,
    value)`, which a subclass defines: `tfvae.load`'s models and the serving clients share them.

        class Echo(SignatureMethods):
            def _run_signature(self, name, value):
                return {"name": name, "value": value}

        Echo().sample(2)   # {"name": "sample", "value": array([0, 1])}
    """

    def encode(self, x):
        """`mean`, `stddev` and `z` (one posterior sample) for a batch of inputs."""
        return self._run_signature("encode", x)

    def decode(self, z):
        """`x`, the likelihood's mean, for a batch of codes."""
        return self._run_signature("decode", z)

    def sample(self, seeds):
        """`z` and `x`, one sample per integer seed (an int n gives seeds 0..n-1)."""
        return self._run_signature("sample", sample_seeds(seeds))

    def reconstruct(self, x):
        """`x`, the reconstruction of a batch of inputs."""
        return self._run_signature("reconstruct", x)

    def score(self, x):
        """The model's per-example terms (`loss`, and for VAEs `elbo`, `kl`, ...) in nats."""
        return self._run_signature("score", x)

    def _run_signature(self, name, value):
        """Run signature `name` on one input `value`; a dict of numpy arrays."""
        raise NotImplementedError
