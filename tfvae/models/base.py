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


def inputs_of(data):
    """`fit` passes x, (x,), (x, y) or (x, y, w): autoencoders only need x."""
    if isinstance(data, (tuple, list)):
        return data[0]
    return data


def check_shape_arg(name, value):
    """A tuple of positive ints, or ValueError naming the argument."""
    try:
        shape = tuple(int(d) for d in value)
    except TypeError:
        raise ValueError(f"{name}={value!r} must be a tuple of positive integers") from None
    if not shape or any(d < 1 for d in shape):
        raise ValueError(f"{name}={value!r} must be a non-empty tuple of positive integers")
    return shape


def check_positive_int(name, value):
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name}={value!r} must be an integer >= 1")
    return int(value)


class LatentVariableModel(tf_keras.Model):
    """Base class of every tfvae model. See the module docstring for what a family defines.

    Subclasses call `super().__init__(name=...)`, build their layers, then `self._finish_init(
    metric_names)`, which builds the weights (so weights can be loaded straight away) and
    creates one mean tracker per reported term.
    """

    #: constructor arguments that get_config returns; a subclass lists its own.
    config_keys = ()

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

    def compile(self, optimizer=None, **kwargs):
        """`compile()` with Adam(1e-3) unless told otherwise; the model brings its own loss."""
        if optimizer is None:
            optimizer = tf_keras.optimizers.Adam(1e-3)
        super().compile(optimizer=optimizer, **kwargs)

    @property
    def metrics(self):
        # Listing the trackers here makes Keras reset them at each epoch and evaluate().
        return list(self._trackers.values())

    def _report(self, terms):
        for name, tracker in self._trackers.items():
            tracker.update_state(terms[name])
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    def train_step(self, data):
        x = tf.convert_to_tensor(inputs_of(data), tf.float32)
        with tf.GradientTape() as tape:
            terms = self.compute_terms(x, training=True)
            # Under a distribution strategy the replicas' gradients are summed, so each replica
            # divides by their number: the update then does not depend on how many there are.
            loss = tf.reduce_mean(terms["loss"]) / self.distribute_strategy.num_replicas_in_sync
            if self.losses:
                loss += tf.add_n(self.losses)
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
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
