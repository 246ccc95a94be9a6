"""The deterministic autoencoders: what the shared battery cannot see.

Bad arguments, the penalties against independent computations (the closed form for one sigmoid
layer, a full Jacobian), corruption in training only, sparsity moving towards rho, the linear AE
against PCA, and the code density behind `sample`.
"""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

import tfvae
from tfvae.callbacks import FitLatentDensity
from tfvae import randomness

DIGITS = (8, 8, 1)


def build(name, **kwargs):
    tf_keras.utils.set_random_seed(0)
    kwargs.setdefault("latent_dim", 3)
    kwargs.setdefault("hidden_units", (16,))
    return tfvae.models.get(name, input_shape=DIGITS, **kwargs)


@pytest.mark.parametrize("name, kwargs, argument", [
    ("denoising_ae", dict(noise_level=-0.1, corruption="gaussian"), "noise_level"),
    ("denoising_ae", dict(noise_level=1.0, corruption="masking"), "noise_level"),
    ("denoising_ae", dict(noise_level=-0.01, corruption="masking"), "noise_level"),
    ("denoising_ae", dict(noise_level=1.5, corruption="salt_and_pepper"), "noise_level"),
    ("denoising_ae", dict(corruption="blur"), "corruption"),
    ("sparse_ae", dict(l1_weight=-1.0), "l1_weight"),
    ("sparse_ae", dict(sparsity_weight=-0.5), "sparsity_weight"),
    ("sparse_ae", dict(rho=0.0), "rho"),
    ("sparse_ae", dict(rho=1.0), "rho"),
    ("sparse_ae", dict(code_activation=None), "code_activation"),
    ("contractive_ae", dict(contractive_weight=-0.1), "contractive_weight"),
    ("ae", dict(max_density_components=0), "max_density_components"),
])
def test_bad_arguments_raise_value_errors_naming_them(name, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        build(name, **kwargs)


def test_large_gaussian_noise_is_allowed():
    assert build("denoising_ae", corruption="gaussian", noise_level=2.0).noise_level == 2.0


@pytest.mark.parametrize("name, penalties", [
    ("ae", ()), ("denoising_ae", ()), ("sparse_ae", ("l1", "sparsity")),
    ("contractive_ae", ("contractive",))])
def test_terms_add_up_and_mse_is_per_pixel(name, penalties, digits):
    model = build(name, **({"l1_weight": 0.3} if name == "sparse_ae" else {}))
    x = tf.constant(digits[:10])
    terms = {k: v.numpy() for k, v in model.compute_terms(x).items()}
    assert [m.name for m in model.metrics] == ["loss", "reconstruction", *penalties, "mse"]
    weighted = [getattr(model, f"{p}_weight") * terms[p] for p in penalties]
    loss = terms["reconstruction"] + sum(weighted)
    np.testing.assert_allclose(terms["loss"], loss, rtol=1e-5)
    mse = np.mean(np.square(model(x).numpy() - digits[:10]), axis=(1, 2, 3))
    np.testing.assert_allclose(terms["mse"], mse, rtol=1e-5)
    outputs = model.encode_outputs(x, tf.range(10, dtype=tf.int64))
    np.testing.assert_array_equal(outputs["code"], outputs["mean"])
    np.testing.assert_array_equal(outputs["code"], outputs["z"])     # nothing drawn
    np.testing.assert_array_equal(outputs["stddev"], 0.0)


def test_linear_autoencoder_reaches_pca_on_digits():
    """PCA is the best rank-k linear map: the linear AE gets within 2% of its test MSE, and
    cannot beat it on the data both were fitted to."""
    images = (load_digits().images[..., None] / 16.0).astype(np.float32)
    train, test = images[:1500], images[1500:]
    k = 6
    pca = PCA(k).fit(train.reshape(len(train), -1))

    def pca_mse(x):
        flat = x.reshape(len(x), -1)
        return np.mean(np.square(pca.inverse_transform(pca.transform(flat)) - flat))

    model = build("ae", latent_dim=k, hidden_units=(), activation=None, likelihood="gaussian",
                  likelihood_scale=1.0)
    steps = 1500
    model.compile(optimizer=tf_keras.optimizers.Adam(
        tf_keras.optimizers.schedules.CosineDecay(3e-2, steps)))
    model.fit(train, batch_size=300, epochs=steps // 5, verbose=0)
    train_mse = model.evaluate(train, batch_size=1500, verbose=0, return_dict=True)["mse"]
    test_mse = model.evaluate(test, batch_size=300, verbose=0, return_dict=True)["mse"]
    assert train_mse >= pca_mse(train) * (1 - 1e-4)
    assert test_mse <= pca_mse(test) * 1.02, (test_mse, pca_mse(test))


@pytest.mark.parametrize("corruption", ["gaussian", "masking", "salt_and_pepper"])
def test_denoising_encodes_corrupted_inputs_in_training_only(corruption, digits):
    model = build("denoising_ae", corruption=corruption, noise_level=0.3)
    seen = []
    code = model.code

    def spy(x, training=False):
        seen.append((training, np.array(x)))
        return code(x, training=training)

    model.code = spy  # the encoder's entry point, called by compute_terms
    model.compile(run_eagerly=True, jit_compile=False)  # eager, so the spy sees arrays
    model.fit(digits, batch_size=64, epochs=1, shuffle=False, verbose=0)
    (training, corrupted), = seen
    assert training and corrupted.shape == digits.shape
    changed = corrupted != digits
    if corruption == "gaussian":
        assert np.std(corrupted - digits) == pytest.approx(0.3, rel=0.1)
    else:
        # Pixels already at 0 (or 1) may be set to their own value: count the others.
        can_change = (digits > 0) if corruption == "masking" else (digits > 0) & (digits < 1)
        assert changed[can_change].mean() == pytest.approx(0.3, abs=0.05)
        allowed = [0.0] if corruption == "masking" else [0.0, 1.0]
        assert np.all(np.isin(corrupted[changed], allowed))

    seen.clear()
    model.evaluate(digits, batch_size=64, verbose=0)
    model.predict(digits, batch_size=64, verbose=0)
    assert len(seen) == 2
    for training, x in seen:
        assert not training
        np.testing.assert_array_equal(x, digits)


def mean_activation(model, x):
    return float(np.mean(model.code(x)))


def test_sparse_mean_activation_moves_towards_rho_as_its_weight_grows(digits):
    rho = 0.05
    distances = []
    for weight in (0.0, 0.3, 3.0):
        model = build("sparse_ae", latent_dim=8, sparsity_weight=weight, rho=rho)
        # Without XLA (its compiling took most of the time; the same distances to 1e-6): the
        # battery trains the family compiled.
        model.compile(optimizer=tf_keras.optimizers.Adam(1e-2), jit_compile=False)
        model.fit(digits, batch_size=32, epochs=40, verbose=0)
        distances.append(abs(mean_activation(model, digits) - rho))
    assert distances[0] > distances[1] > distances[2], distances
    assert distances[2] < 0.05


def test_l1_penalty_shrinks_codes(digits):
    sizes = []
    for weight in (0.0, 1.0):
        model = build("sparse_ae", latent_dim=8, l1_weight=weight, sparsity_weight=0.0,
                      code_activation="relu")
        model.compile(optimizer=tf_keras.optimizers.Adam(1e-2), jit_compile=False)  # as above
        model.fit(digits, batch_size=32, epochs=30, verbose=0)
        sizes.append(float(np.mean(model.compute_terms(tf.constant(digits))["l1"])))
    assert sizes[1] < 0.5 * sizes[0], sizes


def test_contractive_penalty_matches_the_closed_form_of_one_sigmoid_layer(digits):
    # h = sigmoid(W x + b): ||J||_F^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ji^2 (REFERENCES.md).
    model = build("contractive_ae", latent_dim=5, hidden_units=(), code_activation="sigmoid")
    kernel, bias = (v.numpy().astype(np.float64) for v in model.encoder_head.weights)
    kernel *= 3.0  # larger weights than the initializer's: sigmoids away from their linear part
    model.encoder_head.kernel.assign(kernel)
    x = digits[:10]
    h = 1 / (1 + np.exp(-(x.reshape(10, -1) @ kernel + bias)))
    expected = np.sum((h * (1 - h)) ** 2 * np.sum(kernel ** 2, axis=0), axis=1)
    got = model.compute_terms(tf.constant(x))["contractive"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4)


@pytest.mark.parametrize("network, hidden_units", [("mlp", (7, 5)), ("conv", (4,))])
def test_contractive_penalty_matches_a_full_jacobian(network, hidden_units, digits):
    model = build("contractive_ae", latent_dim=3, hidden_units=hidden_units, network=network,
                  activation="tanh")
    x = tf.constant(digits[:4])
    with tf.GradientTape() as tape:
        tape.watch(x)
        code = model.code(x)
    full = tape.jacobian(code, x).numpy()          # [4, 3, 4, 8, 8, 1]: every output, every input
    expected = [np.sum(full[i, :, i] ** 2) for i in range(4)]
    np.testing.assert_allclose(model.jacobian_norm(x), expected, rtol=1e-5)


def test_contractive_penalty_trains_the_encoder(digits):
    x = tf.constant(digits[:16])
    model = build("contractive_ae", latent_dim=3, contractive_weight=1.0)
    with tf.GradientTape() as tape:
        penalty = tf.reduce_mean(model.compute_terms(x, training=True)["contractive"])
    kernels = [v for v in model.encoder.trainable_variables + model.encoder_head.trainable_variables
               if "kernel" in v.name]
    # Through the Jacobian, a second derivative reaches every kernel (not the code's bias,
    # which the Jacobian of a linear code does not depend on).
    for gradient in tape.gradient(penalty, kernels):
        assert gradient is not None and np.all(np.isfinite(gradient))
        assert np.any(gradient.numpy() != 0)
    penalties = []
    for weight in (0.0, 10.0):
        model = build("contractive_ae", latent_dim=3, contractive_weight=weight)
        model.compile(optimizer=tf_keras.optimizers.Adam(1e-2))
        model.fit(digits, batch_size=32, epochs=20, verbose=0)
        penalties.append(float(np.mean(model.compute_terms(x)["contractive"])))
    assert penalties[1] < 0.5 * penalties[0], penalties


# ---- the code density behind `sample` ----------------------------------------------------------
def test_sampling_before_fitting_draws_standard_normal_codes():
    model = build("ae")
    seeds = tf.constant([3, 1, 4], tf.int64)
    np.testing.assert_allclose(model.sample_latent(seeds),
                               randomness.normal(seeds, model.latent_dim), atol=1e-6)
    assert model.card_info()["latent_density"]["kind"] == "standard_normal"


def test_gaussian_density_matches_the_codes(digits):
    model = build("ae", latent_dim=2)
    model.compile()
    model.fit(digits, epochs=5, verbose=0, callbacks=[FitLatentDensity(digits)])
    assert model.card_info()["latent_density"] == {"kind": "gaussian", "components": 1}
    codes = model.codes_of(tf.data.Dataset.from_tensor_slices(digits).batch(10))
    samples = tf.function(model.sample_latent)(tf.range(4000, dtype=tf.int64)).numpy()
    scale = np.sqrt(np.diag(np.cov(codes, rowvar=False)))
    np.testing.assert_allclose(samples.mean(0), codes.mean(0), atol=0.1 * scale.max())
    np.testing.assert_allclose(np.cov(samples, rowvar=False), np.cov(codes, rowvar=False),
                               atol=0.1 * scale.max() ** 2)


@pytest.mark.parametrize("kwargs", [dict(kind="kde"), dict(kind="gmm", components=0),
                                    dict(kind="gmm", components=2.5),
                                    dict(kind="gmm", components=True)])
def test_fit_latent_density_callback_checks_its_arguments_before_training(digits, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs)) if len(kwargs) == 1 else "components"):
        FitLatentDensity(digits, **kwargs)


def test_fit_latent_density_callback_refuses_a_model_without_codes_before_training(digits):
    model = tfvae.models.get("vae", input_shape=DIGITS, latent_dim=2, hidden_units=(8,))
    model.compile()
    with pytest.raises(TypeError, match="needs an autoencoder"):
        model.fit(digits, epochs=1, verbose=0, callbacks=[FitLatentDensity(digits)])
    assert int(model.optimizer.iterations) == 0


def test_fit_latent_density_callback_refuses_too_many_components_before_training(digits):
    model = tfvae.models.get("ae", input_shape=DIGITS, latent_dim=2, hidden_units=(8,),
                             max_density_components=3)
    model.compile()
    with pytest.raises(ValueError, match="max_density_components=3"):
        model.fit(digits, epochs=1, verbose=0,
                  callbacks=[FitLatentDensity(digits, kind="gmm", components=np.int64(4))])
    assert int(model.optimizer.iterations) == 0
    # A numpy integer within the bound is as good as an int.
    model.fit(digits, epochs=1, verbose=0,
              callbacks=[FitLatentDensity(digits, kind="gmm", components=np.int64(2))])
    assert int(model.optimizer.iterations) > 0


def test_mixture_density_is_stored_saved_and_exported(digits, tmp_path):
    from sklearn.mixture import GaussianMixture

    model = build("ae", latent_dim=2, max_density_components=4)
    model.compile()
    model.fit(digits, epochs=5, verbose=0)
    codes = model.fit_latent_density(digits, kind="gmm", components=3)
    reference = GaussianMixture(3, covariance_type="full", reg_covar=1e-6,
                                random_state=0).fit(codes)
    np.testing.assert_allclose(model.latent_density.mixture_weights.numpy(), [*reference.weights_, 0],
                               atol=1e-5)
    # The samples follow the mixture: their mean and covariance are the mixture's.
    samples = tf.function(model.sample_latent)(tf.range(6000, dtype=tf.int64)).numpy()
    w, mu, sigma = reference.weights_, reference.means_, reference.covariances_
    mean = w @ mu
    cov = np.einsum("c,cij->ij", w, sigma + np.einsum("ci,cj->cij", mu, mu)) - np.outer(mean, mean)
    scale = np.sqrt(np.diag(cov)).max()
    np.testing.assert_allclose(samples.mean(0), mean, atol=0.1 * scale)
    np.testing.assert_allclose(np.cov(samples, rowvar=False), cov, atol=0.1 * scale ** 2)

    seeds = tf.constant([0, 5, 9], tf.int64)
    model.save_weights(tmp_path / "w.h5")
    clone = type(model).from_config(model.get_config())
    clone.load_weights(tmp_path / "w.h5")
    np.testing.assert_allclose(clone.sample_latent(seeds), model.sample_latent(seeds))
    path = tfvae.export(model, tmp_path / "m")
    loaded = tfvae.load(path)
    assert loaded.card["latent_density"] == {"kind": "gmm", "components": 3}
    assert "mixture" in loaded.card["sampling"]
    np.testing.assert_allclose(loaded.sample([0, 5, 9])["x"], model.sample_outputs(seeds)["x"],
                               atol=1e-5)


def test_bad_density_arguments(digits):
    model = build("ae", max_density_components=2)
    with pytest.raises(ValueError, match="kind"):
        model.fit_latent_density(digits, kind="flow")
    with pytest.raises(ValueError, match="components"):
        model.fit_latent_density(digits, kind="gmm", components=3)
