"""The objectives, written once for every VAE: KL terms, the ELBO's parts, the IWAE bound and
the importance-sampled log-likelihood (REFERENCES.md gives the equations)."""
import math

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


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
