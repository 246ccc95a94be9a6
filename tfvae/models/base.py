"""What every model of the zoo shares: the training loop, metrics, config, the encoder and
decoder bodies with their heads, and the tensor functions that export turns into signatures.

A family subclasses `LatentVariableModel`, builds its layers in its constructor (the bodies
with `_attach_encoder` / `_attach_decoder`, which check their shapes) and defines:
- `encode(x)`: the posterior q(z|x) as a TFP distribution (or, for deterministic
  autoencoders, a point mass), whose tensor value is a code z;
- `compute_terms(x, training)`: per-example tensors, among them `loss`, the quantity minimised;
  every entry is also reported as a metric of that name (nats per example);
- optionally `sample_latent(seeds)` (default: z ~ N(0, I), one draw per seed) and
  `latent_shape` (default: (latent_dim,)).

Everything else, `decode`, `train_step`, `test_step`, `call`, `get_config`/`from_config` with
users' own bodies, and the serving functions, comes from here, so every family trains,
evaluates and exports the same way. A family registers itself with
`@tfvae.models.register(name)` and declares `example_config`, the small configuration the
shared test battery builds it with.
"""
import inspect

import numpy as np
import tensorflow as tf
import tf_keras

from tfvae import callbacks as tfvae_callbacks
from tfvae import compat, layers, networks, validation


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


def _steps_per_epoch(x, batch_size, steps_per_epoch):
    """The steps of one epoch of `fit(x, batch_size=..., steps_per_epoch=...)`, or None when
    they are not known up front (a dataset of unknown or infinite length, a generator)."""
    if steps_per_epoch:
        return int(steps_per_epoch)
    if isinstance(x, tf.data.Dataset):
        count = int(x.cardinality())
        return count if count >= 0 else None
    length = getattr(x, "shape", None)
    if length is None or not length:
        return None
    return -(-int(length[0]) // int(batch_size or 32))  # Keras' default batch for arrays


def minimize(optimizer, loss, variables, tape):
    """One optimizer step on `loss`, clipping gradients as the optimizer was told to.

    `optimizer.minimize` scales the loss when mixed_float16 wrapped the optimizer in a
    LossScaleOptimizer, and clips gradients (clipnorm=...) after the replicas' sum; but a
    tf_keras optimizer applies only the first of clipnorm, global_clipnorm and clipvalue that
    is set. Given both global_clipnorm and clipvalue, this applies both, the global norm first
    and then each element, as Sønderby et al.'s (2016) Ladder VAE was trained (norm 4, value
    0.9); the optimizer's own global clipping then finds nothing left to clip.
    """
    norm, value = getattr(optimizer, "global_clipnorm", None), getattr(optimizer, "clipvalue", None)
    if not (norm and value):
        return optimizer.minimize(loss, variables, tape=tape)
    gradients, _ = tf.clip_by_global_norm(tape.gradient(loss, variables), norm)
    gradients = [None if g is None else tf.clip_by_value(g, -value, value) for g in gradients]
    return optimizer.apply_gradients(zip(gradients, variables))


class LatentVariableModel(tf_keras.Model):
    """Base class of every tfvae model. See the module docstring for what a family defines.

    Subclasses call `super().__init__(name=...)`, build their layers, then `self._finish_init(
    metric_names)`, which builds the weights (so weights can be loaded straight away) and
    creates one mean tracker per reported term.
    """

    #: constructor arguments that get_config returns; a subclass lists its own.
    config_keys = ()
    #: arguments that configure only the built-in bodies: given with both `encoder=` and
    #: `decoder=` they would configure nothing, so that is refused (and get_config leaves them out)
    body_arguments = ()
    #: a small configuration for 8x8x1 data: the shared test battery builds every family with it
    example_config = {}
    #: training steps per call of the compiled function under compile()'s default, in a fit long
    #: enough: a call costs Python and dispatch work that a small model's step feels
    #: (bench/throughput.py: 1.56x and 1.15x one step per call at its two sizes; 64 no faster)
    DEFAULT_STEPS_PER_EXECUTION = 16
    #: ... but tracing the looping function costs 0.3-1.6 s more than the one-step function on
    #: this project's machine, about what 1,000 steps of a small model gain back
    MIN_STEPS_FOR_SEVERAL_PER_CALL = 1000

    def __new__(cls, *args, **kwargs):
        # Arguments of the wrong type (latent_dim="8", beta=None, hidden_units=16) fail here,
        # named, before a family's constructor trips over them (see tfvae.validation).
        named = validation.check_constructor_arguments(cls, LatentVariableModel, args, kwargs)
        if named.get("encoder") is not None and named.get("decoder") is not None:
            clash = [name for name in cls.body_arguments if name in named]
            if clash:
                raise ValueError(f"encoder= and decoder= replace the built-in networks, which "
                                 f"{', '.join(clash)} configure{'s' if len(clash) == 1 else ''}: "
                                 f"pass your bodies or {', '.join(clash)}, not both")
        return super().__new__(cls, *args, **kwargs)

    @property
    def input_shape(self):
        """The shape of one example, without the batch dimension (the constructor argument)."""
        return self._data_shape

    @property
    def latent_shape(self):
        """The shape of one code z, what `decode` takes and `sample` draws."""
        return (self.latent_dim,)

    # ---- building ----------------------------------------------------------------------------
    def _init_data(self, input_shape, likelihood, likelihood_scale):
        """The data's shape and the likelihood head p(x|.) every family ends in."""
        self._data_shape = check_shape_arg("input_shape", input_shape)
        self.likelihood, self.likelihood_scale = likelihood, likelihood_scale
        self.likelihood_head = layers.likelihood_head(likelihood, self._data_shape,
                                                      scale=likelihood_scale, name="likelihood")

    def _given_bodies(self, encoder, decoder):
        """Record which bodies the user gave (get_config serializes those) and check them."""
        given = {"encoder": encoder, "decoder": decoder}
        self._user_bodies = tuple(role for role, body in given.items() if body is not None)
        for role in self._user_bodies:
            networks.check_body(role, given[role])

    def _attach_encoder(self, body, head_size):
        """`encoder` = the body (x -> features, shape-checked), `encoder_head` = Dense(head_size)
        on its features: a posterior's parameters or an autoencoder's code."""
        networks.check_encoder_output(body, self._data_shape)
        self.encoder = body
        self.encoder_head = tf_keras.layers.Dense(head_size, name="encoder_head")

    def _attach_decoder(self, body, code_size):
        """`decoder` = the body (z -> features, shape-checked), `decoder_head` = the projection
        of its features to the likelihood's parameters."""
        networks.check_decoder_output(body, code_size, self._data_shape)
        self.decoder = body
        self.decoder_head = networks.LikelihoodProjection(
            self._data_shape, self.likelihood_head.params_per_element, name="decoder_head")

    def _init_bodies(self, encoder, decoder, head_size, network, hidden_units, activation):
        """The bodies of a family with one encoder and one decoder: the user's where given, the
        built-in `network` of `hidden_units` widths otherwise; then their heads."""
        self._given_bodies(encoder, decoder)
        if len(self._user_bodies) == 2:  # nothing built in: nothing for these to describe
            network = hidden_units = activation = None
        else:
            hidden_units = networks.check_network_args(network, self._data_shape, hidden_units)
        self.network, self.hidden_units, self.activation = network, hidden_units, activation
        if encoder is None:
            encoder = networks.encoder_body(network, self._data_shape, hidden_units, activation)
        if decoder is None:
            decoder = networks.decoder_body(network, self.latent_dim, self._data_shape,
                                            hidden_units, activation)
        self._attach_encoder(encoder, head_size)
        self._attach_decoder(decoder, self.latent_dim)

    def _finish_init(self, metric_names):
        self._trackers = {name: tf_keras.metrics.Mean(name=name) for name in metric_names}
        # Build every weight now by tracing one forward pass on a dummy batch.
        self(tf.zeros((1, *self._data_shape)))

    # ---- what a family defines -------------------------------------------------------------
    def encode(self, x, training=False):
        raise NotImplementedError

    def compute_terms(self, x, training=False):
        raise NotImplementedError

    def sample_latent(self, seeds):
        """One code per int64 seed from the prior N(0, I), deterministic for a seed."""
        return layers.stateless_normal_per_seed(seeds, self.latent_shape)

    # ---- shared model pieces ---------------------------------------------------------------
    def features(self, x, training=False):
        """The encoder head's output on x: the posterior's parameters (or the code)."""
        return self.encoder_head(self.encoder(x, training=training))

    def decode(self, z, training=False):
        """The likelihood p(x|z) as a TFP distribution."""
        return self.likelihood_head(self.decoder_head(self.decoder(z, training=training)))

    # ---- Keras -----------------------------------------------------------------------------
    def call(self, x, training=False):
        """The reconstruction: the likelihood's mean at the posterior's mean code."""
        return self.decode(self.code(x, training=training), training=training).mean()

    def code(self, x, training=False):
        """A deterministic code for x: the posterior mean."""
        return self.encode(x, training=training).mean()

    def compile(self, optimizer=None, jit_compile="auto", steps_per_execution=None, **kwargs):
        """`compile()` with Adam(1e-3) unless told otherwise; the model brings its own loss.

        jit_compile="auto" compiles the training step with XLA where `xla_pays()` says it was
        measured to pay, on one replica, unless `run_eagerly` is asked for.

        steps_per_execution=None lets each `fit` choose: `DEFAULT_STEPS_PER_EXECUTION` steps per
        call of the compiled function in a fit of at least `MIN_STEPS_FOR_SEVERAL_PER_CALL`
        steps, one otherwise, and one whenever a callback must see every step
        (`tfvae.callbacks.needs_every_step`: e.g. `KLWarmup(steps=...)`, a ModelCheckpoint
        saving every N steps, a callback of one's own with batch hooks). A number (1 included)
        or Keras' "auto" (its tuner) is passed on as given.
        """
        # A Keras 3 optimizer (tf.keras where TensorFlow came first) -> its tf_keras twin.
        optimizer = compat.to_tf_keras_optimizer(optimizer)
        if optimizer is None:
            optimizer = tf_keras.optimizers.Adam(1e-3)
        if jit_compile == "auto":
            # Not with several replicas: XLA needs the variables on the device it runs on, which
            # MirroredStrategy's replicas on one host's CPUs do not give it.
            jit_compile = (self.xla_pays() and not kwargs.get("run_eagerly")
                           and self.distribute_strategy.num_replicas_in_sync == 1)
        self._default_steps_per_execution = (steps_per_execution is None
                                             and not kwargs.get("run_eagerly"))
        super().compile(optimizer=optimizer, jit_compile=jit_compile,
                        steps_per_execution=steps_per_execution or 1, **kwargs)

    def _several_steps_per_call(self, call):
        """Under compile()'s default: whether the fit `call` (fit's arguments by name) runs
        several steps per call of the compiled function."""
        if not getattr(self, "_default_steps_per_execution", False):
            return False
        callbacks = call.get("callbacks") or ()
        if isinstance(callbacks, tf_keras.callbacks.CallbackList):
            callbacks = callbacks.callbacks
        if any(tfvae_callbacks.needs_every_step(c) for c in callbacks):
            return False
        per_epoch = _steps_per_epoch(call.get("x"), call.get("batch_size"),
                                     call.get("steps_per_epoch"))
        if per_epoch is None:  # unknown or infinite: long enough
            return True
        epochs = call.get("epochs", 1) - call.get("initial_epoch", 0)
        return per_epoch * epochs >= self.MIN_STEPS_FOR_SEVERAL_PER_CALL

    def xla_pays(self):
        """Whether XLA speeds this model's training step up on CPU (bench/throughput.py): yes for
        networks without convolutions and a Bernoulli or Gaussian likelihood, where it removes
        the framework's overhead; XLA's CPU convolutions and the discretized logistic's many
        element-wise branches ran 1.5-2.5x slower compiled. A family overrides this where it
        measured otherwise."""
        return (self.likelihood != "discretized_logistic"
                and networks.is_conv_free(self.encoder, self.decoder))

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
        # Keras 3 callbacks -> their tf_keras twins (callbacks is fit's 6th argument, x the 1st).
        args, kwargs = compat.convert_callbacks_argument(args, kwargs, position=4)
        call = inspect.signature(tf_keras.Model.fit).bind(self, x, *args, **kwargs).arguments
        several = self._several_steps_per_call(call)
        if several:
            # Keras caches its compiled functions, and one built for a single step per call
            # ignores the count: rebuild them as loops (a loop runs one step as well, so they
            # can stay cached when the count goes back to 1 after this fit).
            self.train_function = self.test_function = self.predict_function = None
            self._steps_per_execution.assign(self.DEFAULT_STEPS_PER_EXECUTION)
        try:
            return super().fit(x, *args, **kwargs)
        finally:
            if several:  # evaluate, predict and train_on_batch go on one step per call
                self._steps_per_execution.assign(1)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_examples(x, "evaluate")
        # callbacks is evaluate's 7th argument, x the 1st
        args, kwargs = compat.convert_callbacks_argument(args, kwargs, position=5)
        return super().evaluate(x, *args, **kwargs)

    def _check_examples(self, x, where):
        unit = self.likelihood in ("bernoulli", "discretized_logistic")
        validation.check_examples(x, self._data_shape, where, unit_interval=unit)

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
        minimize(self.optimizer, loss, self.trainable_variables, tape)
        return self._report(terms)

    def test_step(self, data):
        x = tf.convert_to_tensor(inputs_of(data), tf.float32)
        return self._report(self.compute_terms(x, training=False))

    def get_config(self):
        """The constructor's arguments as plain values; users' bodies in Keras' own
        serialization (a class name and its config: no code), which `from_config` rebuilds."""
        config = {"name": self.name, **{key: getattr(self, key) for key in self.config_keys}}
        for role in self._user_bodies:
            config[role] = tf_keras.saving.serialize_keras_object(getattr(self, role))
        if len(self._user_bodies) == 2:
            for key in self.body_arguments:
                config.pop(key, None)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for role in ("encoder", "decoder"):
            if isinstance(config.get(role), dict):
                # Under tf_keras.models.load_model(safe_mode=True) this refuses Lambda layers.
                config[role] = tf_keras.saving.deserialize_keras_object(config[role])
        return cls(**config)

    def state_variables(self):
        """The variables that make the trained model: its weights and non-trainable state
        (batch-norm statistics, a KL weight, a fitted code density), in `variables` order,
        without the running means of its metrics. The export keeps these."""
        metric_ids = {id(v) for metric in self.metrics for v in metric.variables}
        return [v for v in self.variables if id(v) not in metric_ids]

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
