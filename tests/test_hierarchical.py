"""Focused tests of the hierarchical VAEs, the IAF posterior and the training aids and
evaluation every VAE shares (warm-up, free bits, IWAE, importance-sampled log-likelihood).
The shared battery (tests/test_battery.py) covers the plumbing; here, the mathematics."""
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from scipy.stats import multivariate_normal

import tfvae
from conftest import REPO
from tfvae.models.hierarchical import PrecisionWeightedGaussian
from tfvae.models.iaf import AutoregressiveStep

DIGITS = (8, 8, 1)
sys.path.insert(0, str(REPO / "bench"))


def inverse_softplus(y):
    return np.log(np.expm1(y))


def std_to_raw(std):
    """The raw parameter a GaussianPosterior head turns into `std` (softplus + 1e-4 floor)."""
    return inverse_softplus(np.asarray(std, np.float64) - 1e-4)


def set_dense(layer, kernel, bias):
    """The one Dense layer of `layer` (a head, or a network of one layer) gets kernel
    [in, out] and bias."""
    (dense,) = [l for l in [layer, *layer.submodules] if isinstance(l, tf_keras.layers.Dense)]
    dense.set_weights([np.asarray(kernel, np.float32).reshape(dense.kernel.shape),
                       np.asarray(bias, np.float32)])


def trained(name, digits, epochs=40, **kwargs):
    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.get(name, input_shape=DIGITS, **kwargs)
    # No XLA: for a few hundred tiny steps its compilation costs more than it saves.
    model.compile(optimizer=tf_keras.optimizers.Adam(3e-3), jit_compile=False)
    model.fit(digits, batch_size=16, epochs=epochs, verbose=0)
    return model


@pytest.fixture(scope="module")
def trained_vae(digits):
    return trained("vae", digits, latent_dim=4, hidden_units=(32,))


@pytest.fixture(scope="module")
def trained_hvae(digits):
    return trained("hvae", digits, latent_dims=(4, 2), hidden_units=(32,))


# ---- per-layer terms ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["hvae", "ladder_vae"])
def test_per_layer_kl_terms_add_up_and_are_reported(name, digits):
    model = trained(name, digits, epochs=2, latent_dims=(4, 3, 2), hidden_units=(16,))
    terms = model.compute_terms(tf.constant(digits), training=False)
    kl_layers = [terms[f"kl_{l}"] for l in (1, 2, 3)]
    np.testing.assert_allclose(terms["kl"], tf.add_n(kl_layers), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(terms["elbo"], -(terms["reconstruction"] + terms["kl"]),
                               rtol=1e-5, atol=1e-4)
    logs = model.evaluate(digits, verbose=0, return_dict=True)
    assert {"kl_1", "kl_2", "kl_3", "kl", "elbo"} <= set(logs)
    # The top layer's KL is in closed form, hence non-negative for every example.
    assert np.all(terms["kl_3"].numpy() >= 0)


def test_precision_weighting_equals_the_formula(rng):
    head = PrecisionWeightedGaussian((5,))
    mu_hat, mu_p = rng.normal(size=(2, 3, 5))
    s_hat, s_p = rng.uniform(0.1, 2.0, size=(2, 3, 5))
    params = np.concatenate([mu_hat, std_to_raw(s_hat), mu_p, std_to_raw(s_p)], -1)
    q = head(tf.constant(params, tf.float32))
    variance = 1.0 / (s_hat ** -2 + s_p ** -2)
    np.testing.assert_allclose(q.stddev(), np.sqrt(variance), rtol=1e-4)
    np.testing.assert_allclose(q.mean(), (mu_hat / s_hat ** 2 + mu_p / s_p ** 2) * variance,
                               rtol=1e-4, atol=1e-5)


def test_ladder_posterior_combines_the_bottom_up_estimate_with_the_shared_prior(digits):
    model = tfvae.models.get("ladder_vae", input_shape=DIGITS, latent_dims=(4, 2),
                             hidden_units=(16,))
    x = tf.constant(digits[:5])
    estimates = model.features(x)
    qs, zs, ps = model._infer(estimates, sample=False)
    # The prior below the top is the generative model's p(z_1 | z_2) at the posterior's z_2.
    prior = model.prior_heads[0](model.prior_nets[0](zs[1]))
    np.testing.assert_allclose(ps[0].mean(), prior.mean(), atol=1e-6)
    mu_hat, raw_hat = np.split(estimates[0].numpy(), 2, axis=-1)
    s_hat = np.log1p(np.exp(raw_hat)) + 1e-4
    mu_p, s_p = prior.mean().numpy(), prior.stddev().numpy()
    variance = 1.0 / (s_hat ** -2 + s_p ** -2)
    np.testing.assert_allclose(qs[0].stddev(), np.sqrt(variance), rtol=1e-4)
    np.testing.assert_allclose(qs[0].mean(), (mu_hat / s_hat ** 2 + mu_p / s_p ** 2) * variance,
                               rtol=1e-4, atol=1e-5)
    # The top posterior is the top estimate itself.
    mu_top, _ = np.split(estimates[1].numpy(), 2, axis=-1)
    np.testing.assert_allclose(qs[1].mean(), mu_top, atol=1e-6)


# ---- IAF -----------------------------------------------------------------------------------------
def test_fine_tuning_trains_on_the_iwae_bound_with_a_decaying_rate(digits):
    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.VAE(input_shape=DIGITS, latent_dim=2, hidden_units=(16,))
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-2), jit_compile=False)
    x = np.concatenate([digits, digits])
    model.fit(x, batch_size=32, epochs=2, verbose=0)           # 4 steps an epoch
    schedule = tfvae.training.start_fine_tuning(model, steps_per_epoch=4, epochs=4,
                                                iwae_samples=8, decay=0.5, decay_epochs=2)
    assert model.iwae_samples == 8
    # From step 8: 1e-2 for two epochs, then halved (the optimizer's moments stay).
    assert [float(schedule(step)) for step in (8, 15, 16, 23)] == pytest.approx(
        [1e-2, 1e-2, 5e-3, 5e-3])
    history = model.fit(x, batch_size=32, initial_epoch=2, epochs=4, verbose=0).history
    assert int(model.optimizer.iterations) == 16
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-2)   # the last step's
    assert float(schedule(model.optimizer.iterations)) == pytest.approx(5e-3)   # the next's
    # The training step traced anew: its loss is the negative IWAE bound with 8 samples,
    # well above the one-sample ELBO it reports beside it.
    assert all(-loss > elbo + 0.5 for loss, elbo in zip(history["loss"], history["elbo"]))
    with pytest.raises(ValueError, match="compiled"):
        tfvae.training.start_fine_tuning(tfvae.models.VAE(input_shape=DIGITS, latent_dim=2),
                                         steps_per_epoch=4, epochs=4)


def test_batch_norm_statistics_are_set_from_one_pass_over_the_examples(digits):
    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.LadderVAE(input_shape=DIGITS, latent_dims=(3, 2), hidden_units=(16,))
    model.compile(jit_compile=False)
    model.fit(digits[:64], batch_size=32, epochs=1, verbose=0)
    norms = [l for l in model.submodules if isinstance(l, tf_keras.layers.BatchNormalization)]
    first = model.bottom_up[0]
    dense = [l for l in first.layers if isinstance(l, tf_keras.layers.Dense)][0]
    norm = first.layers[first.layers.index(dense) + 1]
    inputs = dense(tf_keras.layers.Flatten()(digits)).numpy()
    assert not np.allclose(norm.moving_mean.numpy(), inputs.mean(0), atol=1e-3)
    before = model.evaluate(digits, verbose=0, return_dict=True)["elbo"]

    assert tfvae.training.set_batch_norm_statistics(model, digits) == len(norms) == 4
    np.testing.assert_allclose(norm.moving_mean.numpy(), inputs.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(norm.moving_variance.numpy(), inputs.var(0), rtol=1e-3, atol=1e-4)
    assert {l.momentum for l in norms} == {0.99}   # training goes on as before
    # Evaluation uses them: on the data they were computed from, the bound moves.
    assert model.evaluate(digits, verbose=0, return_dict=True)["elbo"] != before
    # A model without batch norm is left alone.
    vae = tfvae.models.VAE(input_shape=DIGITS, latent_dim=2, hidden_units=(8,))
    assert tfvae.training.set_batch_norm_statistics(vae, digits) == 0
    with pytest.raises(ValueError, match="shape"):
        tfvae.training.set_batch_norm_statistics(model, digits[:, :4])


def test_made_step_is_autoregressive_in_its_order(rng):
    z = tf.constant(rng.normal(size=(2, 4)), tf.float32)
    context = tf.constant(rng.normal(size=(2, 3)), tf.float32)
    for reverse in (False, True):
        step = AutoregressiveStep(4, 3, hidden_units=(16, 16), reverse=reverse)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(z)
            m, s = step(z, context)
        for out in (m, s):
            jacobian = np.abs(tape.batch_jacobian(out, z).numpy()).max(0)   # [out i, in j]
            allowed = np.tril(np.ones((4, 4)), -1)       # output i sees inputs j < i only
            if reverse:
                allowed = allowed[::-1, ::-1]
            assert np.all(jacobian[allowed == 0] == 0)
            assert np.all(jacobian[allowed == 1] > 0)


def test_iaf_log_q_equals_the_change_of_variables(digits, rng):
    model = tfvae.models.get("iaf_vae", input_shape=DIGITS, latent_dim=3, hidden_units=(16,),
                             flow_steps=3, flow_hidden_units=(8,), context_dim=4)
    # Move the gates away from their initial near-identity so the flow does something.
    for step in model.flow_layers:
        step.s_bias.assign(rng.normal(size=3))
    features = model.features(tf.constant(digits[:6]))
    eps = tf.constant(rng.normal(size=(6, 3)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(eps)
        z, log_q = model.flow(features, eps)
    jacobian = tape.batch_jacobian(z, eps).numpy().astype(np.float64)
    _, log_det = np.linalg.slogdet(jacobian)
    log_base = -0.5 * (eps.numpy().astype(np.float64) ** 2).sum(-1) - 1.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(log_q, log_base - log_det, rtol=1e-4, atol=1e-4)
    # The flow is not the identity: log q differs from the base Gaussian's density at z_0.
    q0 = model.encode(tf.constant(digits[:6]))
    z0 = q0.mean() + q0.stddev() * eps
    assert np.max(np.abs(log_q - q0.log_prob(z0))) > 1e-2


# ---- warm-up, free bits, IWAE ------------------------------------------------------------------
class Record(tf_keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(dict(logs, kl_weight=float(self.model.kl_weight.numpy())))


def test_warmup_moves_kl_weight_inside_the_compiled_fit(digits):
    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.get("hvae", input_shape=DIGITS, latent_dims=(3, 2), hidden_units=(16,),
                             kl_warmup_steps=0)  # the callback's ramp alone
    assert "kl_weight" not in model.get_config() and float(model.kl_weight.numpy()) == 1.0
    model.compile(jit_compile=True)
    record = Record()
    model.fit(digits, batch_size=16, epochs=2, verbose=0,   # 4 steps per epoch
              callbacks=[tfvae.callbacks.KLWarmup(steps=4), record])
    weights = [b["kl_weight"] for b in record.batches]
    np.testing.assert_allclose(weights, [0, 0.25, 0.5, 0.75, 1, 1, 1, 1])
    first = record.batches[0]
    # At weight 0 the loss is the reconstruction alone; later the compiled step sees the KL.
    assert first["loss"] == pytest.approx(first["reconstruction"], rel=1e-6)
    assert first["kl"] > 0.1
    last = record.batches[-1]
    assert last["loss"] == pytest.approx(last["reconstruction"] + last["kl"], rel=1e-5)

    history = model.fit(digits, batch_size=16, epochs=3, verbose=0,
                        callbacks=[tfvae.callbacks.KLWarmup(epochs=2)])
    assert history.history["kl_weight"] == [0.0, 0.5, 1.0]

    # A ramp cut short by the end of fit still leaves the full objective for evaluate.
    history = model.fit(digits, batch_size=16, epochs=1, verbose=0,
                        callbacks=[tfvae.callbacks.KLWarmup(epochs=4)])
    assert history.history["kl_weight"] == [0.0] and float(model.kl_weight.numpy()) == 1.0
    scores = model.evaluate(digits, verbose=0, return_dict=True)
    assert scores["loss"] == pytest.approx(-scores["elbo"], rel=1e-5)


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_in_graph_warmup_follows_the_optimizer_steps_at_any_steps_per_execution(
        digits, steps_per_execution):
    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.get("hvae", input_shape=DIGITS, latent_dims=(3, 2), hidden_units=(16,),
                             kl_warmup_steps=8)
    assert model.get_config()["kl_warmup_steps"] == 8
    model.compile(steps_per_execution=steps_per_execution)
    x = tf.constant(digits[:16])
    seen = []

    class Weight(tf_keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((int(self.model.optimizer.iterations),
                         float(self.model._objective_kl_weight(training=True))))

    model.fit(digits, batch_size=16, epochs=3, verbose=0, callbacks=[Weight()])  # 4 steps each
    assert seen == [(4, 0.5), (8, 1.0), (12, 1.0)]
    # What the compiled step minimised at step 4: the reconstruction plus half the KL.
    model.optimizer.iterations.assign(4)
    terms = model.compute_terms(x, training=True)
    np.testing.assert_allclose(terms["loss"], terms["reconstruction"] + 0.5 * terms["kl"],
                               rtol=1e-5)
    # Evaluation weighs the KL fully whatever the step.
    scores = model.evaluate(digits, verbose=0, return_dict=True)
    assert scores["loss"] == pytest.approx(-scores["elbo"], rel=1e-5)


def test_chains_warm_up_by_default_and_size_their_networks_from_the_latents():
    assert tfvae.models.HierarchicalVAE().kl_warmup_steps > 0
    assert tfvae.models.HierarchicalVAE().batch_norm and tfvae.models.LadderVAE().batch_norm
    assert tfvae.models.VAE(input_shape=DIGITS, latent_dim=2, hidden_units=(8,)).kl_warmup_steps == 0
    # Networks from the latents (4 and 8 units per latent unit), for any depth.
    assert tfvae.models.HierarchicalVAE().hidden_units == ((400, 400), (200, 200))
    assert tfvae.models.LadderVAE().hidden_units[0] == (512, 512)
    ladder = tfvae.models.LadderVAE(input_shape=DIGITS, latent_dims=(8, 4))
    assert ladder.hidden_units == ((64, 64), (32, 32))
    with pytest.raises(ValueError, match="kl_warmup_steps"):
        tfvae.models.HierarchicalVAE(input_shape=DIGITS, kl_warmup_steps=-1)


def test_the_chains_defaults_keep_its_top_layer_and_beat_the_vae_on_data_they_were_not_tuned_for(
        shared_data):
    """The defaults' quality on MNIST's grey levels (the zoo was tuned on binarized MNIST), as
    bench/defaults.py measures it: each model built from its input shape alone, `compile()`,
    `fit` for 3 epochs (the chain's warm-up ends at step 1000 of 1407), paired test ELBO."""
    import defaults  # bench/defaults.py

    run = defaults.compare(epochs=3, seed=0, data_dir=str(shared_data / "tensorflow_datasets"))
    vae, hvae = run["vae"], run["hvae"]
    assert hvae["active_units"][1] >= 3, hvae       # several units of z_2 carry information
    assert hvae["kl_2"] > 1.0, hvae                 # nats: not a collapsed top layer
    # At least the VAE's ELBO, by more than the noise of the comparison.
    assert run["hvae_minus_vae"] > 3 * run["hvae_minus_vae_stderr"], run


def test_warmup_arguments_are_checked():
    with pytest.raises(ValueError, match="exactly one"):
        tfvae.callbacks.KLWarmup(epochs=2, steps=10)
    with pytest.raises(ValueError, match="integer >= 1"):
        tfvae.callbacks.KLWarmup(steps=0)


def test_free_bits_floor_the_batch_averaged_kl_of_each_layer(digits):
    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.get("hvae", input_shape=DIGITS, latent_dims=(4, 2), hidden_units=(16,))
    terms = model.compute_terms(tf.constant(digits))
    means = [float(tf.reduce_mean(terms[f"kl_{l}"])) for l in (1, 2)]
    floor = float(np.mean(means))          # above one layer's KL, below the other's
    assert min(means) < floor < max(means)
    floored = type(model).from_config({**model.get_config(), "free_bits": floor})
    floored.set_weights(model.get_weights())
    tf_keras.utils.set_random_seed(1)
    terms = floored.compute_terms(tf.constant(digits))
    means = [float(tf.reduce_mean(terms[f"kl_{l}"])) for l in (1, 2)]
    expected = np.mean(terms["reconstruction"]) + sum(max(floor, m) for m in means)
    assert float(tf.reduce_mean(terms["loss"])) == pytest.approx(expected, rel=1e-5)
    # The floor shapes the loss only: the reported ELBO is the plain one.
    np.testing.assert_allclose(terms["elbo"], -(terms["reconstruction"] + terms["kl"]), rtol=1e-6)
    # Below the floor the KL gets no gradient from the loss.
    x = tf.constant(digits)
    big = tfvae.models.get("vae", input_shape=DIGITS, latent_dim=3, hidden_units=(16,),
                           free_bits=1e3)
    with tf.GradientTape(persistent=True) as tape:
        terms = big.compute_terms(x)
        floor_part = tf.reduce_mean(terms["loss"] - terms["reconstruction"])
        kl = tf.reduce_mean(terms["kl"])
    assert float(floor_part) == pytest.approx(1e3)
    gradient = tape.gradient(floor_part, big.encoder.trainable_variables)
    assert all(float(tf.reduce_max(tf.abs(g))) < 1e-6 for g in gradient)
    assert any(float(tf.reduce_max(tf.abs(g))) > 1e-3
               for g in tape.gradient(kl, big.encoder.trainable_variables))


def test_objective_arguments_are_checked():
    with pytest.raises(ValueError, match="free_bits"):
        tfvae.models.get("vae", input_shape=DIGITS, free_bits=-1.0)
    with pytest.raises(ValueError, match="IWAE"):
        tfvae.models.get("vae", input_shape=DIGITS, free_bits=1.0, iwae_samples=5)
    with pytest.raises(ValueError, match="iwae_samples"):
        tfvae.models.get("hvae", input_shape=DIGITS, iwae_samples=0)
    with pytest.raises(ValueError, match="hidden_units"):
        tfvae.models.get("hvae", input_shape=DIGITS, latent_dims=(3, 2, 1),
                         hidden_units=((8,), (8,)))
    with pytest.raises(ValueError, match="hidden_units"):
        tfvae.models.get("ladder_vae", input_shape=DIGITS, latent_dims=(3, 2), hidden_units=())
    with pytest.raises(ValueError, match="flow_steps"):
        tfvae.models.get("iaf_vae", input_shape=DIGITS, flow_steps=-1)


def test_iwae_loss_is_the_negative_bound(digits):
    model = tfvae.models.get("vae", input_shape=DIGITS, latent_dim=3, hidden_units=(16,),
                             iwae_samples=4)
    x = tf.constant(digits[:8])
    tf_keras.utils.set_random_seed(3)
    loss = model.compute_terms(x)["loss"]
    # Replay the random stream: the one-sample pass (the reported terms), then the k = 4 draw.
    tf_keras.utils.set_random_seed(3)
    model.draw(model.features(x))
    bound = tfvae.objectives.log_mean_exp(model.log_weights(x, 4))
    np.testing.assert_allclose(loss, -bound, rtol=1e-5)


@pytest.mark.parametrize("fixture", ["trained_vae", "trained_hvae"])
def test_iwae_bound_and_log_likelihood_rise_above_the_elbo_with_k(fixture, digits, request):
    model = request.getfixturevalue(fixture)
    x = tf.constant(digits)
    tf_keras.utils.set_random_seed(0)
    # L_k averaged over the 64 examples, 50 draws each; the draws give its standard error,
    # and each step up in k must beat three standard errors of the difference.
    draws = {k: np.array([model.iwae_bound(x, k).numpy().mean() for _ in range(50)])
             for k in (1, 3, 30)}
    bound = {k: d.mean() for k, d in draws.items()}
    error = {k: d.std(ddof=1) / np.sqrt(len(d)) for k, d in draws.items()}

    def clearly_above(k, j):
        return bound[k] - bound[j] > 3 * np.hypot(error[k], error[j])

    assert clearly_above(3, 1) and clearly_above(30, 3)
    elbo = np.array([model.compute_terms(x)["elbo"].numpy().mean() for _ in range(50)])
    assert abs(bound[1] - elbo.mean()) < 3 * np.hypot(error[1], elbo.std(ddof=1) / np.sqrt(50))
    log_px = model.log_likelihood(x, num_samples=2000, chunk_size=300).numpy()
    assert log_px.shape == (64,)
    assert log_px.mean() - bound[1] > 3 * error[1]
    assert log_px.mean() > bound[30] - 3 * error[30]
    bits = model.bits_per_dim(x[:4], num_samples=100).numpy()
    np.testing.assert_allclose(bits, -model.log_likelihood(x[:4], 100) / (64 * np.log(2)),
                               rtol=0.05)


# ---- closed form: linear Gaussian latent models ------------------------------------------------
def linear_vae(W, b, sigma, exact=True):
    """A VAE with linear networks: p(z) = N(0, I), p(x|z) = N(Wz + b, sigma^2 I). W has
    orthogonal columns, so the exact posterior N(S W^T (x - b) / sigma^2, S),
    S = (I + W^T W / sigma^2)^-1, is diagonal and the encoder can be set to it."""
    dim, latent = W.shape
    model = tfvae.models.get("vae", input_shape=(dim,), latent_dim=latent, hidden_units=(),
                             likelihood="gaussian", likelihood_scale=sigma)
    S = np.linalg.inv(np.eye(latent) + W.T @ W / sigma ** 2)
    assert np.allclose(S, np.diag(np.diag(S)))
    mean_kernel, mean_bias = (S @ W.T / sigma ** 2).T, -S @ W.T @ b / sigma ** 2
    std = np.sqrt(np.diag(S))
    if not exact:                          # a worse, still reasonable, posterior
        mean_bias, std = mean_bias + 0.1, 1.2 * std
    set_dense(model.encoder_head, np.concatenate([mean_kernel, np.zeros_like(mean_kernel)], 1),
              np.concatenate([mean_bias, std_to_raw(std)]))
    set_dense(model.decoder_head, W.T, b)
    return model


def expected_elbo(model, x, draws=4000):
    """The ELBO per example, its sampled reconstruction averaged over many draws."""
    x = tf.constant(x)
    draw = model.draw(tf.tile(model.features(x), [draws, 1]))
    log_px = draw.p_x.log_prob(tf.tile(x, [draws, 1])) - draw.kls[0]
    return tf.reduce_mean(tf.reshape(log_px, [draws, -1]), axis=0).numpy()


def test_log_likelihood_matches_the_closed_form_of_a_linear_gaussian_model(rng):
    tf_keras.utils.set_random_seed(0)
    W = np.linalg.qr(rng.normal(size=(6, 2)))[0] * np.array([2.0, 0.7])  # orthogonal columns
    b, sigma = rng.normal(size=6), 0.5
    x = (rng.multivariate_normal(b, W @ W.T + sigma ** 2 * np.eye(6), size=16)).astype(np.float32)
    exact = multivariate_normal(b, W @ W.T + sigma ** 2 * np.eye(6)).logpdf(x)

    # With the exact posterior every importance weight is p(x): any k gives log p(x).
    model = linear_vae(W, b, sigma, exact=True)
    np.testing.assert_allclose(model.log_likelihood(x, num_samples=3), exact, atol=2e-3)
    np.testing.assert_allclose(model.log_weights(x, 50), np.broadcast_to(exact, (50, 16)),
                               atol=2e-3)
    # ... and the ELBO (closed-form KL, sampled reconstruction) equals it in expectation.
    np.testing.assert_allclose(expected_elbo(model, x), exact, atol=0.1)

    # With an approximate posterior the ELBO falls short; 5000 samples close the gap.
    model = linear_vae(W, b, sigma, exact=False)
    assert np.all(expected_elbo(model, x) < exact - 0.1)
    estimate = model.log_likelihood(x, num_samples=5000).numpy()
    np.testing.assert_allclose(estimate, exact, atol=0.03)


def test_log_likelihood_takes_any_number_of_examples_and_shows_its_progress(rng, capsys,
                                                                           monkeypatch):
    """Arrays go through in batches, datasets batch by batch, with a bar on stderr; the exact
    posterior makes every estimate log p(x) itself, so any batching must give the same."""
    W = np.linalg.qr(rng.normal(size=(6, 2)))[0] * np.array([2.0, 0.7])
    b, sigma = rng.normal(size=6), 0.5
    cov = W @ W.T + sigma ** 2 * np.eye(6)
    x = rng.multivariate_normal(b, cov, size=250).astype(np.float32)
    exact = multivariate_normal(b, cov).logpdf(x)
    model = linear_vae(W, b, sigma, exact=True)
    monkeypatch.setattr(tfvae.progress, "MIN_INTERVAL", 0.0)  # a line per tenth, however fast

    estimate = model.log_likelihood(x, num_samples=7, batch_size=100, chunk_size=3)
    assert estimate.shape == (250,)
    np.testing.assert_allclose(estimate, exact, atol=2e-3)
    bar = capsys.readouterr()
    assert bar.out == ""                                  # stdout stays free for results
    assert "log-likelihood (k = 7): 3/3 batches" in bar.err
    dataset = tf.data.Dataset.from_tensor_slices((x, x)).batch(64)
    np.testing.assert_allclose(model.log_likelihood(dataset, num_samples=7, verbose=0), exact,
                               atol=2e-3)
    model.log_likelihood(x[:10], num_samples=7)           # one batch: no bar by default
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="num_samples"):
        model.log_likelihood(x, num_samples=0)
    with pytest.raises(ValueError, match="no examples"):
        model.log_likelihood(dataset.take(0), num_samples=7)


def test_evaluating_several_models_in_turn_warns_of_no_retracing():
    # TensorFlow counts a function's traces across every model in the process: five models'
    # first traces of one method read as retracing, and it warns.
    script = """
import numpy as np, tfvae
x = (np.random.default_rng(0).random((30, 8, 8, 1)) < 0.5).astype(np.float32)
for name in ["vae", "hvae", "ladder_vae", "iaf_vae"] * 2:
    model = tfvae.models.get(name, input_shape=(8, 8, 1),
                             **tfvae.models.get_class(name).example_config)
    model.log_likelihood(x, num_samples=50, batch_size=10, verbose=0)
    model.log_likelihood(x[:7], num_samples=30, verbose=0)
print("evaluated")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["evaluated"]
    assert "retracing" not in result.stderr, result.stderr[-3000:]


def test_hierarchical_log_likelihood_matches_the_closed_form(rng):
    """hvae with scalar layers and linear networks: z_2 ~ N(0, 1), z_1 | z_2 ~ N(A z_2 + a,
    s^2), x | z_1 ~ N(W z_1 + b, sigma^2 I). The chain q(z_1|x) q(z_2|z_1) can be the exact
    posterior (z_2 depends on x only through z_1), so the log-weights all equal log p(x)."""
    A, a, s, sigma = 1.5, 0.4, 0.6, 0.5
    W, b = rng.normal(size=4), rng.normal(size=4)
    model = tfvae.models.get("hvae", input_shape=(4,), latent_dims=(1, 1), hidden_units=(),
                             likelihood="gaussian", likelihood_scale=sigma)
    set_dense(model.prior_nets[0], [[A, 0.0]], [a, std_to_raw(s)])
    set_dense(model.decoder_head, W[None], b)
    v1 = A ** 2 + s ** 2                                   # the marginal variance of z_1
    var1 = 1.0 / (1.0 / v1 + W @ W / sigma ** 2)           # p(z_1 | x)
    set_dense(model.encoder_head, np.stack([var1 * W / sigma ** 2, np.zeros(4)], 1),
              [var1 * (a / v1 - W @ b / sigma ** 2), std_to_raw(np.sqrt(var1))])
    var2 = 1.0 / (1.0 + A ** 2 / s ** 2)                   # p(z_2 | z_1)
    set_dense(model.inference_nets[0], [[var2 * A / s ** 2, 0.0]],
              [-var2 * A * a / s ** 2, std_to_raw(np.sqrt(var2))])
    cov = v1 * np.outer(W, W) + sigma ** 2 * np.eye(4)
    x = rng.multivariate_normal(W * a + b, cov, size=16).astype(np.float32)
    exact = multivariate_normal(W * a + b, cov).logpdf(x)
    weights = model.log_weights(x, 50).numpy()
    np.testing.assert_allclose(weights, np.broadcast_to(exact, weights.shape), atol=2e-3)
    np.testing.assert_allclose(model.log_likelihood(x, num_samples=10), exact, atol=2e-3)


# ---- active units, encode, sample ----------------------------------------------------------------
def test_active_units_count_the_units_whose_posterior_mean_varies(digits, rng):
    model = tfvae.models.get("vae", input_shape=DIGITS, latent_dim=5, hidden_units=())
    kernel = 10 * rng.normal(size=(64, 10))
    kernel[:, :2] = 0.0                        # units 0 and 1: the same mean for every x
    set_dense(model.encoder_head, kernel, np.zeros(10))
    assert model.active_units(digits) == [3]
    dataset = tf.data.Dataset.from_tensor_slices(digits).batch(10)
    assert model.active_units(dataset, threshold=1e9) == [0]
    hvae = tfvae.models.get("hvae", input_shape=DIGITS, latent_dims=(4, 2), hidden_units=(8,))
    assert len(hvae.active_units(dataset)) == 2


def test_hierarchical_serving_outputs(digits):
    model = tfvae.models.get("ladder_vae", input_shape=DIGITS, latent_dims=(4, 3, 2),
                             hidden_units=(8,))
    x = tf.constant(digits[:5])
    out = model.encode_outputs(x, tf.constant([3, 1, 3, 4, 5], tf.int64))
    for l, d in zip((1, 2, 3), (4, 3, 2)):
        assert out[f"mean_{l}"].shape == out[f"stddev_{l}"].shape == out[f"z_{l}"].shape == (5, d)
    # The joint posterior sample is drawn top-down from each row's seed: z_3 from its mean and
    # stddev and the seed's numbers for layer 3 (after z_1's 4 and z_2's 3).
    noise = tfvae.randomness.normal(tf.constant([3, 1, 3, 4, 5], tf.int64), 9).numpy()
    np.testing.assert_allclose(out["z_3"], out["mean_3"] + out["stddev_3"] * noise[:, 7:],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["mean"], out["mean_1"])
    np.testing.assert_allclose(model.code(tf.constant(digits[:5])), out["mean_1"], atol=1e-6)
    seeds = tf.constant([3, 1, 3], tf.int64)
    samples = model.sample_outputs(seeds)
    for key in ("z_1", "z_2", "z_3", "x"):
        np.testing.assert_allclose(samples[key][0], samples[key][2], atol=1e-6)
        assert not np.allclose(samples[key][0], samples[key][1])
    # z_3 is the top's N(0, I) draw; the lower layers follow the prior networks from it.
    prior = model.prior_heads[1](model.prior_nets[1](samples["z_3"]))
    assert np.all(np.abs(samples["z_2"] - prior.mean()) < 6 * prior.stddev())
    card = model.card_info()
    assert "mean_l" in card["signatures"]["encode"] and card["latent_layers"] == [4, 3, 2]
