"""The VAE's mathematics, its bad-input errors, and the distribution heads it is made of."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

import tfvae
from tfvae import layers

tfd = tfp.distributions


def small_vae(**kwargs):
    tf_keras.utils.set_random_seed(0)
    return tfvae.models.VAE(**{"input_shape": (8, 8, 1), "latent_dim": 3,
                               "hidden_units": (32,), **kwargs})


def test_kl_is_non_negative_and_matches_a_monte_carlo_estimate(digits):
    model = small_vae()
    q = model.encode(digits[:8])
    analytic = model.compute_terms(digits[:8])["kl"].numpy()
    assert np.all(analytic >= 0)
    z = q.sample(200_000, seed=1)
    monte_carlo = tf.reduce_mean(q.log_prob(z) - model.prior().log_prob(z), axis=0).numpy()
    np.testing.assert_allclose(monte_carlo, analytic, atol=0.01, rtol=0.02)


def test_kl_formula_matches_references_closed_form(digits):
    q = small_vae().encode(digits[:8])
    mu, sigma = q.mean().numpy(), q.stddev().numpy()
    closed_form = 0.5 * np.sum(mu ** 2 + sigma ** 2 - 1 - np.log(sigma ** 2), axis=-1)
    np.testing.assert_allclose(tfvae.objectives.kl_divergence(q, small_vae().prior()), closed_form,
                               rtol=1e-5, atol=1e-5)


def test_reconstruction_is_the_bernoulli_cross_entropy_through_the_reparameterized_sample(digits):
    model = small_vae()
    x = tf.constant(digits[:4])
    with tf.GradientTape() as tape:
        terms = model.compute_terms(x, training=True)
    gradients = tape.gradient(terms["reconstruction"], model.encoder.trainable_variables)
    # The reparameterization trick: the reconstruction term's gradient reaches the encoder.
    assert all(g is not None and np.any(g.numpy() != 0) for g in gradients)
    np.testing.assert_allclose(terms["elbo"], -(terms["reconstruction"] + terms["kl"]), rtol=1e-6)


def test_beta_weights_the_kl_in_the_loss_but_not_in_the_elbo(digits):
    model = small_vae(beta=4.0)
    terms = model.compute_terms(digits[:4])
    np.testing.assert_allclose(terms["loss"], terms["reconstruction"] + 4.0 * terms["kl"], rtol=1e-6)
    np.testing.assert_allclose(terms["elbo"], -(terms["reconstruction"] + terms["kl"]), rtol=1e-6)


def test_overfitting_one_batch_drives_the_loss_down(digits):
    model = small_vae(hidden_units=(64,))
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-2))
    history = model.fit(digits[:16], batch_size=16, epochs=150, verbose=0)
    assert history.history["loss"][-1] < 0.75 * history.history["loss"][0]


def test_log_likelihood_is_at_least_the_elbo(digits):
    model = small_vae()
    model.compile()
    model.fit(digits, epochs=20, batch_size=16, verbose=0)
    x = tf.constant(digits[:16])
    elbo = np.mean([model.compute_terms(x)["elbo"].numpy() for _ in range(20)], axis=0)
    log_likelihood = model.log_likelihood(x, num_samples=500).numpy()
    assert np.mean(log_likelihood) > np.mean(elbo)


def test_evaluation_reads_x_once_and_in_one_xla_kernel_that_exports_leave_out(
        digits, xla_compiled, tmp_path):
    model = small_vae()
    copies = 3
    x = tf.constant(digits[:16])
    z = tf.random.normal([copies * 16, 3], seed=0)   # row i * 16 + j: copy i of example j

    @tf.function
    def fused(z, x):
        with layers.xla_log_probs():
            return layers.log_prob_of_copies(model.decode(z), x, copies)

    plain = tf.function(lambda z, x: layers.log_prob_of_copies(model.decode(z), x, copies))
    by_tfp = tfd.Independent(tfd.Bernoulli(logits=model.decode(z).distribution.logits), 3)
    expected = by_tfp.log_prob(tf.tile(x, [copies, 1, 1, 1]))
    np.testing.assert_allclose(fused(z, x), expected, rtol=1e-6)
    np.testing.assert_allclose(plain(z, x), expected, rtol=1e-6)

    def graph(function, *args):
        return function.get_concrete_function(*args).graph.as_graph_def()

    fused_graph, plain_graph = graph(fused, z, x), graph(plain, z, x)
    assert xla_compiled(fused_graph) and not xla_compiled(plain_graph)
    # x read once, broadcast, in both: a tiled x is what LiteRT could not resize in the export
    assert not any(node.op == "Tile" for node in fused_graph.node)
    assert not any(node.op == "Tile" for node in plain_graph.node)
    # log_likelihood traces its chunks in the context; the export, made after, has no XLA
    # kernel (TF Serving compiles them only behind an experimental flag).
    model.log_likelihood(x, num_samples=10, verbose=0)
    assert xla_compiled(graph(model._log_weights_for_evaluation, x, 10))
    assert not xla_compiled(tfvae.export(model, tmp_path / "vae"))


@pytest.mark.parametrize("kwargs, argument", [
    (dict(latent_dim=0), "latent_dim"),
    (dict(latent_dim=2.5), "latent_dim"),
    (dict(input_shape=()), "input_shape"),
    (dict(input_shape=(8, 0, 1)), "input_shape"),
    (dict(likelihood="poisson"), "likelihood"),
    (dict(likelihood="bernoulli", likelihood_scale=0.1), "likelihood_scale"),
    (dict(network="transformer"), "network"),
    (dict(network="conv", hidden_units=(8, 8, 8, 8)), "input_shape"),
    (dict(hidden_units=(0,)), "hidden_units"),
    (dict(beta=-1.0), "beta"),
])
def test_nonsensical_constructor_values_raise_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        small_vae(**kwargs)


def test_registry_lists_models_and_rejects_unknown_names():
    assert "vae" in tfvae.models.names()
    assert isinstance(tfvae.models.get("vae", input_shape=(4, 4, 1), latent_dim=2,
                                       hidden_units=(8,)), tfvae.models.VAE)
    with pytest.raises(ValueError, match="known models: .*vae"):
        tfvae.models.get("gan")


def test_discretized_logistic_is_a_probability_mass_over_256_levels():
    levels = tf.constant(np.arange(256) / 255.0, tf.float32)[:, None]
    for loc, scale in [(0.3, 0.05), (0.0, 0.001), (1.0, 0.5), (0.5, 1e-4), (0.7, 10.0)]:
        distribution = layers.DiscretizedLogistic(tf.fill([1], loc), tf.fill([1], scale))
        log_mass = distribution.log_prob(levels).numpy()
        assert np.all(np.isfinite(log_mass))
        np.testing.assert_allclose(np.exp(log_mass).sum(), 1.0, atol=1e-4)
    samples = layers.DiscretizedLogistic(tf.fill([1000], 0.5), tf.fill([1000], 0.1)).sample(seed=1)
    np.testing.assert_allclose(samples * 255, np.round(samples * 255), atol=1e-3)


def test_gaussian_head_with_fixed_scale_is_half_the_squared_error_plus_a_constant():
    head = layers.GaussianLikelihood((3,), scale=1.0)
    params = tf.constant([[0.1, 0.2, 0.3]])
    x = tf.constant([[0.5, 0.0, 1.0]])
    expected = -0.5 * np.sum((x - params) ** 2) - 1.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(head(params).log_prob(x), [expected], rtol=1e-6)


def test_heads_configs_hold_no_code():
    for head in [layers.GaussianPosterior((3,)), layers.BernoulliLikelihood((2, 2)),
                 layers.GaussianLikelihood((2,), scale=0.5), layers.DiscretizedLogisticLikelihood((4,))]:
        config = head.get_config()
        assert "make_distribution_fn" not in config and "function" not in config
        clone = type(head).from_config(config)
        params = tf.random.normal([2, head.params_size()], seed=0)
        np.testing.assert_allclose(clone(params).mean(), head(params).mean())


def test_vae_learns_mnist_from_the_shared_folder(shared_data):
    train = tfvae.data.load("mnist", "train", batch_size=100, take=3000,
                            data_dir=str(shared_data / "tensorflow_datasets"), download=False)
    test = tfvae.data.load("mnist", "test", batch_size=500, take=1000,
                           data_dir=str(shared_data / "tensorflow_datasets"), download=False)
    model = tfvae.models.VAE(input_shape=(28, 28, 1), latent_dim=16, hidden_units=(256,))
    model.compile()
    before = model.evaluate(test, verbose=0, return_dict=True)["elbo"]
    model.fit(train, epochs=3, verbose=0)
    after = model.evaluate(test, verbose=0, return_dict=True)
    # An untrained decoder costs ~543 nats (784 * log 2); three short epochs bring it far down.
    assert before < -400 and after["elbo"] > -220, (before, after)
    assert after["kl"] > 1.0  # the latent code is in use, not collapsed to the prior
