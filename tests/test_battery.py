"""The shared battery: every model of the zoo passes every test here.

The cases come from the registry: every registered family with its `example_config`, so a new
family is tested the moment it is registered, plus the variants below (other networks,
likelihoods and objectives) and models built with users' own functional conv bodies on 16x16
RGB 8-bit data. Each case gets config round trips, training, evaluation, save/reload and a
TensorFlow-only export check. Models are tiny and trained for a few steps: this checks plumbing
and invariants; the quality of trained models is checked in focused tests and in bench/.
"""
import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfvae
from tfvae import layers

DIGITS = (8, 8, 1)
RGB16 = (16, 16, 3)


def conv_encoder():
    """A user's functional encoder body: x [batch, 16, 16, 3] -> features [batch, 256]."""
    x = tf_keras.Input(RGB16)
    h = tf_keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    h = tf_keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(h)
    return tf_keras.Model(x, tf_keras.layers.Flatten()(h), name="my_encoder")


def conv_decoder(latent_dim):
    """A user's functional decoder body: z -> feature maps [batch, 16, 16, 8]."""
    z = tf_keras.Input((latent_dim,))
    h = tf_keras.layers.Dense(4 * 4 * 16, activation="relu")(z)
    h = tf_keras.layers.Reshape((4, 4, 16))(h)
    h = tf_keras.layers.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu")(h)
    h = tf_keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu")(h)
    return tf_keras.Model(z, h, name="my_decoder")


def own_conv_bodies(latent_dim=4, **kwargs):
    return lambda: dict(latent_dim=latent_dim, encoder=conv_encoder(),
                        decoder=conv_decoder(latent_dim), likelihood="discretized_logistic",
                        **kwargs)


def fixed(**kwargs):
    return lambda: dict(kwargs)


# (registry name, a function giving the constructor's arguments, input shape)
CASES = [(name, fixed(**tfvae.models.get_class(name).example_config), DIGITS)
         for name in tfvae.models.names()]
CASES += [
    ("vae", fixed(latent_dim=3, hidden_units=(8, 16), network="conv"), DIGITS),
    ("vae", fixed(latent_dim=3, hidden_units=(16,), likelihood="gaussian"), DIGITS),
    ("vae", fixed(latent_dim=3, hidden_units=(16,), likelihood="gaussian",
                  likelihood_scale=0.1), DIGITS),
    ("vae", fixed(latent_dim=3, hidden_units=(16,), likelihood="discretized_logistic"), DIGITS),
    ("vae", fixed(latent_dim=3, hidden_units=(16,), iwae_samples=3), DIGITS),
    ("vae", fixed(latent_dim=3, hidden_units=(16,), free_bits=0.5), DIGITS),
    ("vae", fixed(latent_dim=3, hidden_units=(4, 8), network="resnet",
                  likelihood="discretized_logistic"), RGB16),
    # The chains' example configs use their default batch norm; these cases go without it.
    ("hvae", fixed(latent_dims=(3, 2), hidden_units=((16,), (8,)), batch_norm=False), DIGITS),
    ("ladder_vae", fixed(latent_dims=(3, 2), hidden_units=((16,), (8,)), batch_norm=False),
     DIGITS),
    ("ae", fixed(latent_dim=3, hidden_units=(8, 16), network="conv", activation=None,
                 likelihood="gaussian", likelihood_scale=1.0), DIGITS),
    ("vae", own_conv_bodies(), RGB16),
    ("ae", own_conv_bodies(), RGB16),
]
IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in make().items() if k not in ('encoder', 'decoder'))}"
       + ("-own_bodies" if "encoder" in make() else "") + f"-{shape[0]}x{shape[1]}x{shape[2]}"
       for name, make, shape in CASES]


def rgb16_images(n=64):
    """8-bit 16x16 RGB images with structure to learn: the digits, upsampled and tinted."""
    from sklearn.datasets import load_digits

    grey = np.kron(load_digits().images[:n] / 16.0, np.ones((2, 2)))[..., None]
    tint = np.array([1.0, 0.6, 0.3])
    return (np.round(np.clip(0.1 + 0.85 * grey * tint, 0, 1) * 255) / 255).astype(np.float32)


def build(name, make, shape):
    tf_keras.utils.set_random_seed(0)
    return tfvae.models.get(name, input_shape=shape, **make())


# Module-scoped, so that pytest runs a case's tests together and `trained` is built once a case.
@pytest.fixture(scope="module", params=range(len(CASES)), ids=IDS)
def case(request):
    return CASES[request.param]


@pytest.fixture(scope="module")
def data(case, digits):
    return digits if case[2] == DIGITS else rgb16_images()


@pytest.fixture(scope="module")
def trained(case, data):
    """The case's model after one epoch, for the tests that only save, export and call it.
    Without XLA: compiling the step costs seconds a case, and XLA is the subject of
    test_train_step_compiles_under_xla_with_static_shapes alone."""
    model = build(*case)
    model.compile(jit_compile=False)
    model.fit(data, epochs=1, verbose=0)
    return model


def test_every_registered_family_is_in_the_battery():
    assert {name for name, _, _ in CASES} == set(tfvae.models.names())
    for name in tfvae.models.names():
        assert tfvae.models.get_class(name).example_config, f"{name} declares no example_config"


def test_config_round_trip(case):
    model = build(*case)
    config = model.get_config()
    text = json.dumps(config)  # plain values only: nothing pickled, nothing callable
    assert "lambda" not in text and "bytecode" not in text and "function_type" not in text
    clone = type(model).from_config(json.loads(text))
    assert json.loads(json.dumps(clone.get_config())) == json.loads(text)
    for layer in model.submodules:
        if isinstance(layer, tf_keras.layers.Layer):
            assert "make_distribution_fn" not in json.dumps(layer.get_config(), default=str)


def test_terms_are_per_example_and_finite(case, data):
    model = build(*case)
    terms = model.compute_terms(tf.constant(data[:10]), training=True)
    assert "loss" in terms
    assert set(terms) >= {m.name for m in model.metrics}
    for name, value in terms.items():
        assert value.shape == (10,), name
        assert np.all(np.isfinite(value.numpy())), name
    assert model(data[:10]).shape == (10, *case[2])


def test_fit_on_arrays_and_datasets_lowers_the_loss(case, data):
    model = build(*case)
    # Without XLA (compiling the train, test and predict steps took most of this test's time):
    # the XLA test below trains and evaluates every case compiled.
    model.compile(optimizer=tf_keras.optimizers.Adam(3e-3), jit_compile=False)
    before = model.evaluate(data, verbose=0, return_dict=True)
    assert set(before) == {m.name for m in model.metrics}
    model.fit(data, batch_size=16, epochs=15, verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(16)
    history = model.fit(dataset, epochs=5, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = model.evaluate(dataset, verbose=0, return_dict=True)
    assert after["loss"] < before["loss"]
    assert model.predict(data, verbose=0).shape == data.shape


def test_train_step_compiles_under_xla_with_static_shapes(case, data):
    # TPUStrategy runs the step through XLA on fixed batch shapes; no TPU is here, so this
    # checks the part of that a CPU can: every family's step compiles and trains that way.
    model = build(*case)
    model.compile(optimizer=tf_keras.optimizers.Adam(3e-3), jit_compile=True)
    before = [w.numpy().copy() for w in model.trainable_weights]
    # Two steps: a compiled step of the contractive autoencoder's conv Jacobian takes seconds.
    dataset = tf.data.Dataset.from_tensor_slices(data[:32]).batch(16, drop_remainder=True)
    history = model.fit(dataset, epochs=1, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(np.all(np.isfinite(w.numpy())) for w in model.trainable_weights)
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
    metrics = model.evaluate(dataset, verbose=0, return_dict=True)  # the test step compiles too
    assert np.all(np.isfinite(list(metrics.values())))


def test_the_likelihoods_evaluation_kernel_gives_the_log_prob_of_the_copies(trained, data):
    """log_likelihood evaluates p(x|z) on k copies of x under layers.xla_log_probs: a
    Bernoulli in its own XLA kernel, any other likelihood on the tiled copies."""
    model, copies = trained, 3
    x = tf.constant(data[:4])
    z = tf.random.normal([copies * 4, *model.latent_shape], seed=1)

    @tf.function
    def in_evaluation(z, x):
        with layers.xla_log_probs():
            return layers.log_prob_of_copies(model.decode(z), x, copies)

    tiled = model.decode(z).log_prob(tf.tile(x, [copies] + [1] * (x.shape.rank - 1)))
    np.testing.assert_allclose(in_evaluation(z, x), tiled, rtol=1e-5, atol=1e-4)


def test_weights_and_keras_file_reload_to_equal_outputs(trained, data, tmp_path):
    model = trained
    model.save_weights(tmp_path / "w.h5")
    clone = type(model).from_config(model.get_config())
    clone.load_weights(tmp_path / "w.h5")
    np.testing.assert_allclose(clone(data), model(data), rtol=1e-6, atol=1e-6)
    model.save(tmp_path / "model.keras")
    reloaded = tf_keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    assert type(reloaded) is type(model)
    np.testing.assert_allclose(reloaded(data), model(data), rtol=1e-6, atol=1e-6)


def signature_cases(model, data):
    """{"<signature>__<input>": array}: a batch for every signature and alias, draws from
    given seeds (a seed per row of x; k over a pass of 100 draws for one row)."""
    x = data[:4]
    rows = np.array([3, 1, 4, 1], np.int64)
    z = np.random.default_rng(0).normal(size=(4, *model.latent_shape)).astype(np.float32)
    return dict(encode__x=x, encode__seed=rows, decode__z=z,
                sample__seed=np.array([0, 1, 7], np.int64), reconstruct__x=x,
                serving_default__x=x, score__x=x, score__seed=rows, log_likelihood__x=x,
                log_likelihood__seed=rows, log_likelihood__k=np.array([1, 5, 130, 2], np.int64))


def by_signature(cases):
    """{signature: {input: array}} of signature_cases' keys."""
    grouped = {}
    for key, value in cases.items():
        signature, name = key.split("__")
        grouped.setdefault(signature, {})[name] = value
    return grouped


def test_export_runs_with_tensorflow_alone(case, trained, data, tmp_path, tf_only):
    model = trained
    path = tfvae.export(model, tmp_path / "exports" / "m", data="digits", metrics={"loss": 1.0})
    assert path == tmp_path / "exports" / "m" / "1"
    cases = signature_cases(model, data)
    np.savez(tmp_path / "cases.npz", **cases)
    tf_only(path, tmp_path / "cases.npz", tmp_path / "out.npz")
    # Every output, draws included: they come from the seeds, the same in any runtime.
    expected = {signature: getattr(model, tfvae.signatures.get(signature).method)(
        *[tf.constant(inputs[i]) for i in tfvae.signatures.input_names(signature)])
        for signature, inputs in by_signature(cases).items()}
    with np.load(tmp_path / "out.npz") as out:
        for signature, outputs in expected.items():
            for key, value in outputs.items():
                got = out[f"{signature}__{key}"]
                assert got.shape == tuple(value.shape), (signature, key)
                np.testing.assert_allclose(got, value, rtol=1e-5, atol=1e-4,
                                           err_msg=f"{signature}/{key}")
    # The same seeds give the same samples through the tfvae loader too.
    loaded = tfvae.load(tmp_path / "exports" / "m")
    np.testing.assert_allclose(loaded.sample([7, 0])["x"][1], loaded.sample([0])["x"][0], atol=1e-6)
    assert loaded.card["model"] == case[0]
    assert loaded.card["config"] == json.loads(json.dumps(model.get_config()))
    # ... and the export comes back as the same trainable model.
    again = tfvae.models.from_pretrained(path)
    x = data[:4]
    np.testing.assert_allclose(again(x), model(x), rtol=1e-5, atol=1e-5)


def converts_in_the_battery(case):
    """Whether the LiteRT and ONNX check runs on a case: every family, and one case of each
    other likelihood and network (converting costs seconds a case; the other variants only
    change numbers inside layers these cover)."""
    name, make, shape = case
    config = make()
    return (case in CASES[:len(tfvae.models.names())]
            or config.get("likelihood") in ("gaussian", "discretized_logistic")
            and "likelihood_scale" not in config and config.get("network") != "resnet"
            and "encoder" not in config
            or config.get("network") == "resnet"
            or "encoder" in config and name == "vae")


@pytest.mark.parametrize("format", ["litert", "onnx"])
def test_litert_and_onnx_give_the_saved_models_outputs_without_tensorflow(
        case, data, tmp_path, runtimes_only, format, request):
    """Every signature of a LiteRT or ONNX export, run by its runtime in a process that cannot
    import TensorFlow, gives the SavedModel's outputs for the same inputs, draws included.
    Tolerance: float32 rounding of sums in another order, measured at most 2e-6 relative on
    the battery's models; 1e-5 relative (1e-5 absolute near zero) leaves room."""
    if not converts_in_the_battery(case):
        pytest.skip("converted for every family and one case per likelihood and network")
    trained = request.getfixturevalue("trained")
    saved = tfvae.export(trained, tmp_path / "saved_model" / "m")
    converted = tfvae.export(trained, tmp_path / format / "m", format=format)
    assert tfvae.formats.format_of(converted) == format
    cases = signature_cases(trained, data)
    reference = tfvae.load(saved)
    left_out = set(trained.tensorflow_only_signatures)
    cases = {key: value for key, value in cases.items() if key.split("__")[0] not in left_out}
    np.savez(tmp_path / "cases.npz", **cases)
    runtimes_only(converted, tmp_path / "cases.npz", tmp_path / "out.npz")
    with np.load(tmp_path / "out.npz") as out:
        for signature, inputs in by_signature(cases).items():
            expected = reference.run(signature, inputs)
            got = {key.split("__")[1]: out[key] for key in out.files
                   if key.startswith(signature + "__")}
            assert set(got) == set(expected), signature
            for key, value in expected.items():
                np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-5,
                                           err_msg=f"{format} {signature}/{key}")
    loaded = tfvae.load(converted)
    for signature in left_out:  # a family's TensorFlow-only signature: refused, saying why
        with pytest.raises(KeyError, match=trained.tensorflow_only_signatures[signature][:30]):
            loaded.run(signature, by_signature(signature_cases(trained, data))[signature])
    card = loaded.card
    assert card.pop("format") == format and card.pop("signatures_left_out") == \
        trained.tensorflow_only_signatures
    assert card.pop("exported_at") and reference.card.pop("exported_at")
    assert card == reference.card
