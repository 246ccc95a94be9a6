"""The pretrained zoo in saved_models/: every registered model is there, loads with TensorFlow
alone and runs every signature, has a complete model card, its card's test metric holds again on
a slice of the MNIST test set, and it comes back as a trainable Keras model that equals the
export and fine-tunes. Until bench/train_zoo.py has been run these tests skip."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tfvae

REPO = Path(__file__).resolve().parents[1]
SAVED = REPO / "saved_models"
SHARED_DATA = REPO.parent / "shared" / "data"
ZOO = tuple(tfvae.models.names())
VAES = tuple(n for n in ZOO
             if issubclass(tfvae.models.get_class(n), tfvae.models.VariationalModel))
MAX_EXPORT_BYTES = 5_000_000
SLICE = 1000  # test images the metric is re-checked on


def _export(name):
    folder = SAVED / f"{name}_mnist"
    if not (folder / "1" / "saved_model.pb").is_file():
        pytest.skip(f"saved_models/{name}_mnist/1 is absent: the zoo has not been trained yet "
                    f"(python bench/train_zoo.py)")
    return folder


def _card(name):
    return json.loads((_export(name) / "1" / "assets" / "tfvae_card.json").read_text())


def test_zoo_covers_the_registry():
    sys.path.insert(0, str(REPO / "bench"))
    import train_zoo

    assert set(train_zoo.ZOO) == set(ZOO), "bench/train_zoo.py must train every registered model"
    assert set(VAES) == set(train_zoo.VAES)


@pytest.mark.parametrize("name", ZOO)
def test_card_and_readme(name):
    folder = _export(name)
    card = _card(name)
    assert card["model"] == name and card["input_shape"] == [28, 28, 1]
    assert card["data"]["name"] == "mnist"
    training = card["training"]
    assert training["command"].startswith(f"python bench/train_zoo.py --models {name}")
    assert training["epochs"] >= 1 and training["wall_seconds"] > 0
    metrics = card["metrics"]
    if name in VAES:
        assert metrics["test_elbo"] < 0 and metrics["test_elbo_examples"] == 10_000
        # The importance-sampled estimate is a tighter bound than the ELBO (the same images
        # up to the subset: allow the subset's own spread).
        assert metrics["test_log_likelihood"] > metrics["test_elbo"] - 5
    else:
        assert 0 < metrics["test_mse"] < 0.1 and metrics["test_mse_examples"] == 10_000
        assert card["latent_density"]["kind"] == "gmm"   # sample draws from the fitted codes
    readme = (folder / "README.md").read_text()
    assert training["command"] in readme and f"{training['epochs']} epochs" in readme
    assert (f"{metrics['test_elbo']:.2f}" if name in VAES else f"{metrics['test_mse']:.5f}") in readme
    for text in (readme, json.dumps(card), (SAVED / "README.md").read_text()):
        assert "/work/" not in text and "/home/" not in text, "absolute paths in a card"
    size = sum(f.stat().st_size for f in (folder / "1").rglob("*") if f.is_file())
    assert size < MAX_EXPORT_BYTES, f"{name}: the export is {size / 1e6:.1f} MB"
    for figure in ("samples.png", "reconstructions.png"):
        assert (folder / figure).stat().st_size > 2000


TF_ONLY = r"""
import importlib.abc, json, sys
BLOCKED = ("tfvae", "tensorflow_probability", "tf_keras")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked")
sys.meta_path.insert(0, Block())
import numpy as np
import tensorflow as tf
for name in BLOCKED:
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise SystemExit(f"{name} could be imported")
report = {}
for folder in sys.argv[1:]:
    loaded = tf.saved_model.load(folder + "/1")
    x = np.random.default_rng(0).random((3, 28, 28, 1)).astype("float32")
    z_dim = loaded.signatures["decode"].structured_input_signature[1]["z"].shape[1]
    inputs = {"encode": {"x": x}, "reconstruct": {"x": x}, "serving_default": {"x": x},
              "score": {"x": x}, "decode": {"z": np.zeros((3, z_dim), "float32")},
              "sample": {"seed": np.arange(3, dtype="int64")}}
    out = {}
    for signature, feed in inputs.items():
        result = loaded.signatures[signature](**{k: tf.constant(v) for k, v in feed.items()})
        out[signature] = {k: [list(v.shape), bool(np.all(np.isfinite(v.numpy())))]
                          for k, v in result.items()}
    again = loaded.signatures["sample"](seed=tf.constant(np.arange(3, dtype="int64")))["x"]
    out["sample_repeats"] = bool(np.array_equal(again.numpy(), loaded.signatures["sample"](
        seed=tf.constant(np.arange(3, dtype="int64")))["x"].numpy()))
    report[folder] = out
print(json.dumps(report))
"""


def test_every_export_runs_with_tensorflow_alone():
    folders = [SAVED / f"{name}_mnist" for name in ZOO if (SAVED / f"{name}_mnist" / "1").is_dir()]
    if not folders:
        pytest.skip("saved_models/ has not been trained yet (python bench/train_zoo.py)")
    result = subprocess.run([sys.executable, "-c", TF_ONLY, *map(str, folders)], cwd="/",
                            capture_output=True, text=True, timeout=300,
                            env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for folder in folders:
        out = report[str(folder)]
        for signature in ("encode", "decode", "sample", "reconstruct", "serving_default", "score"):
            assert out[signature], (folder.name, signature)
            for key, (shape, finite) in out[signature].items():
                assert shape[0] == 3 and finite, (folder.name, signature, key)
        assert out["reconstruct"]["x"][0] == [3, 28, 28, 1]
        assert out["sample"]["x"][0] == [3, 28, 28, 1]
        assert out["sample_repeats"], f"{folder.name}: sample is not deterministic per seed"


def test_shipped_name_resolves_from_anywhere(tmp_path, monkeypatch):
    _export("vae")
    monkeypatch.chdir(tmp_path)  # not relative to the working directory
    served = tfvae.load("vae_mnist")
    assert served.path == SAVED / "vae_mnist" / "1"
    assert served.card["model"] == "vae"
    assert served.sample(2)["x"].shape == (2, 28, 28, 1)


@pytest.fixture(scope="module")
def test_slices():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs MNIST from ../shared/data (not found at {SHARED_DATA})")
    from tfvae import data

    def first(binarize):
        batches = data.load("mnist", "test", batch_size=500, take=SLICE, binarize=binarize,
                            seed=0, data_dir=SHARED_DATA / "tensorflow_datasets", download=False)
        return np.concatenate([b.numpy() for b in batches])

    # As bench/train_zoo.py tested: VAEs on the fixed binarization (seed 0), AEs on grey levels.
    return {"binary": first("static"), "grey": first(None)}


@pytest.mark.parametrize("name", ZOO)
def test_card_metric_holds_on_a_test_slice(name, test_slices):
    """The card's metric is the mean over the 10,000 test images; the mean over the first
    SLICE of them differs by sampling alone, with standard error std * sqrt(1/SLICE - 1/10000)
    (a subset of the same finite set; std from the card). Four standard errors: ~3 nats for
    the ELBO (std ~27 nats), ~6% for the MSE. The ELBO's one posterior sample per image is
    part of that std."""
    card = _card(name)
    metrics = card["metrics"]
    served = tfvae.load(_export(name))
    spread = np.sqrt(1 / SLICE - 1 / 10_000)
    if name in VAES:
        x = test_slices["binary"]
        value = np.mean(np.concatenate([served.run("score", x[i:i + 250])["elbo"]
                                        for i in range(0, len(x), 250)]))
        tolerance = 4 * metrics["test_elbo_std"] * spread
        assert abs(value - metrics["test_elbo"]) < tolerance, (value, metrics["test_elbo"], tolerance)
    else:
        x = test_slices["grey"]
        rebuilt = np.concatenate([served.reconstruct(x[i:i + 250])["x"] for i in range(0, len(x), 250)])
        value = np.mean((rebuilt - x) ** 2)
        tolerance = 4 * metrics["test_mse_std"] * spread
        assert abs(value - metrics["test_mse"]) < tolerance, (value, metrics["test_mse"], tolerance)


@pytest.mark.parametrize("name", ZOO)
def test_from_pretrained_equals_the_export_and_fine_tunes(name, tmp_path):
    import tf_keras

    served = tfvae.load(_export(name))
    model = tfvae.models.from_pretrained(f"{name}_mnist")
    assert type(model) is tfvae.models.get_class(name)
    if SHARED_DATA.is_dir():
        x = next(iter(tfvae.data.load("mnist", "test", batch_size=256, binarize="static",
                                      data_dir=SHARED_DATA / "tensorflow_datasets",
                                      download=False))).numpy()
    else:  # the equality needs no real images; the fine-tuning is on these ones either way
        x = (np.random.default_rng(0).random((256, 28, 28, 1)) < 0.2).astype(np.float32)
    np.testing.assert_allclose(model(x[:64]).numpy(), served.reconstruct(x[:64])["x"], atol=1e-4)
    np.testing.assert_allclose(model.sample_outputs(np.arange(4))["x"].numpy(),
                               served.sample(np.arange(4))["x"], atol=1e-4)
    # Fine-tuning: a few steps on these images lower the loss on them.
    tf_keras.utils.set_random_seed(0)
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-3))
    before = model.evaluate(x, batch_size=256, verbose=0, return_dict=True)["loss"]
    model.fit(x, batch_size=64, epochs=4, verbose=0)
    after = model.evaluate(x, batch_size=256, verbose=0, return_dict=True)["loss"]
    assert after < before, (before, after)
    # ... and the result exports again, as a new version beside nothing of the zoo's.
    path = tfvae.export(model, tmp_path / name)
    assert tfvae.load(path).reconstruct(x[:2])["x"].shape == (2, 28, 28, 1)
