"""Distribution heads: Keras layers that turn a network's flat output into a TFP distribution.

Each head pairs `params_size()` (how many numbers the layer before it must output)
with the distribution it builds, as TFP's named layers do. Unlike `tfp.layers.DistributionLambda`,
whose config marshals Python bytecode, every head here has a config of plain values, so nothing
pickled is ever saved or loaded.

Distribution math runs in float32 whatever the layer policy (mixed precision keeps
log-probabilities and KL terms exact enough to compare to the nat).
"""
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from tfvae import validation

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


@tf_keras.saving.register_keras_serializable(package="tfvae")
class BernoulliLikelihood(DistributionHead):
    """p(x|z) = prod Bernoulli(x_i; sigmoid(logit_i)); log_prob is the (negative) binary
    cross-entropy, which is also what grey-level data in [0, 1] is trained with."""

    params_per_element = 1

    def _make(self, params):
        (logits,) = self._split_params(params)
        return self._independent(tfd.Bernoulli(logits=logits, dtype=tf.float32))


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
class PrecisionWeightedGaussian(DistributionHead):
    """The Ladder VAE's posterior (Sønderby et al. 2016): the diagonal Gaussian combining a
    bottom-up estimate N(mu_hat, sigma_hat^2) with the top-down prior N(mu_p, sigma_p^2) by
    precision weighting,
        sigma_q^2 = 1 / (sigma_hat^-2 + sigma_p^-2),
        mu_q = (mu_hat sigma_hat^-2 + mu_p sigma_p^-2) sigma_q^2.

    Its params are the two heads' params side by side, [mu_hat, raw_hat, mu_p, raw_p], each
    scale being softplus(raw) + min_scale as in `GaussianPosterior`, so the prior's params can
    be passed as they are. Converts to a reparameterized sample.
    """

    params_per_element = 4

    def __init__(self, event_shape, min_scale=1e-4, convert_to_tensor_fn="sample", **kwargs):
        self.min_scale = float(min_scale)
        super().__init__(event_shape, convert_to_tensor_fn, **kwargs)

    @staticmethod
    def combine(mu_hat, sigma_hat, mu_p, sigma_p):
        """(mu_q, sigma_q) from the two Gaussians' parameters."""
        precision_hat, precision_p = sigma_hat ** -2, sigma_p ** -2
        variance = 1.0 / (precision_hat + precision_p)
        return (mu_hat * precision_hat + mu_p * precision_p) * variance, tf.sqrt(variance)

    def _make(self, params):
        mu_hat, raw_hat, mu_p, raw_p = self._split_params(params)
        loc, scale = self.combine(mu_hat, tf.math.softplus(raw_hat) + self.min_scale,
                                  mu_p, tf.math.softplus(raw_p) + self.min_scale)
        return self._independent(tfd.Normal(loc, scale))

    def get_config(self):
        return {**super().get_config(), "min_scale": self.min_scale}
