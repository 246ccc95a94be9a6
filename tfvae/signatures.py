"""The signature contract of a tfvae export: each signature's name, inputs, outputs, model
method and card text, defined once for the exporter, the model card, the warm-up writer, the
loader and the serving clients.

    from tfvae import signatures
    signatures.input_names("encode")                       # ("x", "seed")
    signatures.input_specs("decode", (28, 28, 1), (32,))   # [TensorSpec([None, 32], float32, "z")]
    signatures.lone_output("serving_default")              # "x"

Every export has these six signatures, and `serving_default`, which is `reconstruct`:

| signature        | inputs (float32 or int64, batch first)          | outputs every model gives   |
| ---              | ---                                             | ---                         |
| `encode`         | `x` [batch, *input_shape], `seed` [batch]       | `mean`, `stddev`, `z`       |
| `decode`         | `z` [batch, *latent_shape]                      | `x`, the likelihood's mean  |
| `sample`         | `seed` [batch]                                  | `z`, `x`: one per seed      |
| `reconstruct`    | `x` [batch, *input_shape]                       | `x`                         |
| `score`          | `x` [batch, *input_shape], `seed` [batch]       | `loss`, among the terms     |
| `log_likelihood` | `x`, `seed` [batch], `k` [batch]                | `log_likelihood` [batch]    |

Whatever draws (the posterior sample z of `encode`, the draw `score` scores, `sample`, the k
importance samples of `log_likelihood`) draws from each row's seed through tfvae.randomness, so
the same request gets the same answer, in a SavedModel, LiteRT or ONNX alike. Families may add
outputs (hierarchical models `mean_1`, `z_2`, ...; autoencoders `code`; VAEs `elbo`, `kl`, ...
in `score`); they never remove one. Plain Python, numpy and TensorFlow only: `tfvae.load`
imports this module and must work without TensorFlow Probability and tf_keras, and the
LiteRT and ONNX loaders (tfvae.runtimes) without TensorFlow: TensorFlow is imported only by the
functions that build or read a SavedModel.
"""
import dataclasses
from pathlib import Path

import numpy as np

from tfvae import validation

#: the signature TF Serving runs when a request names none; it is `reconstruct`.
DEFAULT_SIGNATURE = "serving_default"


@dataclasses.dataclass(frozen=True)
class Input:
    """One input of a signature: its name, dtype (a numpy dtype name: "float32", "int64"), and
    what one example's value is: "input_shape" (an input of the model), "latent_shape" (a code)
    or "scalar" (a seed, a k)."""
    name: str
    dtype: str
    per_example: str

    def shape(self, model_input_shape, latent_shape):
        """The batch-major shape of this input, None for the batch: [None, *per example]."""
        per_example = {"input_shape": tuple(model_input_shape),
                       "latent_shape": tuple(latent_shape), "scalar": ()}
        return [None, *per_example[self.per_example]]


X = Input("x", "float32", "input_shape")
Z = Input("z", "float32", "latent_shape")
SEED = Input("seed", "int64", "scalar")
K = Input("k", "int64", "scalar")


@dataclasses.dataclass(frozen=True)
class Signature:
    """One signature of an export.

    Attributes:
        name: e.g. "encode".
        inputs: its `Input`s, in the order the model method takes them.
        outputs: the outputs every model gives; a family may add more.
        method: the model method that computes the outputs from a batch of inputs.
        text: the generic description on the model card (a family's `card_info()` may replace it).
    """
    name: str
    inputs: tuple
    outputs: tuple
    method: str
    text: str


#: the contract, by name, in the order exports list them.
SIGNATURES = {s.name: s for s in [
    Signature("encode", (X, SEED), ("mean", "stddev", "z"), "encode_outputs",
              "x [batch, *input_shape] float32, seed [batch] int64 -> mean, stddev, z [batch, "
              "*latent_shape] (z: a posterior sample drawn from the seed)"),
    Signature("decode", (Z,), ("x",), "decode_outputs",
              "z [batch, *latent_shape] float32 -> x [batch, *input_shape] (likelihood mean)"),
    Signature("sample", (SEED,), ("z", "x"), "sample_outputs",
              "seed [batch] int64 -> z, x (one sample per seed, deterministic)"),
    Signature("reconstruct", (X,), ("x",), "reconstruct_outputs",
              "x [batch, *input_shape] float32 -> x (reconstruction); serving_default"),
    Signature("score", (X, SEED), ("loss",), "score_outputs",
              "x [batch, *input_shape] float32, seed [batch] int64 -> per-example loss terms "
              "in nats (for VAEs of one posterior sample, drawn from the seed)"),
    Signature("log_likelihood", (X, SEED, K), ("log_likelihood",), "log_likelihood_outputs",
              "x [batch, *input_shape] float32, seed [batch] int64, k [batch] int64 -> "
              "log_likelihood [batch] in nats: for VAEs the importance-sampled log p(x) with k "
              "samples drawn from the seed (Burda et al. 2015); for autoencoders, which have "
              "no likelihood of x, log p(x | its reconstruction)"),
]}

#: other names of a signature in an export.
ALIASES = {DEFAULT_SIGNATURE: "reconstruct"}


def names():
    """Every signature name of an export, aliases included.

        names()   # ("encode", ..., "log_likelihood", "serving_default")
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


def input_names(name):
    """The names of the inputs of signature `name`, e.g. ("x", "seed"); None for a signature
    that is not part of the contract."""
    return tuple(i.name for i in get(name).inputs) if name in names() else None


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


def input_specs(signature, model_input_shape, latent_shape):
    """The batch-major TensorSpecs of a signature's inputs for a model with these shapes.

        input_specs("decode", (8, 8, 1), (2,))   # [TensorSpec([None, 2], tf.float32, name="z")]
    """
    import tensorflow as tf

    return [tf.TensorSpec(i.shape(model_input_shape, latent_shape), i.dtype, name=i.name)
            for i in get(signature).inputs]


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


def row_values(value, x, default):
    """A per-row input (seed, k) for a batch x: `default(n)` when value is None, a single
    integer repeated for every row, or the given values as they are (for the signature's own
    check).

        row_values(None, images, np.arange)      # seeds 0, 1, ..., n - 1
        row_values(5000, images, np.arange)      # k = 5000 for every row
    """
    try:
        rows = len(validation.as_array(x))
    except TypeError:  # a scalar or no array at all: the signature's check says what is wrong
        return value
    if value is None:
        return default(rows)
    if np.ndim(value) == 0 and validation.is_int(value):
        return np.full(rows, int(value), np.int64)
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
    """`encode`, `decode`, `sample`, `reconstruct`, `score` and `log_likelihood` on top of
    `_run_signature(name, inputs)`, which a subclass defines (inputs: a dict by input name):
    `tfvae.load`'s models and the serving clients share them.

        class Echo(SignatureMethods):
            def _run_signature(self, name, inputs):
                return {"name": name, **inputs}

        Echo().sample(2)   # {"name": "sample", "seed": array([0, 1])}

    A draw's seeds default to the rows' indices 0, 1, ...: the same batch gets the same draws.
    """

    def encode(self, x, seed=None):
        """`mean`, `stddev` and `z` (a posterior sample, drawn from each row's seed)."""
        return self._run_signature("encode", {"x": x, "seed": row_values(seed, x, _indices)})

    def decode(self, z):
        """`x`, the likelihood's mean, for a batch of codes."""
        return self._run_signature("decode", {"z": z})

    def sample(self, seeds):
        """`z` and `x`, one sample per integer seed (an int n gives seeds 0..n-1)."""
        return self._run_signature("sample", {"seed": sample_seeds(seeds)})

    def reconstruct(self, x):
        """`x`, the reconstruction of a batch of inputs."""
        return self._run_signature("reconstruct", {"x": x})

    def score(self, x, seed=None):
        """The model's per-example terms (`loss`, and for VAEs `elbo`, `kl`, ... of one
        posterior sample, drawn from each row's seed) in nats."""
        return self._run_signature("score", {"x": x, "seed": row_values(seed, x, _indices)})

    def log_likelihood(self, x, k=5000, seed=None):
        """`log_likelihood` per example in nats: for VAEs importance-sampled with k samples
        drawn from each row's seed (k: one integer or one per row)."""
        return self._run_signature("log_likelihood", {
            "x": x, "seed": row_values(seed, x, _indices),
            "k": row_values(5000 if k is None else k, x, _indices)})

    def _run_signature(self, name, inputs):
        """Run signature `name` on `inputs` (a dict by input name); a dict of numpy arrays."""
        raise NotImplementedError


def _indices(rows):
    return np.arange(rows, dtype=np.int64)
