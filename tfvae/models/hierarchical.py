"""Hierarchical VAEs with L stochastic layers: the Markov-chain VAE (`hvae`) and the Ladder VAE
(`ladder_vae`, Sønderby et al. 2016). REFERENCES.md gives the equations.

Both share the generative model, top-down: p(z_L) = N(0, I), p(z_l | z_l+1) a diagonal Gaussian
whose parameters an MLP computes from z_l+1, and p(x | z_1). They differ in inference:
- `hvae`: bottom-up, q(z_1|x) q(z_2|z_1) ... q(z_L|z_L-1);
- `ladder_vae`: a deterministic bottom-up pass gives an estimate of every layer, then top-down
  inference combines each estimate with the prior p(z_l | z_l+1) by precision weighting, so the
  top-down networks serve the generative model and the posterior alike.

Layers are numbered from 1 (next to x) to L (the top); lists are in that order. Your own
networks can replace the pair next to x (`encoder=`: x -> features, `decoder=`: z_1 -> features;
see tfvae.networks); `hidden_units` then describes the layers above z_1 only.
"""
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from tfvae import layers, networks, objectives, randomness, validation
from tfvae.models.base import VariationalModel, check_shape_arg
from tfvae.models.registry import register

tfd = tfp.distributions


def normalize_hidden_units(hidden_units, num_layers, what="stochastic layers"):
    """(the config value, one tuple of widths per layer) from `hidden_units`: either widths
    shared by every layer, e.g. (64, 64), or one tuple per layer, e.g. ((200, 200), (100, 100))."""
    if validation.is_sequence(hidden_units) and all(validation.is_int(u) for u in hidden_units):
        config = validation.check_widths("hidden_units", hidden_units)
        return config, (config,) * num_layers
    if not (validation.is_sequence(hidden_units)
            and all(validation.is_sequence(layer) for layer in hidden_units)):
        raise validation.WrongTypeError(f"hidden_units={hidden_units!r} must be a tuple of widths "
                                        f"or one tuple of widths per layer")
    per_layer = tuple(validation.check_widths("hidden_units", layer) for layer in hidden_units)
    if len(per_layer) != num_layers:
        raise ValueError(f"hidden_units={hidden_units!r} has {len(per_layer)} entries for "
                         f"{num_layers} {what}")
    return per_layer, per_layer


@tf_keras.saving.register_keras_serializable(package="tfvae")
class PrecisionWeightedGaussian(layers.DistributionHead):
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


class HierarchyBase(VariationalModel):
    """What the hierarchical VAEs share: the top-down generative model (built here, with the
    decoder next to x), the draw of the whole chain, ancestral sampling and the serving
    outputs. A subclass builds its inference networks and defines `_infer(features, sample,
    training)` -> (qs, zs, ps): per layer the posterior, its sample (or mean) and the prior at
    that sample's parents; the Ladder VAE also its own `features(x)`.

    `kl_l` is E_q[log q(z_l|.) - log p(z_l|z_l+1)]: in closed form at the top, and below it
    when q(z_l|.) does not depend on z_l's own children (`lower_kl_in_closed_form`), else the
    one-sample Monte-Carlo estimate, as the chain's ELBO has it.
    """

    config_keys = ("input_shape", "latent_dims", "hidden_units", "likelihood",
                   "likelihood_scale", "activation", "batch_norm", "beta", "free_bits",
                   "iwae_samples", "kl_warmup_steps")
    lower_kl_in_closed_form = False
    #: hidden_units=None gives every layer two hidden layers of this many units per latent unit
    #: (4 for the chain: on MNIST's grey levels, 4 ties or beats the one-layer VAE's ELBO where
    #: the IWAE paper's 2 trails it; bench/results/defaults_10_epochs.json)
    width_per_latent = 4
    #: the in-graph KL warm-up a chain gets unless told otherwise: without one, its upper layers
    #: collapse early in training (an active unit or none, bench/likelihood.py's ablation)
    DEFAULT_KL_WARMUP_STEPS = 1000

    def __init__(self, input_shape, latent_dims, hidden_units, likelihood, likelihood_scale,
                 activation, batch_norm, beta, free_bits, iwae_samples, kl_warmup_steps,
                 encoder, decoder, name, **kwargs):
        super().__init__(input_shape=input_shape, likelihood=likelihood,
                         likelihood_scale=likelihood_scale, beta=beta, free_bits=free_bits,
                         iwae_samples=iwae_samples, kl_warmup_steps=kl_warmup_steps, name=name,
                         **kwargs)
        self.latent_dims = check_shape_arg("latent_dims", latent_dims)
        self.given_bodies(encoder, decoder)
        self.hidden_units, self._units = self._widths(hidden_units, encoder, decoder)
        self.batch_norm = bool(batch_norm)
        self.activation = activation
        dims, units = self.latent_dims, self._units

        if decoder is None:
            decoder = networks.mlp(units[0][::-1], None, activation, self.batch_norm,
                                   input_shape=(dims[0],), name="decoder")
        self.attach_decoder(decoder, dims[0])
        # p(z_l | z_l+1) mirrors the networks between layers l and l+1 (widths reversed).
        self.prior_nets = [networks.mlp(units[i + 1][::-1], 2 * dims[i], activation,
                                        self.batch_norm, input_shape=(dims[i + 1],),
                                        name=f"prior_{i + 1}")
                           for i in range(len(dims) - 1)]
        self.prior_heads = [layers.GaussianPosterior((dims[i],), name=f"prior_head_{i + 1}")
                            for i in range(len(dims) - 1)]

    def _widths(self, hidden_units, encoder, decoder):
        """(the config value, the widths per layer): None for layer 1's when the user's bodies
        replace it; sized from the latents when hidden_units is None."""
        if hidden_units is None:  # sized from the layers they serve
            hidden_units = tuple((self.width_per_latent * d,) * 2 for d in self.latent_dims)
            if encoder is not None and decoder is not None:
                hidden_units = hidden_units[1:]
        if len(self._user_bodies) == 1:
            raise ValueError(f"{type(self).__name__} takes encoder= and decoder= together (the "
                             f"networks next to x); got only {self._user_bodies[0]}=")
        if not self._user_bodies:
            return normalize_hidden_units(hidden_units, len(self.latent_dims))
        above = len(self.latent_dims) - 1
        config, units = normalize_hidden_units(
            hidden_units, above, "stochastic layers above z_1 (encoder= and decoder= are the "
            "networks next to x)") if above else (tuple(hidden_units), ())
        return config, (None, *units)

    @property
    def num_layers(self):
        return len(self.latent_dims)

    @property
    def latent_shape(self):
        """The shape of z_1, the code `decode` takes."""
        return (self.latent_dims[0],)

    def _prior_params(self, i, z_above, training=False):
        return self.prior_nets[i](z_above, training=training)

    def _top_prior(self):
        return layers.standard_normal((self.latent_dims[-1],))

    @property
    def noise_size(self):
        """One standard normal number per latent unit of every layer, z_1's first."""
        return sum(self.latent_dims)

    def _noise_of_layer(self, noise, i):
        """Layer i's columns (0 = z_1) of a draw's noise, or None to draw with TensorFlow."""
        if noise is None:
            return None
        start = sum(self.latent_dims[:i])
        return noise[:, start:start + self.latent_dims[i]]

    @staticmethod
    def _sample(q, noise):
        """q's reparameterized sample: with the given standard normal noise, or TFP's own."""
        return q.sample() if noise is None else q.mean() + q.stddev() * noise

    # ---- one draw of the chain ----------------------------------------------------------------
    def draw(self, features, training=False, noise=None):
        qs, zs, ps = self._infer(features, sample=True, training=training,  # z_l ~ q,
                                 noise=noise)                                # p(z_l | z_l+1)
        kls, log_ratio = [], 0.0
        for l, (q, z, p) in enumerate(zip(qs, zs, ps), start=1):
            if l == self.num_layers or self.lower_kl_in_closed_form:
                kls.append(objectives.kl_divergence(q, p, z))
            else:
                kls.append(q.log_prob(z) - p.log_prob(z))
            log_ratio += p.log_prob(z) - q.log_prob(z)
        return objectives.Draw(p_x=self.decode(zs[0], training=training), kls=tuple(kls),
                               log_ratio=log_ratio)

    # ---- deterministic views of the posterior ------------------------------------------------
    def encode(self, x, training=False):
        """The posteriors q(z_1|.), ..., q(z_L|.) along the mean path: each layer's posterior
        given its parents set to their posterior means (a list of distributions)."""
        qs, _, _ = self._infer(self.features(x, training=training), sample=False,
                               training=training)
        return qs

    def code(self, x, training=False):
        """The mean-path z_1: what `call` and `reconstruct` decode."""
        return self.encode(x, training=training)[0].mean()

    def latent_means(self, x):
        return [q.mean() for q in self.encode(x)]

    # ---- sampling ------------------------------------------------------------------------------
    def ancestral_sample(self, seeds, training=False):
        """[z_1, ..., z_L] drawn top-down, z_L ~ N(0, I) then z_l ~ p(z_l | z_l+1), one per
        seed; the noise of z_1, ..., z_L is numbers 0, 1, ... of the seed's stream, in that
        order (tfvae.randomness)."""
        noise = randomness.normal(seeds, self.noise_size)
        top = self.num_layers - 1
        zs = [self._noise_of_layer(noise, top)]
        for i in reversed(range(top)):
            p = self.prior_heads[i](self._prior_params(i, zs[0], training=training))
            zs.insert(0, self._sample(p, self._noise_of_layer(noise, i)))
        return zs

    def sample_latent(self, seeds):
        return self.ancestral_sample(seeds)[0]

    # ---- serving ---------------------------------------------------------------------------------
    def encode_outputs(self, x, seeds):
        features = self.features(x)
        qs, _, _ = self._infer(features, sample=False)
        _, zs, _ = self._infer(features, sample=True,
                               noise=randomness.normal(seeds, self.noise_size))
        out = {"mean": qs[0].mean(), "stddev": qs[0].stddev(), "z": zs[0]}
        for l, (q, z) in enumerate(zip(qs, zs), start=1):
            out.update({f"mean_{l}": q.mean(), f"stddev_{l}": q.stddev(), f"z_{l}": z})
        return out

    def sample_outputs(self, seeds):
        zs = self.ancestral_sample(seeds)
        out = {"z": zs[0], "x": self.decode(zs[0]).mean()}
        out.update({f"z_{l}": z for l, z in enumerate(zs, start=1)})
        return out

    def card_info(self):
        layers_text = ", ".join(f"z_{l} [{d}]" for l, d in enumerate(self.latent_dims, start=1))
        return {"latent_layers": list(self.latent_dims), "signatures": {
            "encode": (f"x [batch, *input_shape] float32, seed [batch] int64 -> for every "
                       f"layer l = 1..{self.num_layers} ({layers_text}): mean_l, stddev_l, the "
                       f"posterior's parameters along the mean path (each layer's parents set "
                       f"to their posterior means), and z_l, one joint sample of the whole "
                       f"posterior drawn from the seed; mean, stddev, z repeat layer 1"),
            "decode": "z [batch, latent_shape] float32 (z_1, the layer next to x) -> x, the "
                      "likelihood's mean",
            "sample": (f"seed [batch] int64 -> z_1..z_{self.num_layers} drawn top-down from the "
                       f"prior, z (= z_1) and x, the likelihood's mean at z_1; deterministic "
                       f"per seed"),
            "reconstruct": "x [batch, *input_shape] float32 -> x, the likelihood's mean at the "
                           "mean-path z_1; also serving_default",
        }}


@register("hvae")
class HierarchicalVAE(HierarchyBase):
    """A VAE with L stochastic layers as a Markov chain.

    Inference q(z_1|x) q(z_2|z_1) ... q(z_L|z_L-1), generation p(z_L) p(z_L-1|z_L) ... p(x|z_1),
    every conditional a diagonal Gaussian (the likelihood's at x). The loss is the negative ELBO
    of the whole chain; `fit` reports `loss`, `elbo`, `reconstruction`, `kl` and the per-layer
    `kl_1` ... `kl_L` (Monte-Carlo below the top, where q(z_l+1|z_l) depends on z_l).

    Args:
        input_shape: shape of one example, e.g. (28, 28, 1).
        latent_dims: size of each stochastic layer, z_1 (next to x) first.
        hidden_units: widths of the MLPs between layers: one tuple shared by all, or one per
            layer, ((x to z_1), (z_1 to z_2), ...); generative networks mirror them. None: two
            layers of 4 units per latent unit each, ((400, 400), (200, 200)) for the default
            (100, 50); the IWAE paper's model has 2 per latent unit (the example below).
        likelihood, likelihood_scale: as for `VAE`.
        encoder, decoder: your own networks next to x instead of the first MLPs (given
            together): x -> features and z_1 -> features (see tfvae.networks); hidden_units
            then lists the layers above z_1.
        activation: hidden layers' activation.
        batch_norm: batch normalization after every hidden Dense layer, inference and
            generative networks alike (what Sønderby et al. 2016 found a deep chain needs).
            On by default: with it, the defaults on MNIST's grey levels keep the top layer
            active and beat the one-layer VAE's test ELBO, where without it the chain only ties
            the VAE (bench/results/defaults_10_epochs.json). False gives the IWAE paper's
            model.
        beta, free_bits, iwae_samples: the objective, as for `VAE`; the free-bits floor is per
            layer.
        kl_warmup_steps: the KL weight rises from 0 to 1 over this many optimizer steps
            (1000 by default: a chain's upper layer collapses without a warm-up); 0: none.

    Example (IWAE's two-layer model):
        model = HierarchicalVAE(input_shape=(28, 28, 1), latent_dims=(100, 50),
                                hidden_units=((200, 200), (100, 100)), batch_norm=False)
    """

    example_config = dict(latent_dims=(3, 2), hidden_units=(16,))

    def __init__(self, input_shape=(28, 28, 1), latent_dims=(100, 50), hidden_units=None,
                 likelihood="bernoulli", likelihood_scale=None, activation="relu",
                 batch_norm=True, beta=1.0, free_bits=0.0, iwae_samples=1,
                 kl_warmup_steps=HierarchyBase.DEFAULT_KL_WARMUP_STEPS, encoder=None,
                 decoder=None, name="hvae", **kwargs):
        super().__init__(input_shape=input_shape, latent_dims=latent_dims,
                         hidden_units=hidden_units, likelihood=likelihood,
                         likelihood_scale=likelihood_scale, activation=activation,
                         batch_norm=batch_norm, beta=beta, free_bits=free_bits,
                         iwae_samples=iwae_samples, kl_warmup_steps=kl_warmup_steps,
                         encoder=encoder, decoder=decoder, name=name, **kwargs)
        dims, units = self.latent_dims, self._units
        self.posterior_heads = [layers.GaussianPosterior((d,), name=f"posterior_{i + 1}")
                                for i, d in enumerate(dims)]
        if encoder is None:
            encoder = networks.mlp(units[0], None, activation, self.batch_norm,
                                   input_shape=self._data_shape, name="encoder")
        self.attach_encoder(encoder, 2 * dims[0])
        self.inference_nets = [networks.mlp(units[i], 2 * dims[i], activation, self.batch_norm,
                                            input_shape=(dims[i - 1],), name=f"inference_{i + 1}")
                               for i in range(1, len(dims))]
        self.build_weights()

    def _infer(self, features, sample=True, training=False, noise=None):
        qs, zs = [], []
        params = features
        for i in range(self.num_layers):
            if i > 0:
                params = self.inference_nets[i - 1](zs[-1], training=training)
            q = self.posterior_heads[i](params)
            qs.append(q)
            zs.append(self._sample(q, self._noise_of_layer(noise, i)) if sample else q.mean())
        ps = [self.prior_heads[i](self._prior_params(i, zs[i + 1], training=training))
              for i in range(self.num_layers - 1)] + [self._top_prior()]
        return qs, zs, ps


@register("ladder_vae")
class LadderVAE(HierarchyBase):
    """The Ladder VAE (Sønderby et al. 2016).

    A deterministic bottom-up pass d_1 = MLP(x), d_l = MLP(d_l-1) gives at every layer an
    estimate N(mu_hat_l, sigma_hat_l^2); inference then runs top-down: q(z_L|x) is the top
    estimate, and q(z_l|z_l+1, x) the precision-weighted combination of the estimate with the
    prior p(z_l|z_l+1), whose network is the generative model's own. Every KL term is then in
    closed form given the layer above. `fit` reports `kl_1` ... `kl_L` besides the totals.
    Batch norm and a KL warm-up, which the paper found a deep model needs, are on by default.

    Args:
        input_shape: shape of one example.
        latent_dims: size of each stochastic layer, z_1 (next to x) first.
        hidden_units: the widths of each bottom-up MLP, one tuple shared by all or one per
            layer (non-empty); the top-down MLPs mirror them. None: two layers of 8 units per
            latent unit each, the paper's ((512, 512), ..., (32, 32)) for (64, ..., 4).
        encoder, decoder: your own networks next to x instead of the first MLPs (given
            together): x -> d_1 [batch, F] and z_1 -> features (see tfvae.networks);
            hidden_units then lists the layers above z_1.
        likelihood, likelihood_scale, activation: as for `VAE`.
        batch_norm: batch normalization after every hidden Dense layer; on by default: with
            defaults on MNIST's grey levels every layer stays active and the test ELBO beats
            the one-layer VAE's; without, all layers but z_1 collapse and the gain halves
            (bench/results/defaults_ladder_6_epochs*.json).
        beta, free_bits, iwae_samples: the objective, as for `VAE` (free bits per layer).
        kl_warmup_steps: as for `HierarchicalVAE` (1000 steps by default; the paper warms up
            over its first 200 epochs: pass that many steps to train as it does).
        activation="leaky_rectify" gives the leaky units of the paper's reference code.

    Example (the paper's MNIST model):
        model = LadderVAE(input_shape=(28, 28, 1), latent_dims=(64, 32, 16, 8, 4),
                          hidden_units=((512, 512), (256, 256), (128, 128), (64, 64), (32, 32)))
    """

    lower_kl_in_closed_form = True
    width_per_latent = 8

    example_config = dict(latent_dims=(3, 2), hidden_units=(16,))

    def __init__(self, input_shape=(28, 28, 1), latent_dims=(64, 32, 16, 8, 4),
                 hidden_units=None, likelihood="bernoulli", likelihood_scale=None,
                 activation="relu", batch_norm=True, beta=1.0, free_bits=0.0, iwae_samples=1,
                 kl_warmup_steps=HierarchyBase.DEFAULT_KL_WARMUP_STEPS, encoder=None,
                 decoder=None, name="ladder_vae", **kwargs):
        super().__init__(input_shape=input_shape, latent_dims=latent_dims,
                         hidden_units=hidden_units, likelihood=likelihood,
                         likelihood_scale=likelihood_scale, activation=activation,
                         batch_norm=batch_norm, beta=beta, free_bits=free_bits,
                         iwae_samples=iwae_samples, kl_warmup_steps=kl_warmup_steps,
                         encoder=encoder, decoder=decoder, name=name, **kwargs)
        dims, units = self.latent_dims, self._units
        if any(layer is not None and not layer for layer in units):
            raise ValueError(f"hidden_units={hidden_units!r}: every bottom-up MLP needs at "
                             f"least one hidden layer")
        if encoder is None:
            encoder = networks.mlp(units[0], None, activation, self.batch_norm,
                                   input_shape=self._data_shape, name="bottom_up_1")
        # d_1 = encoder(x) feeds the estimate of layer 1 and the next bottom-up MLP.
        width = networks.check_encoder_output(encoder, self._data_shape)
        self.bottom_up = [encoder] + [
            networks.mlp(units[i], None, activation, self.batch_norm,
                         input_shape=(width if i == 1 else units[i - 1][-1],),
                         name=f"bottom_up_{i + 1}")
            for i in range(1, len(dims))]
        self.estimates = [tf_keras.layers.Dense(2 * d, name=f"estimate_{i + 1}")
                          for i, d in enumerate(dims)]
        self.top_posterior = layers.GaussianPosterior((dims[-1],), name=f"posterior_{len(dims)}")
        self.posterior_heads = [PrecisionWeightedGaussian((d,), name=f"posterior_{i + 1}")
                                for i, d in enumerate(dims[:-1])]
        self.build_weights()

    @property
    def encoder(self):
        """The bottom-up network next to x: d_1 = encoder(x)."""
        return self.bottom_up[0]

    @property
    def encoder_head(self):
        """The layer-1 estimate's parameters from d_1."""
        return self.estimates[0]

    def features(self, x, training=False):
        """The deterministic bottom-up pass: the estimates' params [mu_hat, raw sigma_hat], one
        tensor per layer."""
        estimates, h = [], x
        for net, head in zip(self.bottom_up, self.estimates):
            h = net(h, training=training)
            estimates.append(head(h))
        return estimates

    def _infer(self, features, sample=True, training=False, noise=None):
        top = self.num_layers - 1
        q = self.top_posterior(features[-1])
        qs, ps = [q], [self._top_prior()]
        zs = [self._sample(q, self._noise_of_layer(noise, top)) if sample else q.mean()]
        for i in reversed(range(top)):
            prior_params = self._prior_params(i, zs[0], training=training)
            q = self.posterior_heads[i](tf.concat([features[i], prior_params], axis=-1))
            qs.insert(0, q)
            zs.insert(0, self._sample(q, self._noise_of_layer(noise, i)) if sample else q.mean())
            ps.insert(0, self.prior_heads[i](prior_params))
        return qs, zs, ps
