"""The variational autoencoder (Kingma & Welling 2013)."""
import numpy as np
import tensorflow as tf

from tfvae import layers, networks, objectives
from tfvae.models.base import (LatentVariableModel, check_positive_int, check_shape_arg,
                               stateless_normal_per_seed)
from tfvae.models.registry import register


@register("vae")
class VAE(LatentVariableModel):
    """A VAE: Gaussian posterior q(z|x), standard normal prior p(z), likelihood p(x|z).

    The loss is the negative ELBO, -E_q[log p(x|z)] + beta * KL(q(z|x) || p(z)), with the
    expectation estimated by one reparameterized sample and the KL in closed form. `fit` and
    `evaluate` report per example, in nats: `loss`; `elbo` (the bound on log p(x), beta = 1);
    `reconstruction`, -E_q[log p(x|z)]; `kl`.

    Args:
        input_shape: shape of one example, e.g. (28, 28, 1).
        latent_dim: size of z.
        hidden_units: widths of the MLP's hidden layers (encoder order; the decoder mirrors
            them), or the filters of the conv layers for network="conv".
        likelihood: "bernoulli", "gaussian" or "discretized_logistic" (8-bit data in [0, 1]).
        likelihood_scale: for "gaussian", a fixed standard deviation; None learns one per pixel.
        network: "mlp" or "conv".
        activation: hidden layers' activation.
        beta: weight of the KL term in the loss (beta-VAE); the reported ELBO always uses 1.

    Example:
        model = VAE(input_shape=(28, 28, 1), latent_dim=32)
        model.compile()
        model.fit(tfvae.data.load("mnist", "train"), epochs=10)
    """

    config_keys = ("input_shape", "latent_dim", "hidden_units", "likelihood",
                   "likelihood_scale", "network", "activation", "beta")

    def __init__(self, input_shape=(28, 28, 1), latent_dim=32, hidden_units=(512, 256),
                 likelihood="bernoulli", likelihood_scale=None, network="mlp",
                 activation="relu", beta=1.0, name="vae", **kwargs):
        super().__init__(name=name, **kwargs)
        self._data_shape = check_shape_arg("input_shape", input_shape)
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        networks.check_network_args(network, self._data_shape, self.hidden_units)
        if beta < 0:
            raise ValueError(f"beta={beta!r} must be >= 0")
        self.likelihood, self.likelihood_scale = likelihood, likelihood_scale
        self.network, self.activation, self.beta = network, activation, float(beta)

        self.posterior = layers.GaussianPosterior((self.latent_dim,), name="posterior")
        self.likelihood_head = layers.likelihood_head(likelihood, self._data_shape,
                                                      scale=likelihood_scale, name="likelihood")
        self.encoder = networks.encoder_body(self._data_shape, self.hidden_units,
                                             self.posterior.params_size(), network, activation)
        self.decoder = networks.decoder_body(self.latent_dim, self._data_shape, self.hidden_units,
                                             self.likelihood_head.params_per_element, network,
                                             activation)
        self._finish_init(("loss", "elbo", "reconstruction", "kl"))

    @property
    def latent_shape(self):
        return (self.latent_dim,)

    def prior(self):
        return layers.standard_normal(self.latent_shape)

    def encode(self, x, training=False):
        return self.posterior(self.encoder(x, training=training))

    def decode(self, z, training=False):
        return self.likelihood_head(self.decoder(z, training=training))

    def compute_terms(self, x, training=False):
        q = self.encode(x, training=training)
        z = tf.convert_to_tensor(q)  # the head's reparameterized sample: gradients reach mu, sigma
        reconstruction = -self.decode(z, training=training).log_prob(x)
        kl = objectives.kl_divergence(q, self.prior(), z)
        return {"loss": reconstruction + self.beta * kl, "elbo": -(reconstruction + kl),
                "reconstruction": reconstruction, "kl": kl}

    def sample_latent(self, seeds):
        return stateless_normal_per_seed(seeds, self.latent_shape)

    def log_weights(self, x, num_samples):
        """[num_samples, batch] importance log-weights log p(x, z_i) - log q(z_i|x), z_i ~ q."""
        q = self.encode(x)
        z = q.sample(num_samples)                                     # [k, batch, latent]
        batch = tf.shape(x)[0]
        flat_z = tf.reshape(z, [-1, self.latent_dim])
        x_repeated = tf.reshape(tf.broadcast_to(x[None], tf.concat([[num_samples], tf.shape(x)], 0)),
                                tf.concat([[-1], tf.shape(x)[1:]], 0))
        log_px = tf.reshape(self.decode(flat_z).log_prob(x_repeated), [num_samples, batch])
        return log_px + self.prior().log_prob(z) - q.log_prob(z)

    def log_likelihood(self, x, num_samples=5000, chunk_size=None):
        """Importance-sampled log p(x) per example (Burda et al. 2015), in nats.

        The samples are drawn in chunks so that num_samples * batch * pixels stays near 4M
        floats whatever k is."""
        x = tf.convert_to_tensor(x, tf.float32)
        if chunk_size is None:
            per_sample = int(x.shape[0]) * int(np.prod(self._data_shape))
            chunk_size = max(1, min(int(num_samples), 4_000_000 // max(per_sample, 1)))
        return objectives.importance_sampled_log_likelihood(self.log_weights, x, num_samples,
                                                            chunk_size)
