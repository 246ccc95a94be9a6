"""The variational autoencoder (Kingma & Welling 2013): a Gaussian posterior q(z|x) from an
encoder, a standard normal prior, a likelihood p(x|z) from a decoder.

One draw of the model, as `draw` writes it:
    q(z|x) = N(mu(x), sigma(x)^2)      the encoder and the posterior head
    z = mu + sigma * eps               the reparameterization trick: gradients reach mu, sigma
    p(x|z)                             the decoder and the likelihood head
    KL(q(z|x) || p(z))                 in closed form, p(z) = N(0, I)
from which `VariationalModel.compute_terms` (tfvae/models/base.py) takes the ELBO,
log p(x|z) - KL, and the loss (tfvae/objectives.py).
"""
import tensorflow as tf

from tfvae import layers, objectives, validation
from tfvae.models.base import VariationalModel
from tfvae.models.registry import register


@register("vae")
class VAE(VariationalModel):
    """A VAE: Gaussian posterior q(z|x), standard normal prior p(z), likelihood p(x|z).

    The loss is the negative ELBO, -E_q[log p(x|z)] + beta * KL(q(z|x) || p(z)), with the
    expectation estimated by one reparameterized sample and the KL in closed form. `fit` and
    `evaluate` report per example, in nats: `loss`; `elbo` (the bound on log p(x), beta = 1);
    `reconstruction`, -E_q[log p(x|z)]; `kl`. See `VariationalModel` for warm-up, free bits,
    the IWAE objective and the log-likelihood.

    Args:
        input_shape: shape of one example, e.g. (28, 28, 1).
        latent_dim: size of z.
        hidden_units: widths of the MLP's hidden layers (encoder order; the decoder mirrors
            them), or the filters of the conv or resnet stages; None: the network's default
            (tfvae.networks.DEFAULT_HIDDEN_UNITS).
        likelihood: "bernoulli", "gaussian" or "discretized_logistic" (8-bit data in [0, 1]).
        likelihood_scale: for "gaussian", a fixed standard deviation; None learns one per pixel.
        network: "mlp", "conv" or "resnet" (RGB images such as 32x32 or 64x64).
        activation: hidden layers' activation.
        encoder, decoder: your own bodies instead of the built-in network: any tf_keras layer
            or model, encoder x -> [batch, F], decoder z -> [batch, H, W, K] or [batch, F]
            (see tfvae.networks); tfvae adds the heads. Given both, hidden_units, network and
            activation are not taken.
        beta: weight of the KL term in the loss (beta-VAE); the reported ELBO always uses 1.
        free_bits: a floor, in nats, on the batch-averaged KL in the loss (Kingma et al. 2016);
            0 for none.
        iwae_samples: k > 1 trains on the IWAE bound with k samples (Burda et al. 2015).
        kl_warmup_steps: the KL weight rises from 0 to 1 over this many optimizer steps in
            training (Sønderby et al. 2016), in the compiled step; 0 (the default here): none.

    Example:
        model = VAE(input_shape=(28, 28, 1), latent_dim=32)
        model.compile()
        model.fit(tfvae.data.load("mnist", "train"), epochs=10,
                  callbacks=[tfvae.callbacks.KLWarmup(epochs=5)])
        model.log_likelihood(x_test[:100], num_samples=5000)

        # your own networks, e.g. on 32x32 RGB images:
        encoder = tf_keras.Sequential([tf_keras.layers.Conv2D(32, 4, 2, activation="relu"),
                                       tf_keras.layers.Flatten()])
        decoder = tf_keras.Sequential([tf_keras.layers.Dense(8 * 8 * 32, activation="relu"),
                                       tf_keras.layers.Reshape((8, 8, 32)),
                                       tf_keras.layers.Conv2DTranspose(32, 4, 4)])
        model = VAE(input_shape=(32, 32, 3), latent_dim=16, encoder=encoder, decoder=decoder,
                    likelihood="discretized_logistic")  # fit reports bits_per_dim
    """

    config_keys = ("input_shape", "latent_dim", "hidden_units", "likelihood",
                   "likelihood_scale", "network", "activation", "beta", "free_bits",
                   "iwae_samples", "kl_warmup_steps")
    body_arguments = ("hidden_units", "network", "activation")
    example_config = dict(latent_dim=3, hidden_units=(32, 16))

    def __init__(self, input_shape=(28, 28, 1), latent_dim=32, hidden_units=None,
                 likelihood="bernoulli", likelihood_scale=None, network="mlp",
                 activation="relu", beta=1.0, free_bits=0.0, iwae_samples=1, kl_warmup_steps=0,
                 encoder=None, decoder=None, name="vae", **kwargs):
        super().__init__(input_shape=input_shape, likelihood=likelihood,
                         likelihood_scale=likelihood_scale, beta=beta, free_bits=free_bits,
                         iwae_samples=iwae_samples, kl_warmup_steps=kl_warmup_steps, name=name,
                         **kwargs)
        self.latent_dim = validation.check_positive_int("latent_dim", latent_dim)
        self.posterior = layers.GaussianPosterior((self.latent_dim,), name="posterior")
        self.add_bodies(encoder, decoder, self.posterior.params_size(), network, hidden_units,
                        activation)
        self.build_weights()

    def encode(self, x, training=False):
        """q(z|x) = N(mu(x), sigma(x)^2)."""
        return self.posterior(self.features(x, training=training))

    def draw(self, features, training=False, noise=None):
        q = self.posterior(features)                       # q(z|x)
        z = (tf.convert_to_tensor(q) if noise is None      # mu + sigma * eps, reparameterized
             else q.mean() + q.stddev() * noise)
        prior = self.prior()                               # p(z) = N(0, I)
        return objectives.Draw(p_x=self.decode(z, training=training),          # p(x|z)
                               kls=(objectives.kl_divergence(q, prior, z),),  # closed form
                               log_ratio=prior.log_prob(z) - q.log_prob(z))

    def latent_means(self, x):
        return [self.encode(x).mean()]
