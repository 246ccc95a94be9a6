"""The TensorFlow range setup.py declares, and the stack it installed: TensorFlow and tf-keras of
one minor version inside that range (the README says the same range), and a model of the two
families that use the most of TensorFlow Probability trained with `model.fit` on the embedded
digits, exported, loaded back with TensorFlow alone, every signature giving what the model in
memory gives. .ci/run runs this file, with a few other tests (.ci/smoke), in a venv at each end
of the range, naming the TensorFlow it installed there in TFVAE_EXPECT_TENSORFLOW."""
import inspect
import os
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfvae

REPO = Path(__file__).resolve().parents[1]


def _minor(version):
    """(2, 19) of "2.19.1", "2.19" or "2.19.0rc1"."""
    major, minor = re.match(r"(\d+)\.(\d+)", version).groups()
    return int(major), int(minor)


def _declared(name):
    """The (lowest, first excluded) minor versions of `name` in setup.py's install_requires."""
    found = re.search(rf'"{re.escape(name)}>=([\d.]+),<([\d.]+)"', (REPO / "setup.py").read_text())
    assert found, f"setup.py declares no range 'NAME>=A,<B' for {name}"
    return _minor(found.group(1)), _minor(found.group(2))


def test_tensorflow_and_tf_keras_are_one_minor_version_inside_the_declared_range():
    low, high = _declared("tensorflow")
    assert _declared("tf-keras") == (low, high)
    assert low < high and low[0] == high[0] == 2
    assert low <= _minor(tf.__version__) < high, tf.__version__
    # TFP's layers are tf_keras layers: tf-keras must be the one built for this TensorFlow.
    assert _minor(tf_keras.__version__) == _minor(tf.__version__), \
        (tf.__version__, tf_keras.__version__)
    expected = os.environ.get("TFVAE_EXPECT_TENSORFLOW")  # .ci/smoke: the version it installed
    if expected:
        assert _minor(tf.__version__) == _minor(expected), (tf.__version__, expected)
    # The README states the same range, by its oldest and newest minor versions.
    oldest, newest = f"{low[0]}.{low[1]}", f"{high[0]}.{high[1] - 1}"
    readme = " ".join((REPO / "README.md").read_text().split())
    assert f"TensorFlow {oldest} to {newest}" in readme, \
        f"README.md should say 'TensorFlow {oldest} to {newest}' as setup.py does"


FAMILIES = {  # two families of TFP's distributions and bijectors, small enough for a smoke run
    "vae": dict(latent_dim=4, hidden_units=(64, 32)),
    "iaf_vae": dict(latent_dim=4, hidden_units=(64, 32), flow_steps=2, flow_hidden_units=(32,),
                    context_dim=8),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def trained(request):
    """(family, model, history, test images): a model trained for a few epochs on the digits."""
    tf_keras.utils.set_random_seed(0)
    train = tfvae.data.load("digits", "train", batch_size=64)
    test = tfvae.data.load("digits", "test", batch_size=100)
    model = tfvae.models.get(request.param, input_shape=(8, 8, 1), **FAMILIES[request.param])
    model.compile(optimizer=tf_keras.optimizers.Adam(3e-3))
    history = model.fit(train, epochs=10, validation_data=test, verbose=0)
    x = np.concatenate([batch.numpy() for batch in test])
    return request.param, model, history, x


def test_fit_lowers_the_loss_and_every_number_is_finite(trained):
    _, model, history, x = trained
    losses = history.history["loss"]
    assert len(losses) == 10 and np.all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses
    assert np.all(np.isfinite(history.history["val_elbo"]))
    assert history.history["val_elbo"][-1] > history.history["val_elbo"][0]
    assert all(np.all(np.isfinite(v.numpy())) for v in model.weights)
    assert x.shape == (297, 8, 8, 1) and 0 <= x.min() and x.max() <= 1


def test_the_export_gives_what_the_model_in_memory_gives(trained, tmp_path):
    family, model, _, x = trained
    metrics = model.evaluate(x, batch_size=100, verbose=0, return_dict=True)
    path = tfvae.export(model, tmp_path / "model", data="digits", metrics=metrics)
    assert path == tmp_path / "model" / "1"
    served = tfvae.load(tmp_path / "model")
    assert served.card["model"] == family and served.card["config"]["latent_dim"] == 4
    assert served.card["metrics"]["elbo"] == pytest.approx(metrics["elbo"])
    assert {"encode", "decode", "sample", "reconstruct", "score", "serving_default"} \
        <= set(served.signatures)

    batch = x[:16]

    def in_memory(method, images):
        """(outputs, seeded): a model method's outputs for `images`; where it draws from seeds
        (the exports that take a seed per row), from the rows' indices, as the loaded model's
        default seeds are."""
        seeded = "seeds" in inspect.signature(method).parameters
        images = tf.constant(images)
        if seeded:
            return method(images, tf.range(len(images), dtype=tf.int64)), True
        return method(images), False

    def same(served_outputs, memory_outputs, keys=None):
        for key in keys or memory_outputs.keys():
            got, want = served_outputs[key], np.asarray(memory_outputs[key])
            assert got.shape == want.shape, (key, got.shape, want.shape)
            assert np.all(np.isfinite(got)), key
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=key)

    encoded = served.encode(batch)
    assert encoded["mean"].shape == encoded["z"].shape == (16, 4)
    assert np.all(encoded["stddev"] > 0) and np.all(np.isfinite(encoded["z"]))
    outputs, seeded = in_memory(model.encode_outputs, batch)
    same(encoded, outputs, ["mean", "stddev", "z"] if seeded else ["mean", "stddev"])
    decoded = served.decode(encoded["mean"])
    assert decoded["x"].shape == (16, 8, 8, 1)
    same(decoded, model.decode_outputs(tf.constant(encoded["mean"])))
    sampled = served.sample(np.arange(16))
    same(sampled, model.sample_outputs(tf.range(16, dtype=tf.int64)))
    np.testing.assert_array_equal(served.sample(np.arange(16))["x"], sampled["x"])  # per seed
    same(served.reconstruct(batch), model.reconstruct_outputs(tf.constant(batch)))
    # The score of every test image: one posterior draw each, from its seed where the export
    # takes seeds (equal then), else from TensorFlow's random ops (equal on average).
    scores = served.score(x)
    assert all(value.shape == (len(x),) and np.all(np.isfinite(value)) for value in scores.values())
    memory, seeded = in_memory(model.score_outputs, x)
    assert set(scores) == set(memory) >= {"loss", "elbo", "kl"}
    if seeded:
        same(scores, memory, ["loss", "elbo", "kl"])
    else:
        assert abs(np.mean(scores["elbo"]) - np.mean(memory["elbo"].numpy())) < 1.0
