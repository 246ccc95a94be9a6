"""Distribution heads: Keras layers that turn a network's flat output into a TFP distribution.

Each head pairs `params_size()` (how many numbers the layer before it must output)
with the distribution it builds, as TFP's named layers do. Unlike `tfp.layers.DistributionLambda`,
whose config marshals Python bytecode, every head here has a config of plain values, so nothing
pickled is ever saved or loaded.

Distribution math runs in float32 whatever the layer policy (mixed precision keeps
log-probabilities and KL terms exact enough to compare to the nat).
"""
import contextlib
import threading

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from tfvae import randomness, validation

tfd = tfp.distributions
tfpl = tfp.layers


def _event_size(event_shape):
    return int(np.prod(event_shape, dtype=np.int64))


class DistributionHead(tfpl.DistributionLambda):
    """A `DistributionLambda` built by a method of its own class, with a config of plain values.

    Subclasses define `params_per_element` (numbers per element of the event) and
    `_make(params)` (flat params -> distribution), and list their constructor arguments in
    `get_config`.
    """

    params_per_element = 1

    def __init__(self, event_shape, convert_to_tensor_fn="mean", **kwargs):
        kwargs.pop("make_distribution_fn", None)
        self.event_shape = tuple(int(d) for d in np.atleast_1d(event_shape))
        self._convert_name = convert_to_tensor_fn
        super().__init__(self._make, convert_to_tensor_fn, **kwargs)

    def params_size(self):
        """How many numbers the layer before this head must output per example."""
        return self.params_per_element * _event_size(self.event_shape)

    def _split_params(self, params):
        """Flat params [..., k * D] -> k tensors shaped [..., *event_shape], in float32."""
        params = tf.cast(params, tf.float32)
        batch_shape = tf.shape(params)[:-1]
        shape = tf.concat([batch_shape, self.event_shape], axis=0)
        parts = tf.split(params, self.params_per_element, axis=-1)
        return [tf.reshape(p, shape) for p in parts]

    def _independent(self, distribution):
        return tfd.Independent(distribution, reinterpreted_batch_ndims=len(self.event_shape))

    def get_config(self):
        # Skip DistributionLambda.get_config: it would marshal `_make` as bytecode.
        config = tf_keras.layers.Layer.get_config(self)
        config.update(event_shape=self.event_shape, convert_to_tensor_fn=self._convert_name)
        return config

    @classmethod
    def from_config(cls, config):
        # Lambda.from_config would look for a serialized function; the config is plain values.
        return cls(**config)


@tf_keras.saving.register_keras_serializable(package="tfvae")
class GaussianPosterior(DistributionHead):
    """Diagonal Gaussian q(z|x) = N(mu, diag(sigma^2)); converts to a reparameterized sample.

    sigma = softplus(raw) + min_scale: the floor keeps log q and the KL finite when an encoder
    drives a unit towards certainty.
    """

    params_per_element = 2

    def __init__(self, event_shape, min_scale=1e-4, convert_to_tensor_fn="sample", **kwargs):
        self.min_scale = float(min_scale)
        super().__init__(event_shape, convert_to_tensor_fn, **kwargs)

    def _make(self, params):
        loc, raw_scale = self._split_params(params)
        return self._independent(tfd.Normal(loc, tf.math.softplus(raw_scale) + self.min_scale))

    def get_config(self):
        return {**super().get_config(), "min_scale": self.min_scale}


class _Bernoulli(tfd.Bernoulli):
    """tfd.Bernoulli with log_prob computed as x * logit - softplus(logit): the same function
    as TFP's (1 - x) log(1 - p) + x log p for every x in [0, 1] (equal to float rounding, its
    gradient too), in three element-wise ops instead of two softplus and two masked products:
    half this term's time under many importance samples (the IWAE objective; the evaluation has
    its own kernel, `log_prob_of_copies`)."""

    def _log_prob(self, event):
        if self._logits is None:
            return super()._log_prob(event)
        logits = tf.convert_to_tensor(self._logits)
        return tf.cast(event, logits.dtype) * logits - tf.math.softplus(logits)


def log_prob_of_copies(distribution, x, copies):
    """log p(x) under a distribution over `copies` stacked copies of the batch x, row
    i * batch + j holding copy i of example j (as `tf.tile` stacks them): [copies * batch].

    A Bernoulli reads x once, broadcast against the logits [copies, batch, pixels], instead of
    its copies: at k = 5000 samples those are 64 MB a chunk written, then read again, and a
    tiled x of a batch size known only at run time is what LiteRT cannot resize inside the
    export's while loop. Under `xla_log_probs` that sum is one XLA-compiled kernel. Other
    distributions: their own log_prob of the copies.
    """
    logits = _bernoulli_logits_per_row(distribution)
    if logits is None:
        stacked = tf.broadcast_to(x[None], tf.concat([[copies], tf.shape(x)], 0))
        return distribution.log_prob(tf.reshape(stacked, tf.concat([[-1], tf.shape(x)[1:]], 0)))
    batch, pixels = tf.shape(x)[0], distribution.event_shape.num_elements()
    logits = tf.reshape(logits, [copies, batch, pixels])
    flat_x = tf.reshape(tf.cast(x, logits.dtype), [batch, pixels])
    log_prob = _bernoulli_log_prob_xla if _xla_log_probs_on() else _bernoulli_log_prob
    return tf.reshape(log_prob(flat_x, logits), [-1])


def _bernoulli_logits_per_row(distribution):
    """The logits of a BernoulliLikelihood's distribution (the head's output: a Bernoulli per
    element, its whole event made independent), or None for any other distribution."""
    distribution = getattr(distribution, "tensor_distribution", distribution)
    if not (isinstance(distribution, tfd.Independent)
            and isinstance(distribution.distribution, _Bernoulli)
            and distribution.distribution.logits is not None
            and distribution.event_shape.is_fully_defined()):
        return None
    logits = tf.convert_to_tensor(distribution.distribution.logits)
    whole_event = logits.shape.rank == distribution.event_shape.rank + 1
    return logits if whole_event else None


def _bernoulli_log_prob(x, logits):
    """sum_i x_i * l_i - softplus(l_i) for x [batch, pixels] and logits [copies, batch, pixels].

    softplus(l) as max(l, 0) + log(1 + exp(-|l|)): XLA's own softplus (through log1p) ran
    slower on the whole estimate (bench/likelihood_speed.py), and is no closer to a float64
    softplus.
    """
    softplus = tf.nn.relu(logits) + tf.math.log(1.0 + tf.exp(-tf.abs(logits)))
    return tf.reduce_sum(x * logits - softplus, axis=-1)


_bernoulli_log_prob_xla = tf.function(_bernoulli_log_prob, jit_compile=True,
                                      reduce_retracing=True)


_xla_log_probs = threading.local()


def _xla_log_probs_on():
    return getattr(_xla_log_probs, "on", False)


@contextlib.contextmanager
def xla_log_probs():
    """`log_prob_of_copies` traced in this context runs a Bernoulli likelihood as one
    XLA-compiled kernel (the README's likelihood speed has what it saves). Only the
    importance-sampled evaluation traces here: exported graphs stay free of XLA kernels, which
    TensorFlow Serving runs only behind an experimental flag, and training keeps the
    compilation `compile()` chose for it."""
    previous = _xla_log_probs_on()
    _xla_log_probs.on = True
    try:
        yield
    finally:
        _xla_log_probs.on = previous


@tf_keras.saving.register_keras_serializable(package="tfvae")
class BernoulliLikelihood(DistributionHead):
    """p(x|z) = prod Bernoulli(x_i; sigmoid(logit_i)); log_prob is the (negative) binary
    cross-entropy, which is also what grey-level data in [0, 1] is trained with."""

    params_per_element = 1

    def _make(self, params):
        (logits,) = self._split_params(params)
        return self._independent(_Bernoulli(logits=logits, dtype=tf.float32))


@tf_keras.saving.register_keras_serializable(package="tfvae")
class GaussianLikelihood(DistributionHead):
    """p(x|z) = prod N(x_i; mu_i, sigma_i^2) with a learned per-pixel scale (scale=None) or a
    fixed one. A learned scale is floored at `min_scale`: on near-constant pixels (MNIST's
    background) it would otherwise shrink without bound and the likelihood diverge."""

    def __init__(self, event_shape, scale=None, min_scale=1e-3, **kwargs):
        self.scale = None if scale is None else float(scale)
        self.min_scale = float(min_scale)
        self.params_per_element = 2 if scale is None else 1
        super().__init__(event_shape, **kwargs)

    def _make(self, params):
        if self.scale is None:
            loc, raw_scale = self._split_params(params)
            scale = tf.math.softplus(raw_scale) + self.min_scale
        else:
            (loc,) = self._split_params(params)
            scale = tf.fill(tf.shape(loc), self.scale)
        return self._independent(tfd.Normal(loc, scale))

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "min_scale": self.min_scale}


class DiscretizedLogistic(tfd.Distribution):
    """A logistic distribution discretized to `num_bins` evenly spaced values in [0, 1]
    (8-bit pixels / 255), as in PixelCNN++: bin k/(B-1) gets the logistic mass within half a
    bin of it, and the end bins take the tails, so the masses sum to one."""

    def __init__(self, loc, scale, num_bins=256, validate_args=False, allow_nan_stats=True,
                 name="DiscretizedLogistic"):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            self._loc = tf.convert_to_tensor(loc, dtype=tf.float32)
            self._scale = tf.convert_to_tensor(scale, dtype=tf.float32)
            self._num_bins = int(num_bins)
            super().__init__(dtype=tf.float32,
                             reparameterization_type=tfd.NOT_REPARAMETERIZED,
                             validate_args=validate_args, allow_nan_stats=allow_nan_stats,
                             parameters=parameters, name=name)

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return dict(loc=tfp.util.ParameterProperties(),
                    scale=tfp.util.ParameterProperties(),
                    num_bins=tfp.util.ParameterProperties(event_ndims=None, is_preferred=False))

    @property
    def loc(self):
        return self._loc

    @property
    def scale(self):
        return self._scale

    def _event_shape(self):
        return tf.TensorShape([])

    def _event_shape_tensor(self):
        return tf.constant([], dtype=tf.int32)

    def _batch_shape(self):
        return tf.broadcast_static_shape(self._loc.shape, self._scale.shape)

    def _batch_shape_tensor(self):
        return tf.broadcast_dynamic_shape(tf.shape(self._loc), tf.shape(self._scale))

    def _log_prob(self, x):
        # PixelCNN++'s formulation (Salimans et al. 2017): every branch stays finite, so the
        # gradient of the unselected branches of tf.where cannot turn into NaN.
        bin_width = 1.0 / (self._num_bins - 1)
        # Snap to the nearest bin so float noise in 8-bit data (k / 255.) does not shift mass.
        x = tf.round(x / bin_width) * bin_width
        centered = x - self._loc
        inverse_scale = 1.0 / self._scale
        upper = inverse_scale * (centered + 0.5 * bin_width)
        lower = inverse_scale * (centered - 0.5 * bin_width)
        log_cdf_upper = upper - tf.math.softplus(upper)          # log sigmoid(upper): x = 0
        log_survival_lower = -tf.math.softplus(lower)            # log (1 - sigmoid(lower)): x = 1
        mass = tf.sigmoid(upper) - tf.sigmoid(lower)
        # Where the bin's mass underflows, the density at the bin centre times its width.
        middle = inverse_scale * centered
        log_density_mid = middle - tf.math.log(self._scale) - 2.0 * tf.math.softplus(middle)
        log_middle = tf.where(mass > 1e-5, tf.math.log(tf.maximum(mass, 1e-12)),
                              log_density_mid + tf.math.log(bin_width))
        return tf.where(x <= 0.0, log_cdf_upper, tf.where(x >= 1.0, log_survival_lower, log_middle))

    def _mean(self):
        # The bins' mean is close to the clipped location; exact enough for a decoded image.
        return tf.clip_by_value(self._loc * tf.ones_like(self._scale), 0.0, 1.0)

    def _sample_n(self, n, seed=None):
        shape = tf.concat([[n], self._batch_shape_tensor()], axis=0)
        u = tf.random.uniform(shape, minval=1e-6, maxval=1.0 - 1e-6, seed=seed)
        logistic = self._loc + self._scale * (tf.math.log(u) - tf.math.log1p(-u))
        bins = tf.round(tf.clip_by_value(logistic, 0.0, 1.0) * (self._num_bins - 1))
        return bins / (self._num_bins - 1)


@tf_keras.saving.register_keras_serializable(package="tfvae")
class DiscretizedLogisticLikelihood(DistributionHead):
    """p(x|z) for 8-bit data scaled to [0, 1]: a discretized logistic per pixel, a probability
    mass (not a density), so -log p(x) is a code length in nats and bits/dim are meaningful."""

    params_per_element = 2

    def __init__(self, event_shape, num_bins=256, **kwargs):
        self.num_bins = int(num_bins)
        super().__init__(event_shape, **kwargs)

    def _make(self, params):
        loc, raw_scale = self._split_params(params)
        # The floor, a small fraction of a bin, keeps every bin's mass representable.
        scale = tf.math.softplus(raw_scale) + 1e-2 / (self.num_bins - 1)
        return self._independent(DiscretizedLogistic(loc, scale, self.num_bins))

    def get_config(self):
        return {**super().get_config(), "num_bins": self.num_bins}


LIKELIHOODS = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "discretized_logistic": DiscretizedLogisticLikelihood,
}


def likelihood_head(kind, event_shape, scale=None, **kwargs):
    """The likelihood layer `kind` (a key of LIKELIHOODS) for data of `event_shape`.

    `scale` fixes the Gaussian's standard deviation (None learns it per pixel); other
    likelihoods take no scale.
    """
    if kind not in LIKELIHOODS:
        raise ValueError(f"likelihood={kind!r} is not one of {sorted(LIKELIHOODS)}")
    if kind == "gaussian":
        if scale is not None:
            validation.check_number("likelihood_scale", scale, positive=True)
        return GaussianLikelihood(event_shape, scale=scale, **kwargs)
    if scale is not None:
        raise ValueError(f"likelihood_scale applies to the gaussian likelihood only, not {kind!r}")
    return LIKELIHOODS[kind](event_shape, **kwargs)


def standard_normal(shape):
    """The prior p(z) = N(0, I) over events of `shape`."""
    zeros = tf.zeros(shape, tf.float32)
    return tfd.Independent(tfd.Normal(zeros, 1.0), reinterpreted_batch_ndims=len(shape))


@tf_keras.saving.register_keras_serializable(package="tfvae")
class LatentDensity(tf_keras.layers.Layer):
    """A density over codes fitted after training, for models without a prior of their own
    (the deterministic autoencoders): a full-covariance Gaussian or a Gaussian mixture, stored
    in non-trainable weights so that save_weights, .keras files and the export carry it.

    Until `fit` is called it is N(0, I). Unused mixture components have weight 0.

    Example:
        density = LatentDensity(event_size=8, max_components=10)
        density.fit(codes, kind="gmm", components=5)       # codes [n, 8]
        z = density.sample(tf.range(16, dtype=tf.int64))   # one code per seed
    """

    #: what `fit` can fit, in the order of their code in the `kind` weight
    KINDS = ("standard_normal", "gaussian", "gmm")

    def __init__(self, event_size, max_components=10, **kwargs):
        super().__init__(**kwargs)
        self.event_size = int(event_size)
        self.max_components = validation.check_positive_int("max_density_components",
                                                            max_components)
        k, c = self.event_size, self.max_components
        # A float, not an int: the export checks every weight with is_finite.
        self.kind = self.add_weight(name="density_kind", shape=(), initializer="zeros",
                                    trainable=False)
        self.mixture_weights = self.add_weight(
            name="density_weights", shape=(c,), trainable=False,
            initializer=tf_keras.initializers.Constant(np.eye(1, c)[0]))
        self.means = self.add_weight(name="density_means", shape=(c, k), initializer="zeros",
                                     trainable=False)
        self.scale_trils = self.add_weight(
            name="density_scale_trils", shape=(c, k, k), trainable=False,
            initializer=tf_keras.initializers.Constant(np.tile(np.eye(k), (c, 1, 1))))

    @property
    def kind_name(self):
        return self.KINDS[int(round(float(self.kind.numpy())))]

    @property
    def components(self):
        """How many components are in use (0 before fitting)."""
        if self.kind_name == "standard_normal":
            return 0
        return int(np.count_nonzero(self.mixture_weights.numpy()))

    def sample(self, seeds):
        """One code per int64 seed: the component drawn by the inverse CDF of a uniform, then
        mean + scale_tril @ eps with eps ~ N(0, I); deterministic per seed (tfvae.randomness:
        eps is numbers 0.. of the seed's stream, the uniform its COMPONENT_CHOICE counter)."""
        seeds = tf.convert_to_tensor(seeds, tf.int64)
        eps = randomness.normal(seeds, self.event_size)
        u = randomness.uniform(seeds, 1, start=randomness.COMPONENT_CHOICE)[:, 0]
        cdf = tf.math.cumsum(self.mixture_weights)
        component = tf.reduce_sum(tf.cast(cdf[None, :] < u[:, None] * cdf[-1], tf.int32), axis=1)
        component = tf.minimum(component, self.max_components - 1)
        means = tf.gather(self.means, component)
        trils = tf.gather(self.scale_trils, component)
        return means + tf.linalg.matvec(trils, eps)

    def check_request(self, kind, components=None):
        """The number of components `fit(kind=kind, components=components)` would use, or a
        ValueError naming the argument that does not fit."""
        if kind not in self.KINDS[1:]:
            raise ValueError(f"kind={kind!r} is not one of {list(self.KINDS[1:])}")
        c = self.max_components
        components = 1 if kind == "gaussian" else (c if components is None else components)
        if (isinstance(components, bool) or not validation.is_real(components)
                or int(components) != components or not 1 <= components <= c):
            raise ValueError(f"components={components!r} must be an integer in [1, "
                             f"max_density_components={c}]")
        return int(components)

    def fit(self, codes, kind="gaussian", components=None, seed=0, reg=1e-6):
        """Fit the density to `codes` [n, event_size] and store it.

        Args:
            kind: "gaussian" (one full-covariance Gaussian) or "gmm" (scikit-learn's
                GaussianMixture with full covariances).
            components: for "gmm", the number of components (default: max_components), at
                most max_components.
            seed: the mixture's initialization seed.
            reg: added to the covariances' diagonals so their Cholesky factors exist.
        """
        components = self.check_request(kind, components)
        c = self.max_components
        codes = np.asarray(codes, np.float64)
        if len(codes) < 2:
            raise ValueError("fit_latent_density needs at least 2 examples")
        k = self.event_size
        if kind == "gaussian":
            weights, means = np.ones(1), codes.mean(axis=0, keepdims=True)
            covariances = np.cov(codes, rowvar=False).reshape(1, k, k) + reg * np.eye(k)
        else:
            from sklearn.mixture import GaussianMixture

            mixture = GaussianMixture(int(components), covariance_type="full", reg_covar=reg,
                                      random_state=seed).fit(codes)
            weights, means, covariances = mixture.weights_, mixture.means_, mixture.covariances_
        n = len(weights)
        trils = np.tile(np.eye(k), (c, 1, 1))
        trils[:n] = np.linalg.cholesky(covariances)
        self.mixture_weights.assign(np.pad(weights, (0, c - n)).astype(np.float32))
        self.means.assign(np.pad(means, ((0, c - n), (0, 0))).astype(np.float32))
        self.scale_trils.assign(trils.astype(np.float32))
        self.kind.assign(float(self.KINDS.index(kind)))

    def describe(self):
        """How `sample` draws, in words, for a model card."""
        return {
            "standard_normal": "codes ~ N(0, I): no density was fitted to the training codes "
                               "(call fit_latent_density before exporting)",
            "gaussian": "codes ~ a full-covariance Gaussian fitted to the training codes",
            "gmm": f"codes ~ a {self.components}-component Gaussian mixture fitted to the "
                   f"training codes",
        }[self.kind_name]

    def call(self, codes):
        return codes  # a store of weights; Keras wants a call

    def get_config(self):
        return {**super().get_config(), "event_size": self.event_size,
                "max_components": self.max_components}
