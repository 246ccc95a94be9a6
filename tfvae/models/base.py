"""What every model of the zoo shares: the training loop, metrics, config, and the tensor
functions that export turns into serving signatures.

A family subclasses `LatentVariableModel` and defines:
- `encode(x)`: the posterior q(z|x) as a TFP distribution (or, for deterministic
  autoencoders, a point mass), whose tensor value is a code z;
- `decode(z)`: the likelihood p(x|z) as a TFP distribution;
- `compute_terms(x, training)`: per-example tensors, among them `loss`, the quantity minimised;
  every entry is also reported as a metric of that name (nats per example);
- `sample_latent(seeds)`: one code per integer seed, deterministic for a seed.

Everything else, `train_step`, `test_step`, `call`, the serving functions and `get_config`, comes
from here, so every family trains, evaluates and exports the same way.
"""
import numpy as np
import tensorflow as tf
import tf_keras

from tfvae import validation


def inputs_of(data):
    """`fit` passes x, (x,), (x, y) or (x, y, w): autoencoders only need x."""
    if isinstance(data, (tuple, list)):
        return data[0]
    return data


def check_shape_arg(name, value):
    """A non-empty tuple of positive ints, or an error naming the argument."""
    if not validation.is_sequence(value) or not all(validation.is_int(d) for d in value):
        raise validation.WrongTypeError(f"{name}={value!r} must be a tuple of positive integers")
    shape = tuple(int(d) for d in value)
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"{name}={value!r} must be a non-empty tuple of positive integers")
    return shape


def check_positive_int(name, value):
    """An int >= 1 (not a float, str or bool), or an error naming the argument."""
    return validation.check_positive_int(name, value)


class LatentVariableModel(tf_keras.Model):
    """Base class of every tfvae model. See the module docstring for what a family defines.

    Subclasses call `super().__init__(name=...)`, build their layers, then `self._finish_init(
    metric_names)`, which builds the weights (so weights can be loaded straight away) and
    creates one mean tracker per reported term.
    """

    #: constructor arguments that get_config returns; a subclass lists its own.
    config_keys = ()

    def __new__(cls, *args, **kwargs):
        # Arguments of the wrong type (latent_dim="8", beta=None, hidden_units=16) fail here,
        # named, before a family's constructor trips over them (see tfvae.validation).
        validation.check_constructor_arguments(cls, LatentVariableModel, args, kwargs)
        return super().__new__(cls, *args, **kwargs)

    @property
    def input_shape(self):
        """The shape of one example, without the batch dimension (the constructor argument)."""
        return self._data_shape

    @property
    def data_shape(self):
        return self._data_shape

    def _finish_init(self, metric_names):
        self._trackers = {name: tf_keras.metrics.Mean(name=name) for name in metric_names}
        # Build every weight now by tracing one forward pass on a dummy batch.
        self(tf.zeros((1, *self.data_shape)))

    # ---- what a family defines -------------------------------------------------------------
    def encode(self, x, training=False):
        raise NotImplementedError

    def decode(self, z, training=False):
        raise NotImplementedError

    def compute_terms(self, x, training=False):
        raise NotImplementedError

    def sample_latent(self, seeds):
        raise NotImplementedError

    # ---- Keras -----------------------------------------------------------------------------
    def call(self, x, training=False):
        """The reconstruction: the likelihood's mean at the posterior's mean code."""
        return self.decode(self.code(x, training=training), training=training).mean()

    def code(self, x, training=False):
        """A deterministic code for x: the posterior mean."""
        return self.encode(x, training=training).mean()

    def compile(self, optimizer=None, jit_compile="auto", **kwargs):
        """`compile()` with Adam(1e-3) unless told otherwise; the model brings its own loss.

        jit_compile="auto" compiles the training step with XLA where `xla_pays()` says it was
        measured to pay, on one replica, unless `run_eagerly` is asked for.
        """
        if optimizer is None:
            optimizer = tf_keras.optimizers.Adam(1e-3)
        if jit_compile == "auto":
            # Not with several replicas: XLA needs the variables on the device it runs on, which
            # MirroredStrategy's replicas on one host's CPUs do not give it.
            jit_compile = (self.xla_pays() and not kwargs.get("run_eagerly")
                           and self.distribute_strategy.num_replicas_in_sync == 1)
        super().compile(optimizer=optimizer, jit_compile=jit_compile, **kwargs)

    def xla_pays(self):
        """Whether XLA speeds this model's training step up on CPU (bench/throughput.py): yes for
        MLP networks with a Bernoulli or Gaussian likelihood, where it removes the framework's
        overhead; XLA's CPU convolutions and the discretized logistic's many element-wise
        branches ran 1.5-2.5x slower compiled. A family overrides this where it measured
        otherwise."""
        return (getattr(self, "network", "mlp") == "mlp"
                and getattr(self, "likelihood", None) != "discretized_logistic")

    @property
    def metrics(self):
        # Listing the trackers here makes Keras reset them at each epoch and evaluate().
        return list(self._trackers.values())

    def _report(self, terms):
        for name, tracker in self._trackers.items():
            tracker.update_state(terms[name])
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    def fit(self, x=None, *args, **kwargs):
        """`tf_keras.Model.fit`, after checking x (shape, dtype, finite values) up front."""
        self._check_examples(x, "fit")
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_examples(x, "evaluate")
        return super().evaluate(x, *args, **kwargs)

    def _check_examples(self, x, where):
        unit = getattr(self, "likelihood", None) in ("bernoulli", "discretized_logistic")
        validation.check_examples(x, self.data_shape, where, unit_interval=unit)

    def train_step(self, data):
        x = tf.convert_to_tensor(inputs_of(data), tf.float32)
        # The replicas' gradients are summed, so each replica divides its examples' loss by the
        # global batch size (every replica's examples): the update is the gradient of the global
        # batch's mean loss whatever the number of replicas and however a batch was split (a
        # last, partial batch splits unevenly). With one replica this is the batch mean.
        global_batch = tf.distribute.get_replica_context().all_reduce(
            "sum", tf.cast(tf.shape(x)[0], tf.float32))
        with tf.GradientTape() as tape:
            terms = self.compute_terms(x, training=True)
            loss = tf.reduce_sum(terms["loss"]) / global_batch
            if self.losses:  # added on every replica: count them once
                loss += tf.add_n(self.losses) / self.distribute_strategy.num_replicas_in_sync
        # minimize() scales the loss when mixed_float16 wrapped the optimizer in a
        # LossScaleOptimizer, and clips gradients (clipnorm=...) after the replicas' sum.
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return self._report(terms)

    def test_step(self, data):
        x = tf.convert_to_tensor(inputs_of(data), tf.float32)
        return self._report(self.compute_terms(x, training=False))

    def get_config(self):
        return {"name": self.name, **{key: getattr(self, key) for key in self.config_keys}}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # ---- tensor functions behind the export's signatures ----------------------------------
    # Plain TensorFlow in, dicts of batch-major tensors out: tfvae.exporting wraps them in
    # tf.functions with fixed input signatures; nothing here knows about SavedModels.
    def encode_outputs(self, x):
        q = self.encode(x)
        return {"mean": q.mean(), "stddev": q.stddev(), "z": tf.convert_to_tensor(q)}

    def decode_outputs(self, z):
        return {"x": self.decode(z).mean()}

    def reconstruct_outputs(self, x):
        return {"x": self(x)}

    def score_outputs(self, x):
        """The per-example terms of `compute_terms` in evaluation mode (e.g. the ELBO)."""
        return self.compute_terms(x, training=False)

    def sample_outputs(self, seeds):
        z = self.sample_latent(seeds)
        return {"z": z, "x": self.decode(z).mean()}

    # ---- conveniences for notebooks ---------------------------------------------------------
    def generate(self, num=None, seeds=None):
        """Decoded samples (likelihood means) as a numpy array, from `num` seeds 0..num-1 or the
        given `seeds` (the same seeds give the same images, as the export's `sample` does)."""
        if seeds is None:
            seeds = np.arange(num if num is not None else 16)
        return self.sample_outputs(tf.constant(seeds, tf.int64))["x"].numpy()


def stateless_normal_per_seed(seeds, shape):
    """One N(0, I) draw of `shape` per int64 seed, each depending on its own seed only, so a
    sample does not change with the other seeds in the batch."""
    seeds = tf.convert_to_tensor(seeds, tf.int64)
    pairs = tf.stack([seeds, tf.zeros_like(seeds)], axis=-1)
    return tf.map_fn(lambda pair: tf.random.stateless_normal(shape, seed=pair), pairs,
                     fn_output_signature=tf.TensorSpec(shape, tf.float32))
