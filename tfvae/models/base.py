"""The Keras plumbing every model of the zoo shares, and the objective and evaluation every VAE
shares. A family is one file on top of this one and `tfvae.objectives`.

A family subclasses `LatentVariableModel` (the autoencoders) or `VariationalModel` (the VAEs).
Its constructor reads top to bottom:

    super().__init__(input_shape=..., likelihood=..., ..., name=name, **kwargs)  # data, p(x|.)
    ... its own layers (the bodies with `add_bodies`, which checks their shapes) ...
    self.build_weights()                      # every weight now, so that saved ones load at once

and it defines:
- `encode(x)`: the posterior q(z|x) as a TFP distribution (a point mass for the deterministic
  autoencoders), whose tensor value is a code z;
- for a VAE, `draw(features, training)`: one reparameterized draw of every latent per row of
  `features(x)`, returned as an `objectives.Draw` (the decoder's p(x|z) there, the KL term of
  each stochastic layer, log p(z) - log q(z|x)); `VariationalModel.compute_terms` turns it into
  the ELBO and the loss, the IWAE bound and the log-likelihood;
- for an autoencoder, `compute_terms(x, training)` itself: per-example tensors, among them
  `loss`, the quantity minimised; every entry is also reported as a metric of that name.

Everything else comes from here: `decode`, `train_step`, `test_step`, `call`, `get_config` /
`from_config` with users' own bodies, and the tensor functions that `tfvae.exporting` turns into
signatures, so every family trains, evaluates and exports the same way. A family registers
itself with `@tfvae.models.register(name)` and declares `example_config`, the small
configuration the shared test battery builds it with.
"""
import functools

import numpy as np
import tensorflow as tf
import tf_keras

from tfvae import compat, layers, networks, objectives, progress, randomness, speed, validation


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

    Args:
        input_shape: the shape of one example, e.g. (28, 28, 1).
        likelihood: p(x|.), "bernoulli", "gaussian" or "discretized_logistic".
        likelihood_scale: for "gaussian", a fixed standard deviation; None learns one per pixel.
    """

    #: constructor arguments that get_config returns; a subclass lists its own.
    config_keys = ()
    #: arguments that configure only the built-in bodies: given with both `encoder=` and
    #: `decoder=` they would configure nothing, so that is refused (and get_config leaves them out)
    body_arguments = ()
    #: a small configuration for 8x8x1 data: the shared test battery builds every family with it
    example_config = {}

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

    def __init__(self, input_shape, likelihood="bernoulli", likelihood_scale=None, name=None,
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self._data_shape = check_shape_arg("input_shape", input_shape)
        self.likelihood, self.likelihood_scale = likelihood, likelihood_scale
        self.likelihood_head = layers.likelihood_head(likelihood, self._data_shape,
                                                      scale=likelihood_scale, name="likelihood")
        self._user_bodies = ()

    @property
    def input_shape(self):
        """The shape of one example, without the batch dimension (the constructor argument)."""
        return self._data_shape

    @property
    def latent_shape(self):
        """The shape of one code z, what `decode` takes and `sample` draws."""
        return (self.latent_dim,)

    # ---- building --------------------------------------------------------------------------
    def given_bodies(self, encoder, decoder):
        """Record which bodies the user gave (get_config serializes those) and check them."""
        given = {"encoder": encoder, "decoder": decoder}
        self._user_bodies = tuple(role for role, body in given.items() if body is not None)
        for role in self._user_bodies:
            networks.check_body(role, given[role])

    def attach_encoder(self, body, head_size):
        """`encoder` = the body (x -> features, shape-checked), `encoder_head` = Dense(head_size)
        on its features: a posterior's parameters or an autoencoder's code."""
        networks.check_encoder_output(body, self._data_shape)
        self.encoder = body
        self.encoder_head = tf_keras.layers.Dense(head_size, name="encoder_head")

    def attach_decoder(self, body, code_size):
        """`decoder` = the body (z -> features, shape-checked), `decoder_head` = the projection
        of its features to the likelihood's parameters."""
        networks.check_decoder_output(body, code_size, self._data_shape)
        self.decoder = body
        self.decoder_head = networks.LikelihoodProjection(
            self._data_shape, self.likelihood_head.params_per_element, name="decoder_head")

    def add_bodies(self, encoder, decoder, head_size, network, hidden_units, activation):
        """The bodies of a family with one encoder and one decoder of `latent_dim`: the user's
        where given, the built-in `network` of `hidden_units` widths otherwise; then their
        heads."""
        self.given_bodies(encoder, decoder)
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
        self.attach_encoder(encoder, head_size)
        self.attach_decoder(decoder, self.latent_dim)

    def metric_names(self):
        """The terms `fit` and `evaluate` report, each a key of `compute_terms`."""
        raise NotImplementedError

    def build_weights(self):
        """The last line of a constructor: one mean tracker per reported term, and every weight
        built by one forward pass on a dummy batch, so that weights can be loaded at once."""
        self._trackers = {name: tf_keras.metrics.Mean(name=name) for name in self.metric_names()}
        self(tf.zeros((1, *self._data_shape)))

    # ---- what a family defines -------------------------------------------------------------
    def encode(self, x, training=False):
        raise NotImplementedError

    def compute_terms(self, x, training=False):
        raise NotImplementedError

    def sample_latent(self, seeds):
        """One code per int64 seed from the prior N(0, I), deterministic for a seed (drawn with
        tfvae.randomness, as every runtime draws it)."""
        size = int(np.prod(self.latent_shape))
        return tf.reshape(randomness.normal(seeds, size), [-1, *self.latent_shape])

    # ---- shared model pieces ---------------------------------------------------------------
    def features(self, x, training=False):
        """The deterministic work on x, done once however many posterior draws follow: here the
        encoder head's output (the posterior's parameters, or the code)."""
        return self.encoder_head(self.encoder(x, training=training))

    def decode(self, z, training=False):
        """The likelihood p(x|z) as a TFP distribution."""
        return self.likelihood_head(self.decoder_head(self.decoder(z, training=training)))

    def code(self, x, training=False):
        """A deterministic code for x: the posterior mean."""
        return self.encode(x, training=training).mean()

    def call(self, x, training=False):
        """The reconstruction: the likelihood's mean at the deterministic code."""
        return self.decode(self.code(x, training=training), training=training).mean()

    # ---- Keras -----------------------------------------------------------------------------
    def compile(self, optimizer=None, jit_compile="auto", steps_per_execution=None, **kwargs):
        """`compile()` with Adam(1e-3) unless told otherwise; the model brings its own loss.

        jit_compile="auto" compiles the training step with XLA where `xla_pays()` says it was
        measured to pay, on one replica, unless `run_eagerly` is asked for.

        steps_per_execution=None lets each `fit` choose (`tfvae.speed.steps_per_call`): several
        steps per call of the compiled function in a long fit, one in a short one and whenever
        a callback must see every step (`tfvae.callbacks.needs_every_step`: e.g.
        `KLWarmup(steps=...)`, a ModelCheckpoint saving every N steps, a callback of one's own
        with batch hooks). A number (1 included) or Keras' "auto" (its tuner) is kept as given.
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
        self._compile_arguments = dict(optimizer=optimizer, jit_compile=jit_compile, **kwargs)
        self._fit_chooses_steps = steps_per_execution is None and not kwargs.get("run_eagerly")
        super().compile(steps_per_execution=steps_per_execution or 1, **self._compile_arguments)

    def _steps_per_call(self, steps):
        """Compile again for `steps` training steps per call (the optimizer, and with it its
        state, is the same object)."""
        if int(self.steps_per_execution) != steps:
            super().compile(steps_per_execution=steps, **self._compile_arguments)

    #: signatures (name -> why) that LiteRT and ONNX exports leave out because their graph
    #: needs TensorFlow ops those formats lack; every other signature converts (tfvae.formats)
    tensorflow_only_signatures = {}

    def xla_pays(self):
        """Whether XLA speeds this model's training step up on CPU (bench/throughput.py): yes for
        networks without convolutions and a Bernoulli or Gaussian likelihood, where it removes
        the framework's overhead; XLA's CPU convolutions and the discretized logistic's many
        element-wise branches ran slower compiled (bench/results/conv_tutorial.json). A family
        overrides this where it measured otherwise."""
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

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None, validation_freq=1, max_queue_size=10, workers=1,
            use_multiprocessing=False):
        """`tf_keras.Model.fit`, after checking x (shape, dtype, finite values) up front;
        Keras 3 callbacks are converted to their tf_keras twins."""
        self._check_examples(x, "fit")
        callbacks = compat.to_tf_keras_callbacks(callbacks)
        several = getattr(self, "_fit_chooses_steps", False) and speed.steps_per_call(
            x, batch_size, epochs - initial_epoch, steps_per_epoch, callbacks) > 1
        if several:
            self._steps_per_call(speed.STEPS_PER_CALL)
        try:
            return super().fit(
                x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
                validation_split=validation_split, validation_data=validation_data,
                shuffle=shuffle, class_weight=class_weight, sample_weight=sample_weight,
                initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                validation_steps=validation_steps, validation_batch_size=validation_batch_size,
                validation_freq=validation_freq, max_queue_size=max_queue_size,
                workers=workers, use_multiprocessing=use_multiprocessing)
        finally:
            if several:  # evaluate, predict and train_on_batch go on one step per call
                self._steps_per_call(1)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, callbacks=None, max_queue_size=10, workers=1,
                 use_multiprocessing=False, return_dict=False, **kwargs):
        """`tf_keras.Model.evaluate`, after checking x as `fit` does."""
        self._check_examples(x, "evaluate")
        return super().evaluate(
            x, y, batch_size=batch_size, verbose=verbose, sample_weight=sample_weight,
            steps=steps, callbacks=compat.to_tf_keras_callbacks(callbacks),
            max_queue_size=max_queue_size, workers=workers,
            use_multiprocessing=use_multiprocessing, return_dict=return_dict, **kwargs)

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
    # tf.functions with fixed input signatures (tfvae.signatures); nothing here knows about
    # SavedModels. Whatever they draw, they draw from the seeds with tfvae.randomness.
    def encode_outputs(self, x, seeds):
        q = self.encode(x)
        mean, stddev = q.mean(), q.stddev()
        eps = tf.reshape(randomness.normal(seeds, int(np.prod(self.latent_shape))),
                         tf.shape(mean))
        return {"mean": mean, "stddev": stddev, "z": mean + stddev * eps}

    def decode_outputs(self, z):
        return {"x": self.decode(z).mean()}

    def reconstruct_outputs(self, x):
        return {"x": self(x)}

    def score_outputs(self, x, seeds):
        """The per-example terms of `compute_terms` in evaluation mode (e.g. the ELBO)."""
        return self.compute_terms(x, training=False)

    def sample_outputs(self, seeds):
        z = self.sample_latent(seeds)
        return {"z": z, "x": self.decode(z).mean()}

    def log_likelihood_outputs(self, x, seeds, k):
        """A model without a likelihood of x (an autoencoder): log p(x | its reconstruction)."""
        return {"log_likelihood": -self.compute_terms(x, training=False)["reconstruction"]}

    # ---- conveniences for notebooks ---------------------------------------------------------
    def generate(self, num=None, seeds=None):
        """Decoded samples (likelihood means) as a numpy array, from `num` seeds 0..num-1 or the
        given `seeds` (the same seeds give the same images, as the export's `sample` does)."""
        if seeds is None:
            seeds = np.arange(num if num is not None else 16)
        return self.sample_outputs(tf.constant(seeds, tf.int64))["x"].numpy()


class VariationalModel(LatentVariableModel):
    """Base of the VAEs: the objective and the evaluation, written once from a family's `draw`.

    The loss per example is -log p(x|z) + beta * kl_weight * sum_l FB(KL_l), FB the free-bits
    floor, or with `iwae_samples=k > 1` the negative IWAE bound with k samples (see
    tfvae.objectives). Whatever the loss, the reported `elbo`, `reconstruction` and `kl` are the
    plain one-draw (k = 1, beta = 1, no floor) quantities, so runs with different objectives
    stay comparable.

    KL warm-up (Sønderby et al. 2016) comes two ways, which multiply:
    - `kl_warmup_steps=N` (a constructor argument): in training, the KL weight rises linearly
      from 0 to 1 over the first N optimizer steps, computed inside the compiled train step from
      the optimizer's step count, so it holds at any `steps_per_execution` and resumes with the
      optimizer. The models with several stochastic layers do this by default;
    - `kl_weight`, a non-trainable variable (1.0 unless a callback such as
      `tfvae.callbacks.KLWarmup` moves it), read inside the compiled train step. It is saved
      with the weights, so training resumes where the warm-up was, but it is not in get_config.
    Evaluation always weighs the KL fully.

    Args (besides LatentVariableModel's):
        beta: weight of the KL term in the loss (beta-VAE); the reported ELBO always uses 1.
        free_bits: a floor, in nats, on each layer's batch-averaged KL in the loss (Kingma et
            al. 2016); 0 for none.
        iwae_samples: k > 1 trains on the IWAE bound with k samples (Burda et al. 2015).
        kl_warmup_steps: the in-graph warm-up's length in optimizer steps; 0 for none.
    """

    def __init__(self, input_shape, likelihood="bernoulli", likelihood_scale=None, beta=1.0,
                 free_bits=0.0, iwae_samples=1, kl_warmup_steps=0, name=None, **kwargs):
        super().__init__(input_shape=input_shape, likelihood=likelihood,
                         likelihood_scale=likelihood_scale, name=name, **kwargs)
        if beta < 0:
            raise ValueError(f"beta={beta!r} must be >= 0")
        if free_bits < 0:
            raise ValueError(f"free_bits={free_bits!r} must be >= 0 (nats per stochastic layer)")
        self.beta, self.free_bits = float(beta), float(free_bits)
        self.iwae_samples = validation.check_positive_int("iwae_samples", iwae_samples)
        if self.free_bits > 0 and self.iwae_samples > 1:
            raise ValueError("free_bits floors the KL terms of the ELBO; it does not apply to "
                             f"the IWAE objective (iwae_samples={self.iwae_samples}): use one")
        self.kl_warmup_steps = validation.check_int("kl_warmup_steps", kl_warmup_steps,
                                                    minimum=0)
        self.kl_weight = self.add_weight(name="kl_weight", shape=(), initializer="ones",
                                         trainable=False)
        # log_likelihood's compiled kernel, of a partial rather than the method: TensorFlow
        # counts the traces of a function's code across every model in the process, so
        # evaluating a few models in turn would warn of retracing; a partial is counted alone.
        self._log_weights_for_evaluation = tf.function(
            functools.partial(self._log_weights_in_xla), reduce_retracing=True)

    # ---- what a VAE family defines ----------------------------------------------------------
    def draw(self, features, training=False, noise=None):
        """One reparameterized draw of every latent per row of `features` (the output of
        `features(x)`, or its rows repeated): an `objectives.Draw`. `noise` [rows, noise_size]
        is the standard normal noise of the draw; None draws it with TensorFlow's random ops."""
        raise NotImplementedError

    @property
    def noise_size(self):
        """The standard normal numbers one draw of every latent takes."""
        return int(np.prod(self.latent_shape))

    def latent_means(self, x):
        """Per stochastic layer, the posterior means E_q[z_l] of a batch, [batch, d_l]: the
        activity `active_units` counts."""
        raise NotImplementedError

    def prior(self):
        """p(z) = N(0, I) over the codes (the hierarchies' top layer has its own)."""
        return layers.standard_normal(self.latent_shape)

    @property
    def num_layers(self):
        """How many stochastic layers; each has its KL term (`kl_1` ... when more than one)."""
        return 1

    def metric_names(self):
        per_layer = tuple(f"kl_{l}" for l in range(1, self.num_layers + 1))
        names = ("loss", "elbo", "reconstruction", "kl") + (per_layer if self.num_layers > 1 else ())
        return names + (("bits_per_dim",) if self.likelihood == "discretized_logistic" else ())

    # ---- the objective -----------------------------------------------------------------------
    def compute_terms(self, x, training=False, seeds=None):
        """The terms of one draw z ~ q(z|x) per example (objectives.elbo_terms), and the loss;
        with int64 `seeds` [batch] the draws come from them (tfvae.randomness)."""
        noise = None if seeds is None else randomness.normal(seeds, self.noise_size)
        draw = self.draw(self.features(x, training=training), training=training, noise=noise)
        log_px = draw.p_x.log_prob(x)
        terms = objectives.elbo_terms(log_px, draw.kls)
        if self.likelihood == "discretized_logistic":  # a probability mass: a code length
            terms["bits_per_dim"] = objectives.bits_per_dim(terms["elbo"],
                                                            int(np.prod(self._data_shape)))
        weight = self._objective_kl_weight(training)
        if self.iwae_samples > 1:
            log_px, log_ratio = self._draws(x, self.iwae_samples, training, seeds,
                                            start=self.noise_size)
            terms["loss"] = objectives.iwae_loss(log_px, log_ratio, weight)
        else:
            terms["loss"] = objectives.elbo_loss(log_px, draw.kls, weight, self.free_bits)
        return terms

    def _objective_kl_weight(self, training):
        """beta * kl_weight, times the in-graph warm-up ramp while training."""
        weight = self.beta * self.kl_weight
        if training and self.kl_warmup_steps and self.optimizer is not None:
            step = tf.cast(self.optimizer.iterations, tf.float32)
            weight *= tf.minimum(1.0, step / self.kl_warmup_steps)
        return weight

    def _draws(self, x, k, training=False, seeds=None, start=0, features=None):
        """log p(x|z_i) and log p(z_i) - log q(z_i|x), each [k, batch], for k draws per example:
        the features are computed once and repeated (row i * batch + j holds draw i of example
        j), and x is read once (layers.log_prob_of_copies). With int64 `seeds` [batch], draw i
        of an example takes numbers start + i * noise_size ... of its seed's stream."""
        if features is None:
            features = self.features(x, training=training)
        noise = None
        if seeds is not None:
            size = self.noise_size
            noise = tf.reshape(randomness.normal(seeds, k * size, start=start), [-1, k, size])
            noise = tf.reshape(tf.transpose(noise, [1, 0, 2]), [-1, size])
        draw = self.draw(tf.nest.map_structure(
            lambda t: tf.tile(t, [k] + [1] * (t.shape.rank - 1)), features),
            training=training, noise=noise)
        log_px = layers.log_prob_of_copies(draw.p_x, x, k)
        return tf.reshape(log_px, [k, -1]), tf.reshape(draw.log_ratio, [k, -1])

    # ---- the export's draws from seeds ----------------------------------------------------
    def score_outputs(self, x, seeds):
        return self.compute_terms(x, training=False, seeds=seeds)

    #: draws per pass of the export's log_likelihood: bounds its memory whatever k is
    EXPORT_CHUNK = 100

    def log_likelihood_outputs(self, x, seeds, k):
        """The importance-sampled log p(x) with k[j] draws for example j, drawn from its seed:
        numbers i * noise_size ... of the seed's stream make draw i, so the estimate of an
        example depends on its seed and k alone. In passes of EXPORT_CHUNK draws, masking the
        draws past an example's k."""
        k = tf.maximum(k, 1)
        chunk, floor = self.EXPORT_CHUNK, tf.constant(-1e30)   # floor: a finite -inf
        features = self.features(x)
        most = tf.reduce_max(k)

        def one_pass(i, total):
            start = i * chunk
            log_px, log_ratio = self._draws(x, chunk, seeds=seeds, start=start * self.noise_size,
                                            features=features)
            weights = tf.where((start + tf.range(chunk, dtype=tf.int64))[:, None] < k[None, :],
                               log_px + log_ratio, floor)
            peak = tf.maximum(tf.reduce_max(weights, axis=0), total)
            total = peak + tf.math.log(tf.reduce_sum(tf.exp(weights - peak), axis=0)
                                       + tf.exp(total - peak))
            return i + 1, total

        # No integer division: LiteRT has none for int64.
        _, total = tf.while_loop(lambda i, total: i * chunk < most, one_pass,
                                 [tf.constant(0, tf.int64), tf.fill(tf.shape(k), floor)])
        return {"log_likelihood": total - tf.math.log(tf.cast(k, tf.float32))}

    # ---- evaluation ------------------------------------------------------------------------
    def log_weights(self, x, num_samples, training=False):
        """[num_samples, batch] importance log-weights log p(x, z_i) - log q(z_i|x), z_i ~ q."""
        log_px, log_ratio = self._draws(tf.convert_to_tensor(x, tf.float32), num_samples,
                                        training=training)
        return log_px + log_ratio

    def iwae_bound(self, x, num_samples):
        """L_k(x) per example: one draw of the IWAE bound with k samples (k = 1: the ELBO)."""
        return objectives.log_mean_exp(self.log_weights(x, num_samples))

    def _log_weights_in_xla(self, x, num_samples):
        # One graph per chunk size: eager runs of the chain cost several times more
        # (bench/likelihood.py).
        with layers.xla_log_probs():
            return self.log_weights(x, num_samples)

    #: floats of likelihood per chunk of samples (chunk * batch * pixels) when chunk_size is
    #: None: 16M (64 MB a tensor), 204 samples of 100 MNIST images. On the paper's VAE the cost
    #: per sample was flat from 50 to 1000 samples a chunk; this bounds memory for any k.
    LIKELIHOOD_CHUNK_FLOATS = 16_000_000

    def log_likelihood(self, x, num_samples=5000, batch_size=100, chunk_size=None,
                       verbose="auto"):
        """Importance-sampled log p(x) per example (Burda et al. 2015), in nats: a [n] tensor.

        log p(x) ~ log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x), with k = num_samples.

        Args:
            x: examples [n, *input_shape], any n, or a tf.data.Dataset of batches (x or
                (x, ...)); arrays go through in batches of `batch_size`.
            num_samples: k.
            chunk_size: samples drawn at once per batch; None: as many as keep chunk * batch *
                pixels near `LIKELIHOOD_CHUNK_FLOATS`, so memory stays bounded whatever k is.
            verbose: a progress bar on stderr: "auto" shows it when there is more than one
                batch, 1 always, 0 never.
        """
        num_samples = validation.check_positive_int("num_samples", num_samples)
        batch_size = validation.check_positive_int("batch_size", batch_size)
        if isinstance(x, tf.data.Dataset):
            batches, total = (inputs_of(b) for b in x), int(x.cardinality())
            total = total if total > 0 else None
        else:
            x = np.asarray(x, np.float32) if not tf.is_tensor(x) else x
            batches = (x[i:i + batch_size] for i in range(0, int(x.shape[0]), batch_size))
            total = -(-int(x.shape[0]) // batch_size)
        show = (total is None or total > 1) if verbose == "auto" else bool(verbose)
        results = []
        with progress.Progress(f"log-likelihood (k = {num_samples})", total, "batches",
                               show=show) as bar:
            for batch in batches:
                batch = tf.convert_to_tensor(batch, tf.float32)
                chunk = chunk_size
                if chunk is None:
                    per_sample = int(batch.shape[0]) * int(np.prod(self._data_shape))
                    chunk = max(1, self.LIKELIHOOD_CHUNK_FLOATS // max(per_sample, 1))
                    # Equal chunks: one traced graph for all but (at most) the last.
                    chunk = -(-num_samples // -(-num_samples // min(chunk, num_samples)))
                results.append(objectives.importance_sampled_log_likelihood(
                    self._log_weights_for_evaluation, batch, num_samples, chunk))
                bar.update()
        if not results:
            raise ValueError("log_likelihood got no examples")
        return tf.concat(results, axis=0)

    def bits_per_dim(self, x, num_samples=5000):
        """-log p(x) / (D ln 2) per example, from the importance-sampled log-likelihood."""
        return objectives.bits_per_dim(self.log_likelihood(x, num_samples),
                                       int(np.prod(self._data_shape)))

    def active_units(self, data, threshold=0.01):
        """Burda et al.'s active units, one count per stochastic layer: the units u whose
        posterior mean E_q(u|x)[u] varies across the data with variance above `threshold`.

        Args:
            data: an array of examples or a tf.data.Dataset of batches (x or (x, ...)).
        """
        if not isinstance(data, tf.data.Dataset):
            data = tf.data.Dataset.from_tensor_slices(np.asarray(data, np.float32)).batch(256)
        sums = squares = None
        count = 0
        for batch in data:
            means = [m.numpy().astype(np.float64) for m in self.latent_means(
                tf.convert_to_tensor(inputs_of(batch), tf.float32))]
            batch_sums = [m.sum(0) for m in means]
            batch_squares = [(m ** 2).sum(0) for m in means]
            sums = batch_sums if sums is None else [a + b for a, b in zip(sums, batch_sums)]
            squares = batch_squares if squares is None else [
                a + b for a, b in zip(squares, batch_squares)]
            count += means[0].shape[0]
        variances = [s2 / count - (s / count) ** 2 for s, s2 in zip(sums, squares)]
        return [int((v > threshold).sum()) for v in variances]
