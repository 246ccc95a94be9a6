"""Deterministic autoencoders: plain (AE), denoising, sparse and contractive (REFERENCES.md).

All four are one shape: an encoder f(x) -> code, a decoder g(code) ending in a likelihood head,
and the loss -log p(x | g(f(x~))) + sum_k weight_k * penalty_k. The three variants only
override one hook of `AE`:
- `corrupt(x)`: the training-time corruption x~ of the input (identity for the others);
- `penalty_terms(x, code)`: per-example penalties, each weighted by the constructor argument
  `<name>_weight` and reported as a metric `<name>`.

They train, evaluate and export like the VAE. `encode(x)` is a point mass at the code, so the
export's `encode` gives `mean` = `code` (value-checked), `stddev` = 0 and `z` = the code.

Generating: an autoencoder has no prior, so after training `fit_latent_density` fits one to the
training codes (a full-covariance Gaussian, or a Gaussian mixture, `tfvae.layers.LatentDensity`),
stored in non-trainable weights (saved with the model and in the export), and `sample` decodes
codes drawn from it.
Before that, codes are drawn from N(0, I): the same default as the VAE's prior, rarely a good
fit for an autoencoder's codes; the model card says which density an export samples from.
"""
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from tfvae import layers, validation
from tfvae.models.base import LatentVariableModel, inputs_of
from tfvae.models.registry import register

tfd = tfp.distributions


def _check_non_negative(name, value):
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name}={value!r} must be a finite number >= 0")
    return float(value)


@register("ae")
class AE(LatentVariableModel):
    """A deterministic autoencoder trained on -log p(x | g(f(x))).

    `fit` and `evaluate` report per example: `loss`; `reconstruction`, -log p(x | g(f(x))) in
    nats; `mse`, the squared error of the likelihood's mean per pixel; and each penalty of a
    subclass by its name.

    Args:
        input_shape: shape of one example, e.g. (28, 28, 1).
        latent_dim: size of the code.
        hidden_units, network, encoder, decoder: the bodies, as for `tfvae.models.VAE`; the
            encoder head gives the code.
        likelihood: "bernoulli", "gaussian" or "discretized_logistic".
        likelihood_scale: for "gaussian", a fixed standard deviation (1.0 makes the
            reconstruction term half the squared error plus a constant); None learns one.
        activation: hidden layers' activation; None with code_activation=None and a fixed
            Gaussian scale is a linear autoencoder, which at best matches PCA.
        code_activation: applied to the code, e.g. "sigmoid" for codes in (0, 1); None: linear.
            Bounded codes can saturate behind a deep encoder (see `ContractiveAE`).
        max_density_components: how many Gaussian components the stored code density can
            hold (the size of its weights; see `fit_latent_density`).

    Example:
        model = AE(input_shape=(28, 28, 1), latent_dim=32)
        model.compile()
        model.fit(train, epochs=10, callbacks=[tfvae.callbacks.FitLatentDensity(train)])
        images = model.generate(16)  # decoded codes drawn from the fitted Gaussian
    """

    config_keys = ("input_shape", "latent_dim", "hidden_units", "likelihood", "likelihood_scale",
                   "network", "activation", "code_activation", "max_density_components")
    body_arguments = ("hidden_units", "network", "activation")
    example_config = dict(latent_dim=3, hidden_units=(32, 16))
    #: names of the penalties `penalty_terms` returns; each has a `<name>_weight` argument.
    penalty_names = ()

    def __init__(self, input_shape=(28, 28, 1), latent_dim=32, hidden_units=None,
                 likelihood="bernoulli", likelihood_scale=None, network="mlp",
                 activation="relu", code_activation=None, max_density_components=10,
                 encoder=None, decoder=None, name="ae", **kwargs):
        super().__init__(input_shape=input_shape, likelihood=likelihood,
                         likelihood_scale=likelihood_scale, name=name, **kwargs)
        self.latent_dim = validation.check_positive_int("latent_dim", latent_dim)
        self.code_activation = code_activation
        self._code_activation = tf_keras.activations.get(code_activation)  # None -> linear
        self.add_bodies(encoder, decoder, self.latent_dim, network, hidden_units, activation)
        self.latent_density = layers.LatentDensity(self.latent_dim, max_density_components,
                                                   name="latent_density")
        self.build_weights()

    def metric_names(self):
        return ("loss", "reconstruction", *self.penalty_names, "mse")

    @property
    def max_density_components(self):
        return self.latent_density.max_components

    # ---- the hooks that the variants override --------------------------------------------
    def corrupt(self, x):
        """The corrupted input x~ that training encodes (the identity here)."""
        return x

    def penalty_terms(self, x, code):
        """{name: per-example penalty} for the names in `penalty_names`; `code` = f(x)."""
        return {}

    # ---- the model -----------------------------------------------------------------------
    def code(self, x, training=False):
        """f(x), the deterministic code, [batch, latent_dim], in float32 whatever the layer
        policy: the penalties and the export's outputs use it."""
        return tf.cast(self._code_activation(self.features(x, training=training)), tf.float32)

    def encode(self, x, training=False):
        """A point mass at the code: `.mean()` is the code and `.stddev()` zero."""
        return tfd.Independent(tfd.Deterministic(self.code(x, training=training)),
                               reinterpreted_batch_ndims=1)

    def compute_terms(self, x, training=False):
        # Corruption is for training only: evaluation measures how well clean inputs come back.
        corrupted = self.corrupt(x) if training else x
        code = self.code(corrupted, training=training)
        p_x = self.decode(code, training=training)
        reconstruction = -p_x.log_prob(x)  # of the clean input
        mse = tf.reduce_mean(tf.reshape(tf.square(p_x.mean() - x), [tf.shape(x)[0], -1]), axis=1)
        penalties = self.penalty_terms(corrupted, code)
        loss = reconstruction
        for name in self.penalty_names:
            loss += getattr(self, f"{name}_weight") * penalties[name]
        return {"loss": loss, "reconstruction": reconstruction, **penalties, "mse": mse}

    def encode_outputs(self, x, seeds):
        code = self.code(x)
        return {"code": code, "mean": code, "stddev": tf.zeros_like(code), "z": code}

    # ---- generating: a density over the codes --------------------------------------------
    def sample_latent(self, seeds):
        """One code per int64 seed from the fitted density (N(0, I) before fitting)."""
        return self.latent_density.sample(seeds)

    def codes_of(self, data, batch_size=256):
        """The codes of an array or a dataset of x, (x, ...) batches, as a numpy array."""
        if isinstance(data, tf.data.Dataset):
            batches = (inputs_of(batch) for batch in data)
        else:
            data = np.asarray(inputs_of(data), np.float32)
            batches = (data[i:i + batch_size] for i in range(0, len(data), batch_size))
        return np.concatenate([self.code(tf.convert_to_tensor(b, tf.float32)).numpy()
                               for b in batches])

    def fit_latent_density(self, data, kind="gaussian", components=None, seed=0, reg=1e-6):
        """Fit a density to the codes of `data` and store it for `sample` and the export.

        Args:
            data: training inputs: an array or a tf.data.Dataset (of x or (x, ...) batches).
            kind: "gaussian" (one full-covariance Gaussian) or "gmm" (scikit-learn's
                GaussianMixture with full covariances).
            components: for "gmm", the number of components (default: max_density_components),
                at most max_density_components.
            seed: the mixture's initialization seed.
            reg: added to the covariances' diagonals so their Cholesky factors exist.

        Returns:
            The codes the density was fitted to.
        """
        self.latent_density.check_request(kind, components)  # before the codes, which take a while
        codes = self.codes_of(data)
        self.latent_density.fit(codes, kind=kind, components=components, seed=seed, reg=reg)
        return codes

    def card_info(self):
        """Entries for the export's model card: how `sample` draws its codes."""
        density = self.latent_density
        kind, how = density.kind_name, density.describe()
        return {"sampling": f"{how}, decoded to the likelihood's mean; one draw per seed",
                "latent_density": {"kind": kind, "components": density.components},
                "signatures": {
                    "encode": "x [batch, *input_shape] float32, seed [batch] int64 (unused: "
                              "nothing is drawn) -> code [batch, latent_dim], the "
                              "deterministic code; mean and z repeat it and stddev is zeros, "
                              "so that clients of a VAE's encode work unchanged",
                    "log_likelihood": "x, seed (unused), k (unused) -> log_likelihood "
                                      "[batch], log p(x | its reconstruction) in nats: an "
                                      "autoencoder has no likelihood of x itself",
                    "sample": f"seed [batch] int64 -> z, a code drawn from the fitted density "
                              f"({kind}), and x, its decoding; deterministic per seed"}}


@register("denoising_ae")
class DenoisingAE(AE):
    """An autoencoder that reconstructs clean inputs from corrupted ones (Vincent et al. 2008).

    Training corrupts the input; evaluation, `predict` and the export see it clean.

    Args:
        corruption: "gaussian" (adds N(0, noise_level^2) noise), "masking" (sets each input to
            0 with probability noise_level, without rescaling the others as dropout would) or
            "salt_and_pepper" (sets each input, with probability noise_level, to the batch's
            minimum or maximum, e.g. 0 or 1 for images, with equal odds).
        noise_level: the noise's standard deviation, or the corruption probability in [0, 1).
        Others as for `AE`.

    Example:
        model = DenoisingAE(input_shape=(28, 28, 1), corruption="masking", noise_level=0.25)
    """

    config_keys = AE.config_keys + ("corruption", "noise_level")
    example_config = dict(latent_dim=3, hidden_units=(16,), corruption="gaussian", noise_level=0.2)
    CORRUPTIONS = ("gaussian", "masking", "salt_and_pepper")

    def __init__(self, *args, corruption="masking", noise_level=0.25, name="denoising_ae",
                 **kwargs):
        if corruption not in self.CORRUPTIONS:
            raise ValueError(f"corruption={corruption!r} is not one of {list(self.CORRUPTIONS)}")
        _check_non_negative("noise_level", noise_level)
        if corruption != "gaussian" and not 0 <= noise_level < 1:
            raise ValueError(f"noise_level={noise_level!r} is a probability for "
                             f"corruption={corruption!r}: it must be in [0, 1)")
        self.corruption, self.noise_level = corruption, float(noise_level)
        super().__init__(*args, name=name, **kwargs)

    def corrupt(self, x):
        if self.corruption == "gaussian":
            return x + self.noise_level * tf.random.normal(tf.shape(x))
        hit = tf.random.uniform(tf.shape(x)) < self.noise_level
        if self.corruption == "masking":
            return tf.where(hit, tf.zeros_like(x), x)
        salt = tf.random.uniform(tf.shape(x)) < 0.5
        extremes = tf.where(salt, tf.reduce_max(x), tf.reduce_min(x))
        return tf.where(hit, extremes, x)


@register("sparse_ae")
class SparseAE(AE):
    """An autoencoder with sparse codes: an L1 penalty and the KL sparsity penalty.

    l1 = sum_j |h_j| per example. sparsity = sum_j KL(rho || rho_hat_j), rho_hat_j the mean
    activation of code unit j over the batch: a property of the batch, reported for each of its
    examples (so the batch mean is the penalty). It needs codes in (0, 1): sigmoid codes.

    Args:
        l1_weight: weight of the L1 penalty (>= 0).
        sparsity_weight: weight of the KL sparsity penalty (>= 0).
        rho: the target mean activation, in (0, 1).
        code_activation: "sigmoid" by default; another one only with sparsity_weight=0.
        Others as for `AE`.

    Example:
        model = SparseAE(input_shape=(28, 28, 1), latent_dim=64, sparsity_weight=1.0, rho=0.05)
    """

    config_keys = AE.config_keys + ("l1_weight", "sparsity_weight", "rho")
    example_config = dict(latent_dim=3, hidden_units=(16,), l1_weight=0.1, rho=0.1)
    penalty_names = ("l1", "sparsity")

    def __init__(self, *args, l1_weight=0.0, sparsity_weight=1.0, rho=0.05,
                 code_activation="sigmoid", name="sparse_ae", **kwargs):
        self.l1_weight = _check_non_negative("l1_weight", l1_weight)
        self.sparsity_weight = _check_non_negative("sparsity_weight", sparsity_weight)
        if not 0 < rho < 1:
            raise ValueError(f"rho={rho!r} must be in (0, 1)")
        if self.sparsity_weight > 0 and code_activation != "sigmoid":
            raise ValueError(f"the KL sparsity penalty needs codes in (0, 1): "
                             f"code_activation={code_activation!r} must be 'sigmoid' "
                             f"when sparsity_weight > 0")
        self.rho = float(rho)
        super().__init__(*args, code_activation=code_activation, name=name, **kwargs)

    def penalty_terms(self, x, code):
        rho = self.rho
        # Clipped so a dead or saturated unit gives a large, finite penalty.
        rho_hat = tf.clip_by_value(tf.reduce_mean(code, axis=0), 1e-6, 1 - 1e-6)
        kl = tf.reduce_sum(rho * tf.math.log(rho / rho_hat)
                           + (1 - rho) * tf.math.log((1 - rho) / (1 - rho_hat)))
        return {"l1": tf.reduce_sum(tf.abs(code), axis=1),
                "sparsity": tf.fill(tf.shape(code)[:1], kl)}


@register("contractive_ae")
class ContractiveAE(AE):
    """An autoencoder whose encoder is penalised for its sensitivity (Rifai et al. 2011):
    contractive = ||d f(x) / d x||_F^2 per example, computed exactly.

    The Jacobian comes from `GradientTape.batch_jacobian`: one vectorized backward pass per code
    unit for the whole batch (cost ~ latent_dim backward passes of the encoder), and, recorded
    by the training step's tape, it is differentiated again for the weights' gradients.

    Args:
        contractive_weight: weight of the penalty (>= 0).
        code_activation: None (a linear code), as for `AE`. Rifai et al.'s one-layer encoder has
            a sigmoid code, available as "sigmoid"; but behind the deep default encoder, on
            MNIST, sigmoid and tanh codes saturated within the first epoch, even with no
            penalty at all, and left a constant code (the saturation of a top sigmoid layer
            that Glorot & Bengio 2010 describe).
        Others as for `AE`.

    Example:
        model = ContractiveAE(input_shape=(28, 28, 1), latent_dim=32, contractive_weight=0.1)
    """

    config_keys = AE.config_keys + ("contractive_weight",)
    example_config = dict(latent_dim=3, hidden_units=(8, 16), network="conv")
    penalty_names = ("contractive",)
    # batch_jacobian's vectorized backward pass of the encoder is made of TensorFlow's gradient
    # kernels (ReluGrad, ...), which are neither LiteRT builtins nor ONNX operators.
    tensorflow_only_signatures = {
        "score": "the contractive penalty differentiates the encoder with TensorFlow's gradient "
                 "ops, which LiteRT and ONNX lack: score this model with its SavedModel"}

    def __init__(self, *args, contractive_weight=0.1, name="contractive_ae", **kwargs):
        self.contractive_weight = _check_non_negative("contractive_weight", contractive_weight)
        super().__init__(*args, name=name, **kwargs)

    def xla_pays(self):
        # On CPU, XLA takes long to compile the vectorized Jacobian, even of a tiny MLP, and
        # then trains it far slower than TensorFlow's own kernels do.
        return False

    def jacobian_norm(self, x):
        """||d f(x) / d x||_F^2 per example, [batch]."""
        x = tf.convert_to_tensor(x, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(x)
            code = self.code(x)
        jacobian = tape.batch_jacobian(code, x)                    # [batch, k, *input_shape]
        return tf.reduce_sum(tf.reshape(tf.square(jacobian), [tf.shape(x)[0], -1]), axis=1)

    def penalty_terms(self, x, code):
        # The code is recomputed under the inner tape: one more encoder pass, negligible next
        # to the k backward passes of the Jacobian.
        return {"contractive": self.jacobian_norm(x)}
