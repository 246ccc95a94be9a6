"""Users' own encoder and decoder bodies in every family, the shape checks that guard them, and
the built-in residual conv body. The shared battery (tests/test_battery.py) runs its whole
suite on a VAE and an AE with functional conv bodies; here, every family and every error."""
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfvae
from tfvae import networks

DIGITS = (8, 8, 1)


def dense_encoder(width=16):
    return tf_keras.Sequential([tf_keras.layers.Flatten(),
                                tf_keras.layers.Dense(width, activation="relu")])


def dense_decoder(width=16):
    return tf_keras.Sequential([tf_keras.layers.Dense(width, activation="relu")])


def own_bodies_config(name):
    """The family's example configuration with users' bodies in place of the built-in pair."""
    config = dict(tfvae.models.get_class(name).example_config, encoder=dense_encoder(),
                  decoder=dense_decoder())
    for argument in tfvae.models.get_class(name).body_arguments:
        config.pop(argument, None)
    return config


@pytest.mark.parametrize("name", tfvae.models.names())
def test_every_family_trains_saves_and_reloads_with_own_bodies(name, digits, tmp_path):
    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.get(name, input_shape=DIGITS, **own_bodies_config(name))
    assert isinstance(model.encoder, tf_keras.Sequential)
    # Without XLA, which dense bodies would get: compiling took most of this test's time, and
    # tests/test_battery.py trains every family compiled, with own bodies too.
    model.compile(optimizer=tf_keras.optimizers.Adam(3e-3), jit_compile=False)
    before = model.evaluate(digits, verbose=0, return_dict=True)["loss"]
    model.fit(digits, batch_size=16, epochs=5, verbose=0)
    assert model.evaluate(digits, verbose=0, return_dict=True)["loss"] < before
    # The bodies travel in Keras' own serialization, and come back as what they were.
    config = json.loads(json.dumps(model.get_config()))
    assert config["encoder"]["class_name"] == "Sequential"
    assert "hidden_units" not in config or name in ("hvae", "ladder_vae")
    clone = type(model).from_config(config)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(digits), model(digits), rtol=1e-6, atol=1e-6)
    model.save(tmp_path / "m.keras")
    reloaded = tf_keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded(digits), model(digits), rtol=1e-6, atol=1e-6)


def test_a_decoder_of_the_wrong_shape_is_named_with_both_shapes():
    wrong = tf_keras.Sequential([tf_keras.layers.Dense(4 * 4 * 8),
                                 tf_keras.layers.Reshape((4, 4, 8))])
    with pytest.raises(ValueError) as error:
        tfvae.models.VAE(input_shape=(16, 16, 3), latent_dim=4, encoder=dense_encoder(),
                         decoder=wrong)
    message = str(error.value)
    assert message.startswith("decoder=") and "[batch, 4, 4, 8]" in message
    assert "[batch, 16, 16, K] or [batch, F]" in message


def test_an_encoder_of_the_wrong_shape_is_named_with_both_shapes():
    maps = tf_keras.Sequential([tf_keras.layers.Conv2D(4, 3, padding="same")])
    with pytest.raises(ValueError) as error:
        tfvae.models.AE(input_shape=DIGITS, latent_dim=2, encoder=maps, decoder=dense_decoder())
    message = str(error.value)
    assert message.startswith("encoder=") and "[batch, 8, 8, 4]" in message
    assert "[batch, F]" in message and "Flatten" in message


def test_a_body_that_cannot_take_the_input_says_so():
    expects_other = tf_keras.Sequential([tf_keras.Input((5,)), tf_keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"^encoder= could not be called on x \[batch, 8, 8, 1\]"):
        tfvae.models.VAE(input_shape=DIGITS, latent_dim=2, encoder=expects_other,
                         decoder=dense_decoder())


@pytest.mark.parametrize("argument, value", [("hidden_units", (8,)), ("network", "conv"),
                                             ("activation", "tanh")])
def test_bodies_and_the_arguments_they_replace_do_not_mix(argument, value):
    with pytest.raises(ValueError, match=f"encoder= and decoder= replace.*{argument}"):
        tfvae.models.VAE(input_shape=DIGITS, latent_dim=2, encoder=dense_encoder(),
                         decoder=dense_decoder(), **{argument: value})


def test_one_own_body_next_to_a_built_in_one(digits):
    model = tfvae.models.VAE(input_shape=DIGITS, latent_dim=2, encoder=dense_encoder(),
                             hidden_units=(12,))
    assert model.decoder.layers[0].units == 12
    clone = tfvae.models.VAE.from_config(json.loads(json.dumps(model.get_config())))
    assert clone.get_config()["hidden_units"] == (12,)
    assert model(digits[:2]).shape == (2, *DIGITS)


def test_hierarchies_take_both_bodies_or_neither():
    with pytest.raises(ValueError, match="encoder= and decoder= together"):
        tfvae.models.HierarchicalVAE(input_shape=DIGITS, latent_dims=(3, 2),
                                     encoder=dense_encoder())
    # With both, hidden_units lists the layers above z_1 only.
    with pytest.raises(ValueError, match="above z_1"):
        tfvae.models.LadderVAE(input_shape=DIGITS, latent_dims=(3, 2, 2),
                               hidden_units=((8,), (8,), (8,)), encoder=dense_encoder(),
                               decoder=dense_decoder())


@pytest.mark.parametrize("body", [3, "mlp", [tf_keras.layers.Dense(3)]])
def test_what_is_not_a_tf_keras_layer_is_refused(body):
    with pytest.raises(ValueError, match="^encoder= must be a tf_keras layer or model"):
        tfvae.models.VAE(input_shape=DIGITS, latent_dim=2, encoder=body, decoder=dense_decoder())


def test_a_keras_3_layer_is_refused_naming_tf_keras():
    keras = pytest.importorskip("keras")
    if not keras.__version__.startswith("3"):
        pytest.skip(f"keras {keras.__version__} is not Keras 3")
    with pytest.raises(ValueError, match="decoder= is a Keras 3 Dense.*import tf_keras"):
        tfvae.models.VAE(input_shape=DIGITS, latent_dim=2, encoder=dense_encoder(),
                         decoder=keras.layers.Dense(3))


def test_a_lambda_body_is_never_loaded(digits, tmp_path):
    """Keras would have to unpickle the lambda's bytecode; in safe mode it refuses."""
    lam = tf_keras.Sequential([tf_keras.layers.Flatten(),
                               tf_keras.layers.Lambda(lambda x: 2.0 * x)])
    model = tfvae.models.VAE(input_shape=DIGITS, latent_dim=2, encoder=lam,
                             decoder=dense_decoder())
    model.save(tmp_path / "m.keras")
    with pytest.raises(ValueError, match="(?i)safe"):
        tf_keras.models.load_model(tmp_path / "m.keras", safe_mode=True)


def test_xla_is_chosen_by_what_the_bodies_hold():
    dense = tfvae.models.VAE(input_shape=DIGITS, latent_dim=2, encoder=dense_encoder(),
                             decoder=dense_decoder())
    conv = tfvae.models.VAE(input_shape=DIGITS, latent_dim=2, hidden_units=(4,), network="conv")
    assert dense.xla_pays() and not conv.xla_pays()


@pytest.mark.parametrize("side", [32, 64])
def test_resnet_bodies_for_rgb_images_report_bits_per_dim(side):
    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.VAE(input_shape=(side, side, 3), latent_dim=8, hidden_units=(4, 8, 8),
                             network="resnet", likelihood="discretized_logistic")
    assert any(isinstance(layer, networks.ResidualBlock) for layer in model.encoder.layers)
    assert any(isinstance(layer, networks.ResidualBlock) for layer in model.decoder.layers)
    assert model.decoder.output_shape == (None, side, side, 4)
    x = np.round(np.random.default_rng(0).random((6, side, side, 3)) * 255) / 255
    terms = model.compute_terms(tf.constant(x, tf.float32))
    np.testing.assert_allclose(terms["bits_per_dim"],
                               -terms["elbo"] / (side * side * 3 * np.log(2)), rtol=1e-5)
    model.compile()
    history = model.fit(x.astype(np.float32), batch_size=3, epochs=2, verbose=0)
    assert "bits_per_dim" in history.history and np.all(np.isfinite(history.history["loss"]))


def test_resnet_default_widths_and_size_check():
    model = tfvae.models.VAE(input_shape=(32, 32, 3), latent_dim=4, network="resnet",
                             likelihood="discretized_logistic")
    assert model.hidden_units == networks.DEFAULT_HIDDEN_UNITS["resnet"]
    with pytest.raises(ValueError, match="divide by 8"):
        tfvae.models.VAE(input_shape=(28, 28, 1), network="resnet")


def test_the_readme_own_network_example_runs():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Your own networks", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    images = np.round(np.random.default_rng(0).random((8, 32, 32, 3)) * 255) / 255
    namespace = {"tf_keras": tf_keras, "tfvae": tfvae,
                 "train": tf.data.Dataset.from_tensor_slices(images.astype(np.float32)).batch(4)}
    exec(code.replace("epochs=10", "epochs=1"), namespace)
    model = namespace["model"]
    assert model.decoder_head.projection.kernel.shape == (1, 1, 32, 2 * 3)
    assert np.isfinite(model.history.history["bits_per_dim"][-1])


def test_leaky_rectify_is_lasagnes_slope_and_survives_a_keras_round_trip(tmp_path):
    x = tf.constant([-2.0, -0.5, 0.0, 3.0])
    np.testing.assert_allclose(tfvae.networks.leaky_rectify(x).numpy(), [-0.02, -0.005, 0, 3])
    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.LadderVAE(input_shape=(8, 8, 1), latent_dims=(3, 2), hidden_units=(8,),
                                   activation="leaky_rectify")
    assert model.get_config()["activation"] == "leaky_rectify"
    images = np.random.default_rng(0).random((4, 8, 8, 1)).astype(np.float32)
    model.save(tmp_path / "ladder.keras")
    loaded = tf_keras.models.load_model(tmp_path / "ladder.keras")
    np.testing.assert_allclose(loaded(images).numpy(), model(images).numpy(), rtol=1e-5)
    # The units are the leaky ones: a negative pre-activation passes 1% of itself.
    activations = {layer.activation for layer in model.submodules
                   if isinstance(layer, tf_keras.layers.Activation)}
    assert activations == {tfvae.networks.leaky_rectify}
