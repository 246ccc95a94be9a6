"""The VAE with an inverse autoregressive flow posterior (Kingma et al. 2016).

The encoder gives a diagonal Gaussian N(mu_0, sigma_0^2) and a context h; T flow steps then
transform its sample, each z_t = sigma_t * z_t-1 + (1 - sigma_t) * m_t with [m_t, s_t] =
MADE_t(z_t-1, h) and sigma_t = sigmoid(s_t). The Jacobian of each step is triangular, so

    log q(z_T|x) = log N(z_0; mu_0, sigma_0^2) - sum_t sum_i log sigma_t,i

exactly, and the KL to the prior is estimated by Monte Carlo at the sample.
"""
import math

import numpy as np
import tensorflow as tf
import tf_keras

from tfvae import layers, networks, objectives, randomness, validation
from tfvae.models.base import VariationalModel
from tfvae.models.registry import register


def made_degrees(event_size, hidden_units, reverse=False):
    """MADE's unit degrees (Germain et al. 2015): for the inputs, then each hidden layer, an int32
    vector; an input's degree is its place in the order (1..D, or D..1 when `reverse`)."""
    input_degrees = np.arange(1, event_size + 1, dtype=np.int32)
    if reverse:
        input_degrees = input_degrees[::-1]
    degrees = [input_degrees]
    for width in hidden_units:
        # Hidden degrees cycle over 1..D-1: a unit of degree k sees inputs of degree <= k.
        degrees.append((np.arange(width) % max(event_size - 1, 1) + 1).astype(np.int32))
    return degrees


def made_masks(degrees, dtype=tf.float32):
    """MADE's connectivity masks from the degrees (`made_degrees`): one [fan_in, fan_out] 0/1
    matrix per layer, inputs -> hidden -> ... -> outputs, such that output i depends on the
    inputs before i in the order only. Built with TensorFlow ops from the degree vectors, so an
    exported function holds a few hundred integers rather than the matrices (megabytes at
    MADE's widths, stored again in every signature)."""
    degrees = [tf.constant(d) for d in degrees]
    masks = [tf.cast(d_out[None, :] >= d_in[:, None], dtype)
             for d_in, d_out in zip(degrees[:-1], degrees[1:])]
    # An output of degree k may only see hidden units of degree < k (strictly).
    masks.append(tf.cast(degrees[0][None, :] > degrees[-1][:, None], dtype))
    return masks


@tf_keras.saving.register_keras_serializable(package="tfvae")
class AutoregressiveStep(tf_keras.layers.Layer):
    """One IAF step's network: a MADE over z [batch, D] conditioned on a context h [batch, C],
    returning (m, s), each [batch, D], with m_i and s_i depending on z's earlier entries (in
    the step's order) and on h only.

    The context feeds the first hidden layer and the outputs without masks. The bias of s
    starts at `initial_gate_bias` so that sigma_t = sigmoid(s) starts near 1 and the flow near
    the identity, as Kingma et al. advise.
    """

    def __init__(self, event_size, context_size, hidden_units=(64,), reverse=False,
                 activation="relu", initial_gate_bias=2.0, **kwargs):
        super().__init__(**kwargs)
        self.event_size, self.context_size = int(event_size), int(context_size)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.reverse, self.activation = bool(reverse), activation
        self.initial_gate_bias = float(initial_gate_bias)
        # numpy, made constants of each graph that uses them: a tensor created here would be
        # an eager tensor that traced functions capture as an input, which the ONNX converter
        # cannot freeze.
        self._degrees = tuple(made_degrees(self.event_size, self.hidden_units, self.reverse))
        self._activation = tf_keras.activations.get(networks.activation_function(activation))

    def build(self, input_shape):
        sizes = (self.event_size,) + self.hidden_units
        self.kernels, self.biases = [], []
        for i, (fan_in, fan_out) in enumerate(zip(sizes, self.hidden_units)):
            self.kernels.append(self.add_weight(f"kernel_{i}", (fan_in, fan_out),
                                                initializer="glorot_uniform"))
            self.biases.append(self.add_weight(f"bias_{i}", (fan_out,), initializer="zeros"))
        last = sizes[-1]
        self.m_kernel = self.add_weight("m_kernel", (last, self.event_size),
                                        initializer="glorot_uniform")
        self.s_kernel = self.add_weight("s_kernel", (last, self.event_size),
                                        initializer="glorot_uniform")
        self.m_bias = self.add_weight("m_bias", (self.event_size,), initializer="zeros")
        self.s_bias = self.add_weight(
            "s_bias", (self.event_size,),
            initializer=tf_keras.initializers.Constant(self.initial_gate_bias))
        first = self.hidden_units[0] if self.hidden_units else 0
        self.context_kernel = self.add_weight("context_kernel", (self.context_size, first),
                                              initializer="glorot_uniform")
        self.context_output_kernel = self.add_weight(
            "context_output_kernel", (self.context_size, 2 * self.event_size),
            initializer="glorot_uniform")
        super().build(input_shape)

    def call(self, z, context):
        # Keras autocasts z only: the context and the float32 masks follow the compute dtype.
        context = tf.cast(context, self.compute_dtype)
        masks = made_masks(self._degrees, self.compute_dtype)
        h = z
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            h = tf.matmul(h, kernel * masks[i]) + bias
            if i == 0:
                h += tf.matmul(context, self.context_kernel)
            h = self._activation(h)
        direct_m, direct_s = tf.split(tf.matmul(context, self.context_output_kernel), 2, axis=-1)
        m = tf.matmul(h, self.m_kernel * masks[-1]) + self.m_bias + direct_m
        s = tf.matmul(h, self.s_kernel * masks[-1]) + self.s_bias + direct_s
        return m, s

    def get_config(self):
        return {**super().get_config(), "event_size": self.event_size,
                "context_size": self.context_size, "hidden_units": self.hidden_units,
                "reverse": self.reverse, "activation": self.activation,
                "initial_gate_bias": self.initial_gate_bias}


@register("iaf_vae")
class IAFVAE(VariationalModel):
    """A VAE whose posterior is a diagonal Gaussian followed by `flow_steps` steps of inverse
    autoregressive flow, the order of the variables reversed from one step to the next.

    log q(z|x) is exact (through the log-determinants) and the KL is its one-sample Monte-Carlo
    estimate log q(z|x) - log p(z); `fit` reports `loss`, `elbo`, `reconstruction`, `kl`.

    Args:
        input_shape: shape of one example.
        latent_dim: size of z.
        hidden_units, network, encoder, decoder: the bodies, as for `VAE`.
        flow_steps: T, the number of IAF steps (0: a VAE with a Monte-Carlo KL).
        flow_hidden_units: widths of each step's MADE.
        context_dim: size of the context h the encoder passes to every step.
        likelihood, likelihood_scale, activation: as for `VAE` (the flow steps use the
            activation too, relu when your bodies replace it).
        beta, free_bits, iwae_samples, kl_warmup_steps: the objective, as for `VAE`.

    Example:
        model = IAFVAE(input_shape=(28, 28, 1), latent_dim=32, flow_steps=4)
    """

    config_keys = ("input_shape", "latent_dim", "hidden_units", "flow_steps",
                   "flow_hidden_units", "context_dim", "likelihood", "likelihood_scale",
                   "network", "activation", "beta", "free_bits", "iwae_samples",
                   "kl_warmup_steps")
    body_arguments = ("hidden_units", "network", "activation")
    example_config = dict(latent_dim=3, hidden_units=(16,), flow_steps=2, flow_hidden_units=(8,),
                          context_dim=4)

    def __init__(self, input_shape=(28, 28, 1), latent_dim=32, hidden_units=None,
                 flow_steps=2, flow_hidden_units=(64, 64), context_dim=32,
                 likelihood="bernoulli", likelihood_scale=None, network="mlp",
                 activation="relu", beta=1.0, free_bits=0.0, iwae_samples=1, kl_warmup_steps=0,
                 encoder=None, decoder=None, name="iaf_vae", **kwargs):
        super().__init__(input_shape=input_shape, likelihood=likelihood,
                         likelihood_scale=likelihood_scale, beta=beta, free_bits=free_bits,
                         iwae_samples=iwae_samples, kl_warmup_steps=kl_warmup_steps, name=name,
                         **kwargs)
        self.latent_dim = validation.check_positive_int("latent_dim", latent_dim)
        self.flow_steps = validation.check_int("flow_steps", flow_steps, minimum=0)
        self.flow_hidden_units = validation.check_widths("flow_hidden_units", flow_hidden_units)
        if not self.flow_hidden_units:
            raise ValueError(f"flow_hidden_units={flow_hidden_units!r} must be one or more "
                             f"positive widths")
        self.context_dim = validation.check_positive_int("context_dim", context_dim)
        self.base_posterior = layers.GaussianPosterior((self.latent_dim,), name="posterior")
        # The encoder head gives the base Gaussian's parameters and the flow's context h.
        self.add_bodies(encoder, decoder, self.base_posterior.params_size() + self.context_dim,
                        network, hidden_units, activation)
        flow_activation = activation or "relu"
        self.flow_layers = [AutoregressiveStep(self.latent_dim, self.context_dim,
                                               self.flow_hidden_units, reverse=t % 2 == 1,
                                               activation=flow_activation,
                                               name=f"iaf_step_{t + 1}")
                            for t in range(self.flow_steps)]
        self.build_weights()

    def _split(self, features):
        size = self.base_posterior.params_size()
        return self.base_posterior(features[:, :size]), features[:, size:]

    def encode(self, x, training=False):
        """The base Gaussian N(mu_0, sigma_0^2) (before the flow)."""
        return self._split(self.features(x, training=training))[0]

    def flow(self, features, eps):
        """(z_T, log q(z_T|x)) for the base noise eps [batch, D]."""
        q0, context = self._split(features)
        mu, sigma = q0.mean(), q0.stddev()
        z = mu + sigma * eps
        log_q = -tf.reduce_sum(0.5 * eps ** 2 + 0.5 * math.log(2 * math.pi) + tf.math.log(sigma),
                               axis=-1)
        for step in self.flow_layers:
            # The step computes in the layer policy; the flow and log q stay in float32.
            m, s = (tf.cast(t, tf.float32) for t in step(z, context))
            log_gate = tf.math.log_sigmoid(s)
            gate = tf.exp(log_gate)
            z = gate * z + (1.0 - gate) * m          # the numerically stable update
            log_q -= tf.reduce_sum(log_gate, axis=-1)
        return z, log_q

    def draw(self, features, training=False, noise=None):
        eps = tf.random.normal([tf.shape(features)[0], self.latent_dim]) if noise is None \
            else noise
        z, log_q = self.flow(features, eps)              # z = z_T, and log q(z_T|x) exactly
        log_ratio = self.prior().log_prob(z) - log_q     # log p(z) - log q(z|x)
        return objectives.Draw(p_x=self.decode(z, training=training),   # p(x|z)
                               kls=(-log_ratio,),        # the KL's one-draw Monte-Carlo estimate
                               log_ratio=log_ratio)

    def code(self, x, training=False):
        """The flow applied to the base Gaussian's mean (eps = 0): a deterministic code."""
        features = self.features(x, training=training)
        return self.flow(features, tf.zeros([tf.shape(features)[0], self.latent_dim]))[0]

    def latent_means(self, x, num_samples=16):
        # E_q[z] has no closed form under the flow: average a few posterior samples.
        features = self.features(x)
        shape = [tf.shape(features)[0], self.latent_dim]
        samples = [self.flow(features, tf.random.normal(shape))[0] for _ in range(num_samples)]
        return [tf.add_n(samples) / num_samples]

    def encode_outputs(self, x, seeds):
        features = self.features(x)
        q0, _ = self._split(features)
        eps = randomness.normal(seeds, self.latent_dim)
        return {"mean": q0.mean(), "stddev": q0.stddev(), "z": self.flow(features, eps)[0],
                "code": self.flow(features, tf.zeros_like(eps))[0]}

    def card_info(self):
        return {"signatures": {
            "encode": ("x [batch, *input_shape] float32, seed [batch] int64 -> mean, stddev: "
                       "the base Gaussian q_0(z_0|x) before the flow; z: one sample of the "
                       f"flowed posterior q(z|x) ({self.flow_steps} IAF steps, not Gaussian), "
                       "drawn from the seed; code: the flow applied to the base mean, the "
                       "deterministic code reconstruct decodes"),
            "decode": "z [batch, latent_dim] float32 -> x, the likelihood's mean",
            "sample": "seed [batch] int64 -> z ~ N(0, I), x the likelihood's mean; "
                      "deterministic per seed",
            "reconstruct": "x [batch, *input_shape] float32 -> x, the likelihood's mean at "
                           "code; also serving_default",
        }}
