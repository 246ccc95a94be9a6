"""The objectives, written once for every VAE: what a family hands over (`Draw`), KL terms, the
ELBO and its loss, the IWAE bound and the importance-sampled log-likelihood.

For one draw z ~ q(z|x) per example (Kingma & Welling 2013; Burda et al. 2015):
    ELBO(x) = log p(x|z) - sum_l KL_l,   loss = -log p(x|z) + beta * w * sum_l max(lambda, KL_l)
with the KL warm-up weight w (Sønderby et al. 2016) and the free-bits floor lambda (Kingma et
al. 2016); with k draws the loss is the negative IWAE bound -log (1/k) sum_i p(x, z_i) / q(z_i|x).
"""
import dataclasses
import math

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


@dataclasses.dataclass(frozen=True)
class Draw:
    """One draw of a VAE's latent variables for each row of a batch: what a family's `draw`
    returns, and all the shared objective needs.

    Attributes:
        p_x: the decoder's p(x|z) at the draw, a distribution over the rows.
        kls: one [n] tensor per stochastic layer, z_1 (next to x) first: KL(q || p) in closed
            form where it exists, else log q(z_l|.) - log p(z_l|.) at the draw.
        log_ratio: [n] log p(z) - log q(z|x) of the whole draw; with log p(x|z), the
            importance log-weight of the IWAE bound and of the log-likelihood.
    """
    p_x: tfd.Distribution
    kls: tuple
    log_ratio: tf.Tensor


def elbo_terms(log_px, kls):
    """What `fit` reports of one draw per example, in nats: `elbo` = log p(x|z) - sum_l KL_l,
    `reconstruction` = -log p(x|z), `kl` = sum_l KL_l, and `kl_1` ... `kl_L` for several
    stochastic layers."""
    kl = tf.add_n(list(kls))
    terms = {"elbo": log_px - kl, "reconstruction": -log_px, "kl": kl}
    if len(kls) > 1:
        terms.update({f"kl_{l}": value for l, value in enumerate(kls, start=1)})
    return terms


def elbo_loss(log_px, kls, kl_weight, free_bits=0.0):
    """-log p(x|z) + kl_weight * sum_l FB(KL_l) per example, FB the free-bits floor."""
    return -log_px + kl_weight * tf.add_n([free_bits_kl(kl, free_bits) for kl in kls])


def iwae_loss(log_px, log_ratio, kl_weight=1.0):
    """The negative IWAE bound from [k, batch] log p(x|z_i) and log p(z_i)/q(z_i|x). A KL weight
    below 1 tempers log p(z)/q(z|x) inside each importance weight, so a warm-up moves the
    objective from log-mean-exp of log p(x|z_i) to the bound itself."""
    return -log_mean_exp(log_px + kl_weight * log_ratio)


def kl_divergence(q, p, z=None):
    """KL(q || p) per example: in closed form where TFP has it, else the one-sample Monte-Carlo
    estimate log q(z) - log p(z) at the given sample z (unbiased, and differentiable through a
    reparameterized z)."""
    try:
        return tfd.kl_divergence(q, p)
    except NotImplementedError:
        if z is None:
            raise ValueError("no closed-form KL for these distributions: pass a sample z") from None
        return q.log_prob(z) - p.log_prob(z)


def log_mean_exp(log_weights, axis=0):
    """log (1/k) sum_i exp(w_i), stably: the IWAE bound from k log-weights along `axis`."""
    k = tf.cast(tf.shape(log_weights)[axis], log_weights.dtype)
    return tf.reduce_logsumexp(log_weights, axis=axis) - tf.math.log(k)


def importance_sampled_log_likelihood(log_weights_fn, x, num_samples=5000, chunk_size=500):
    """log p(x) ~ log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x), per example.

    `log_weights_fn(x, n)` returns [n, batch] log-weights. The k samples are drawn in chunks of
    `chunk_size` and combined by a running logsumexp, so memory stays bounded for k = 5000.
    """
    if num_samples < 1 or chunk_size < 1:
        raise ValueError("num_samples and chunk_size must be >= 1")
    total = None
    remaining = int(num_samples)
    while remaining > 0:
        n = min(chunk_size, remaining)
        chunk = tf.reduce_logsumexp(log_weights_fn(x, n), axis=0)
        total = chunk if total is None else tf.reduce_logsumexp(tf.stack([total, chunk]), axis=0)
        remaining -= n
    return total - math.log(num_samples)


def bits_per_dim(log_likelihood, num_dims):
    """-log p(x) in bits per dimension."""
    return -log_likelihood / (num_dims * math.log(2.0))


def free_bits_kl(kl, floor):
    """A KL term [batch] with Kingma et al.'s (2016) free-bits floor, per example.

    The objective's term is max(floor, mean_batch KL): written per example as
    KL_i + max(0, floor - mean KL), whose batch mean is exactly that, and whose gradient is
    zero while the batch-averaged KL is under the floor, so the encoder is free to spend
    `floor` nats on the layer.
    """
    if not floor:
        return kl
    return kl + tf.nn.relu(floor - tf.reduce_mean(kl))
