"""The shared battery: every model of the zoo passes every test here.

A new family adds its cases to CASES (registry name, constructor arguments) and gets config round
trips, training, evaluation, save/reload and a TensorFlow-only export check for free. Models
are tiny and trained for a few steps on 8x8 digits: this checks plumbing and invariants; the
quality of trained models is checked in focused tests and in bench/.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfvae

DIGITS = (8, 8, 1)
CASES = [
    ("vae", dict(latent_dim=3, hidden_units=(32, 16))),
    ("vae", dict(latent_dim=3, hidden_units=(8, 16), network="conv")),
    ("vae", dict(latent_dim=3, hidden_units=(16,), likelihood="gaussian")),
    ("vae", dict(latent_dim=3, hidden_units=(16,), likelihood="gaussian", likelihood_scale=0.1)),
    ("vae", dict(latent_dim=3, hidden_units=(16,), likelihood="discretized_logistic")),
    ("vae", dict(latent_dim=3, hidden_units=(16,), iwae_samples=3)),
    ("vae", dict(latent_dim=3, hidden_units=(16,), free_bits=0.5)),
    ("hvae", dict(latent_dims=(3, 2), hidden_units=(16,))),
    ("hvae", dict(latent_dims=(3, 2), hidden_units=((16,), (8,)), batch_norm=True)),
    ("ladder_vae", dict(latent_dims=(3, 2), hidden_units=(16,))),
    ("ladder_vae", dict(latent_dims=(3, 2), hidden_units=((16,), (8,)), batch_norm=True)),
    ("iaf_vae", dict(latent_dim=3, hidden_units=(16,), flow_steps=2, flow_hidden_units=(8,),
                     context_dim=4)),
    ("ae", dict(latent_dim=3, hidden_units=(32, 16))),
    ("ae", dict(latent_dim=3, hidden_units=(8, 16), network="conv", activation=None,
                likelihood="gaussian", likelihood_scale=1.0)),
    ("denoising_ae", dict(latent_dim=3, hidden_units=(16,), corruption="gaussian",
                          noise_level=0.2)),
    ("sparse_ae", dict(latent_dim=3, hidden_units=(16,), l1_weight=0.1, rho=0.1)),
    ("contractive_ae", dict(latent_dim=3, hidden_units=(8, 16), network="conv")),
]
IDS = [f"{name}-" + "-".join(f"{k}={v}" for k, v in kwargs.items()) for name, kwargs in CASES]


def build(name, kwargs):
    tf_keras.utils.set_random_seed(0)
    return tfvae.models.get(name, input_shape=DIGITS, **kwargs)


@pytest.fixture(params=range(len(CASES)), ids=IDS)
def case(request):
    return CASES[request.param]


def test_config_round_trip(case):
    model = build(*case)
    config = model.get_config()
    text = json.dumps(config)  # plain values only: nothing pickled, nothing callable
    assert "lambda" not in text and "function" not in text
    clone = type(model).from_config(json.loads(text))
    assert json.loads(json.dumps(clone.get_config())) == json.loads(text)
    for layer in model.submodules:
        if isinstance(layer, tf_keras.layers.Layer):
            assert "make_distribution_fn" not in json.dumps(layer.get_config(), default=str)


def test_terms_are_per_example_and_finite(case, digits):
    model = build(*case)
    terms = model.compute_terms(tf.constant(digits[:10]), training=True)
    assert "loss" in terms
    assert set(terms) >= {m.name for m in model.metrics}
    for name, value in terms.items():
        assert value.shape == (10,), name
        assert np.all(np.isfinite(value.numpy())), name
    assert model(digits[:10]).shape == (10, *DIGITS)


def test_fit_on_arrays_and_datasets_lowers_the_loss(case, digits):
    model = build(*case)
    model.compile(optimizer=tf_keras.optimizers.Adam(3e-3))
    before = model.evaluate(digits, verbose=0, return_dict=True)
    assert set(before) == {m.name for m in model.metrics}
    model.fit(digits, batch_size=16, epochs=15, verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices(digits).batch(16)
    history = model.fit(dataset, epochs=5, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = model.evaluate(dataset, verbose=0, return_dict=True)
    assert after["loss"] < before["loss"]
    assert model.predict(digits, verbose=0).shape == digits.shape


def test_train_step_compiles_under_xla_with_static_shapes(case, digits):
    # TPUStrategy runs the step through XLA on fixed batch shapes; no TPU is here, so this
    # checks the part of that a CPU can: every family's step compiles and trains that way.
    model = build(*case)
    model.compile(optimizer=tf_keras.optimizers.Adam(3e-3), jit_compile=True)
    before = [w.numpy().copy() for w in model.trainable_weights]
    dataset = tf.data.Dataset.from_tensor_slices(digits).batch(16, drop_remainder=True)
    history = model.fit(dataset, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(np.all(np.isfinite(w.numpy())) for w in model.trainable_weights)
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))


def test_weights_and_keras_file_reload_to_equal_outputs(case, digits, tmp_path):
    model = build(*case)
    model.compile()
    model.fit(digits, epochs=1, verbose=0)
    model.save_weights(tmp_path / "w.h5")
    clone = type(model).from_config(model.get_config())
    clone.load_weights(tmp_path / "w.h5")
    np.testing.assert_allclose(clone(digits), model(digits), rtol=1e-6, atol=1e-6)
    model.save(tmp_path / "model.keras")
    reloaded = tf_keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    assert type(reloaded) is type(model)
    np.testing.assert_allclose(reloaded(digits), model(digits), rtol=1e-6, atol=1e-6)


def test_export_runs_with_tensorflow_alone(case, digits, tmp_path):
    model = build(*case)
    model.compile()
    model.fit(digits, epochs=1, verbose=0)
    path = tfvae.export(model, tmp_path / "exports" / "m", data="digits", metrics={"loss": 1.0})
    assert path == tmp_path / "exports" / "m" / "1"
    seeds = np.array([0, 1, 7], np.int64)
    z = np.random.default_rng(0).normal(size=(4, *model.latent_shape)).astype(np.float32)
    np.savez(tmp_path / "cases.npz", encode__x=digits[:4], decode__z=z, sample__seed=seeds,
             reconstruct__x=digits[:4], serving_default__x=digits[:4], score__x=digits[:4])
    result = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "tf_only.py"), str(path),
         str(tmp_path / "cases.npz"), str(tmp_path / "out.npz")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = {
        "encode": model.encode_outputs(tf.constant(digits[:4])),
        "decode": model.decode_outputs(tf.constant(z)),
        "sample": model.sample_outputs(tf.constant(seeds)),
        "reconstruct": model.reconstruct_outputs(tf.constant(digits[:4])),
        "serving_default": model.reconstruct_outputs(tf.constant(digits[:4])),
        "score": model.score_outputs(tf.constant(digits[:4])),
    }
    with np.load(tmp_path / "out.npz") as out:
        for signature, outputs in expected.items():
            for key, value in outputs.items():
                got = out[f"{signature}__{key}"]
                assert got.shape[0] == value.shape[0], (signature, key)
                assert got.shape == tuple(value.shape), (signature, key)
                if (key.startswith("z") and signature == "encode") or signature == "score":
                    # A posterior sample, or terms estimated from one: random by design.
                    assert np.all(np.isfinite(got)), (signature, key)
                else:
                    np.testing.assert_allclose(got, value, rtol=1e-5, atol=1e-5,
                                               err_msg=f"{signature}/{key}")
    # The same seeds give the same samples through the tfvae loader too.
    loaded = tfvae.load(tmp_path / "exports" / "m")
    np.testing.assert_allclose(loaded.sample([7, 0])["x"][1], loaded.sample([0])["x"][0], atol=1e-6)
    assert loaded.card["model"] == case[0]
    assert loaded.card["config"] == json.loads(json.dumps(model.get_config()))
