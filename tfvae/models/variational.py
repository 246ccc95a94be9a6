"""The variational machinery every VAE of the zoo shares, whatever its posterior and prior: the
objective (the ELBO with beta, KL warm-up and free bits, or the IWAE bound of Burda et al. 2015),
the importance-sampled log-likelihood, bits/dim and active units.

A family only says how to run its chain once per example: `_features(x)` (the deterministic
work on x) and `_chain(features)` (one sample of every latent, the decoder's distribution over
x there, and the per-layer KL terms); see `VariationalModel`.
"""
import numpy as np
import tensorflow as tf

from tfvae import layers, objectives, progress, validation
from tfvae.models.base import LatentVariableModel, inputs_of


class VariationalModel(LatentVariableModel):
    """Base of the VAEs: the objective and the evaluation, written once.

    A subclass calls `_init_objective(beta, free_bits, iwae_samples)` in its constructor and
    defines:
    - `_features(x, training)`: a tensor or nest of tensors [batch, ...] computed from x alone;
    - `_chain(features, training)`: one posterior sample per row, returning a dict with `p_x`
      (the decoder's p(x|z) at the sample, a distribution over n rows), `kls` (a list, one [n]
      KL term per stochastic layer, in closed form where valid) and `log_ratio` [n]
      (log p(z) - log q(z|x) at the sample);
    - `_posterior_means(x)`: a list, per layer, of [batch, d] posterior means (active units).

    The loss per example is -log p(x|z) + beta * kl_weight * sum_l FB(KL_l), FB the free-bits
    floor, or with `iwae_samples=k > 1` the negative IWAE bound with k samples. Whatever the
    loss, the reported `elbo`, `reconstruction` and `kl` are the plain one-sample (k = 1, beta =
    1, no floor) quantities, so runs with different objectives stay comparable.

    KL warm-up (Sønderby et al. 2016) comes two ways, which multiply:
    - `kl_warmup_steps=N` (a constructor argument): in training, the KL weight rises linearly
      from 0 to 1 over the first N optimizer steps, computed inside the compiled train step from
      the optimizer's step count, so it holds at any `steps_per_execution` and resumes with the
      optimizer. The models with several stochastic layers do this by default;
    - `kl_weight`, a non-trainable variable (1.0 unless a callback such as
      `tfvae.callbacks.KLWarmup` moves it), read inside the compiled train step. It is saved
      with the weights, so training resumes where the warm-up was, but it is not in get_config.
    Evaluation always weighs the KL fully.
    """

    def _init_objective(self, beta, free_bits, iwae_samples, kl_warmup_steps=0):
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

    def _objective_kl_weight(self, training):
        """beta * kl_weight, times the in-graph warm-up ramp while training."""
        weight = self.beta * self.kl_weight
        if training and self.kl_warmup_steps and self.optimizer is not None:
            step = tf.cast(self.optimizer.iterations, tf.float32)
            weight *= tf.minimum(1.0, step / self.kl_warmup_steps)
        return weight

    def prior(self):
        """p(z) = N(0, I) over the codes (the hierarchies' top layer has its own)."""
        return layers.standard_normal(self.latent_shape)

    @property
    def num_layers(self):
        """How many stochastic layers; each has its KL term (`kl_1` ... when more than one)."""
        return 1

    def _metric_names(self):
        per_layer = tuple(f"kl_{l}" for l in range(1, self.num_layers + 1))
        names = ("loss", "elbo", "reconstruction", "kl") + (per_layer if self.num_layers > 1 else ())
        return names + (("bits_per_dim",) if self.likelihood == "discretized_logistic" else ())

    # ---- the objective -------------------------------------------------------------------
    def _forward(self, x, num_samples=None, training=False):
        """`_chain` on x's features, with log p(x|z) at its sample as `log_px`; with
        `num_samples=k`, on k copies of every example at once (the features are computed once,
        then repeated), results then being [k, batch]."""
        features = self._features(x, training=training)
        if num_samples is None:
            out = self._chain(features, training=training)
            return {"log_px": out.pop("p_x").log_prob(x), **out}
        k = int(num_samples)

        def repeat(t):
            # Row i * batch + j holds sample i of example j.
            return tf.tile(t, [k] + [1] * (t.shape.rank - 1))

        out = self._chain(tf.nest.map_structure(repeat, features), training=training)
        out = {"log_px": layers.log_prob_of_copies(out.pop("p_x"), x, k), **out}
        return tf.nest.map_structure(lambda t: tf.reshape(t, [k, -1]), out)

    def compute_terms(self, x, training=False):
        out = self._forward(x, training=training)
        reconstruction = -out["log_px"]
        kls = out["kls"]
        kl = tf.add_n(kls)
        terms = {"elbo": -(reconstruction + kl), "reconstruction": reconstruction, "kl": kl}
        if self.num_layers > 1:
            terms.update({f"kl_{l}": value for l, value in enumerate(kls, start=1)})
        if self.likelihood == "discretized_logistic":  # a probability mass: a code length
            terms["bits_per_dim"] = objectives.bits_per_dim(terms["elbo"],
                                                            int(np.prod(self._data_shape)))
        weight = self._objective_kl_weight(training)
        if self.iwae_samples > 1:
            parts = self._forward(x, self.iwae_samples, training=training)
            # The weight tempers log p(z)/q(z|x) inside each importance weight, so a warm-up
            # moves the IWAE objective from log-mean-exp of log p(x|z_i) to the bound itself.
            terms["loss"] = -objectives.log_mean_exp(parts["log_px"] + weight * parts["log_ratio"])
        else:
            floored = [objectives.free_bits_kl(value, self.free_bits) for value in kls]
            terms["loss"] = reconstruction + weight * tf.add_n(floored)
        return terms

    # ---- evaluation ------------------------------------------------------------------------
    def log_weights(self, x, num_samples, training=False):
        """[num_samples, batch] importance log-weights log p(x, z_i) - log q(z_i|x), z_i ~ q."""
        out = self._forward(tf.convert_to_tensor(x, tf.float32), num_samples, training=training)
        return out["log_px"] + out["log_ratio"]

    def iwae_bound(self, x, num_samples):
        """L_k(x) per example: one draw of the IWAE bound with k samples (k = 1: the ELBO)."""
        return objectives.log_mean_exp(self.log_weights(x, num_samples))

    @tf.function(reduce_retracing=True)
    def _compiled_log_weights(self, x, num_samples):
        # One graph per chunk size: eager runs of the chain cost 2-4x more (bench/likelihood.py).
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
                    self._compiled_log_weights, batch, num_samples, chunk))
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
            means = [m.numpy().astype(np.float64) for m in self._posterior_means(
                tf.convert_to_tensor(inputs_of(batch), tf.float32))]
            batch_sums = [m.sum(0) for m in means]
            batch_squares = [(m ** 2).sum(0) for m in means]
            sums = batch_sums if sums is None else [a + b for a, b in zip(sums, batch_sums)]
            squares = batch_squares if squares is None else [
                a + b for a, b in zip(squares, batch_squares)]
            count += means[0].shape[0]
        variances = [s2 / count - (s / count) ** 2 for s, s2 in zip(sums, squares)]
        return [int((v > threshold).sum()) for v in variances]
