"""The pretrained zoo in saved_models/: the manifest (zoo.json) lists a model of every registered
family, each loads with TensorFlow alone and runs every signature, has a complete model card that
agrees with its manifest entry, its card's test metric holds again on a slice of the MNIST test
set, and it comes back as a trainable Keras model that equals the export and fine-tunes. Only the
manifest's names are the zoo: a user's export beside them (the README's first command used to
write one there) is never taken for a shipped model. Until bench/train_zoo.py has been run these
tests skip."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
import pytest

import tfvae
from tfvae import loading
from tfvae.exporting import versions

REPO = Path(__file__).resolve().parents[1]
SAVED = REPO / "saved_models"
sys.path.insert(0, str(REPO / "bench"))   # train_zoo, burda: how the cards were made
SHARED_DATA = REPO.parent / "shared" / "data"
FAMILIES = tuple(tfvae.models.names())
VARIATIONAL = tuple(n for n in FAMILIES
                    if issubclass(tfvae.models.get_class(n), tfvae.models.VariationalModel))
# The shipped models, by the manifest of the repository's saved_models/ (not of a folder
# TFVAE_SAVED_MODELS may name): name -> entry. Empty until bench/train_zoo.py has written it.
MANIFEST = loading.manifest(SAVED) if (SAVED / loading.MANIFEST).is_file() else {}
ZOO = tuple(loading.shipped_models(SAVED)) if MANIFEST else ()
VAES = tuple(n for n in ZOO if MANIFEST[n]["model"] in VARIATIONAL)
# The largest export, the Ladder VAE at Sønderby et al.'s size, holds 1.9M float32 weights
# (7.5 MB) and a 2.2 MB graph: the bound keeps a stray file or duplicated weights out.
MAX_EXPORT_BYTES = 12_000_000
SLICE = 1000  # test images the metric is re-checked on


def _version(name):
    """The folder of the latest version the manifest ships of `name`."""
    folder = SAVED / name / str(max(MANIFEST[name]["versions"]))
    if not (folder / "saved_model.pb").is_file():
        pytest.skip(f"saved_models/{name}/{folder.name} is absent: the zoo has not been trained "
                    f"yet (python bench/train_zoo.py)")
    return folder


def _export(name):
    return _version(name).parent


def _card(name):
    return json.loads((_version(name) / "assets" / "tfvae_card.json").read_text())


def test_zoo_covers_the_registry():
    import train_zoo

    assert set(train_zoo.ZOO) == set(FAMILIES), \
        "bench/train_zoo.py must train every registered model"
    assert set(VARIATIONAL) == set(train_zoo.VAES)
    trained = sorted(p.parent.parent.name for p in SAVED.glob("*/*/saved_model.pb"))
    if not MANIFEST:
        assert not trained, f"saved_models/ holds exports ({trained}) but no {loading.MANIFEST}"
        pytest.skip("saved_models/ has not been trained yet (python bench/train_zoo.py)")
    assert {entry["model"] for entry in MANIFEST.values()} == set(FAMILIES), \
        "the manifest must ship a model of every registered family"


@pytest.mark.parametrize("name", ZOO)
def test_card_and_readme(name):
    folder = _export(name)
    card = _card(name)
    entry = MANIFEST[name]
    family = entry["model"]
    assert card["model"] == family and card["class"] == entry["class"]
    assert card["input_shape"] == entry["input_shape"] == [28, 28, 1]
    assert card["data"]["name"] == entry["dataset"] == "mnist"
    assert set(entry["versions"]) <= set(versions(folder))
    training = card["training"]
    metrics = card["metrics"]
    if training["command"].startswith("python bench/burda.py"):
        # A paper's model on the paper's budget: scored on all 10,000 test images at
        # k = 5000, within 1 nat of the paper's NLL (Burda et al.'s Table 1, Sønderby et al.),
        # or, with a posterior compared image by image against a shipped model (the IAF
        # posterior against vae_mnist), at least 1 nat better than it.
        import burda

        protocol = burda.PROTOCOLS[family]
        assert training["command"].startswith(f"python bench/burda.py --model {family} ")
        assert metrics["test_log_likelihood_k"] == 5000
        assert metrics["test_log_likelihood_examples"] == 10_000
        nll = -metrics["test_log_likelihood"]
        if protocol.compare_with:
            paired = metrics["paired_with"]
            assert paired["against"] == protocol.compare_with
            assert paired["test_examples"] == 10_000 and paired["k"] == 5000
            assert nll <= paired["reference_nll"] - 1 and paired["gap"] < paired["reference_gap"]
        else:
            assert nll - metrics["published_test_nll"] < 1
        assert training["schedule_epochs"] == protocol.epochs
        assert training["epochs"] <= protocol.total_epochs   # with any fine-tuning phase
        assert sum(s["epochs"] for s in training["segments"]) == training["epochs"]
    else:
        assert training["command"].startswith(f"python bench/train_zoo.py --models {family}")
    assert training["epochs"] >= 1 and training["wall_seconds"] > 0
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
    for text in (readme, json.dumps(card), (SAVED / "README.md").read_text(),
                 (SAVED / loading.MANIFEST).read_text()):
        assert "/work/" not in text and "/home/" not in text, "absolute paths in a card"
    size = sum(f.stat().st_size for f in _version(name).rglob("*") if f.is_file())
    assert size < MAX_EXPORT_BYTES, f"{name}: the export is {size / 1e6:.1f} MB"
    for figure in ("samples.png", "reconstructions.png"):
        assert (folder / figure).stat().st_size > 2000


def test_every_export_runs_with_tensorflow_alone(tf_only, tmp_path):
    folders = [SAVED / name / str(max(MANIFEST[name]["versions"])) for name in ZOO]
    folders = [folder for folder in folders if folder.is_dir()]
    if not folders:
        pytest.skip("saved_models/ has not been trained yet (python bench/train_zoo.py)")
    x = np.random.default_rng(0).random((3, 28, 28, 1)).astype("float32")
    for folder in folders:
        name = folder.parent.name
        latent = json.loads((folder / "assets" / "tfvae_card.json").read_text())["latent_shape"]
        seeds = np.arange(3, dtype="int64")
        cases = {"encode__x": x, "encode__seed": seeds, "reconstruct__x": x,
                 "serving_default__x": x, "score__x": x, "score__seed": seeds,
                 "log_likelihood__x": x, "log_likelihood__seed": seeds,
                 "log_likelihood__k": np.full(3, 10, "int64"),
                 "decode__z": np.zeros((3, *latent), "float32"), "sample__seed": seeds}
        np.savez(tmp_path / "cases.npz", **cases)
        tf_only(folder, tmp_path / "cases.npz", tmp_path / "out.npz")
        out = np.load(tmp_path / "out.npz")
        for signature in ("encode", "decode", "sample", "reconstruct", "serving_default", "score",
                          "log_likelihood"):
            keys = [key for key in out.files if key.startswith(signature + "__")]
            assert keys, (name, signature)
            for key in keys:
                assert out[key].shape[0] == 3 and np.all(np.isfinite(out[key])), (name, key)
        assert out["reconstruct__x"].shape == out["sample__x"].shape == (3, 28, 28, 1)
        # Deterministic per seed: this process draws the same images from the same seeds.
        assert np.array_equal(out["sample__x"], tfvae.load(folder).sample(3)["x"]), \
            f"{name}: sample is not deterministic per seed"


def test_shipped_name_resolves_from_anywhere(tmp_path, monkeypatch):
    if "vae_mnist" not in MANIFEST:
        pytest.skip("saved_models/ has not been trained yet (python bench/train_zoo.py)")
    _export("vae_mnist")
    monkeypatch.delenv(loading.ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)  # not relative to the working directory
    assert loading.shipped_models() == list(ZOO)
    served = tfvae.load("vae_mnist")
    assert served.path == SAVED / "vae_mnist" / str(max(MANIFEST["vae_mnist"]["versions"]))
    assert served.card["model"] == "vae"
    assert served.sample(2)["x"].shape == (2, 28, 28, 1)


def test_a_users_export_in_saved_models_is_not_a_shipped_model(clone, monkeypatch):
    """The issue: after the README's first command had exported vae_digits into saved_models/,
    the pretrained notebook loaded it as a shipped MNIST model and `tfvae sample
    saved_models/nope` listed it among them."""
    from tfvae import cli

    monkeypatch.setenv(loading.ENVIRONMENT_VARIABLE, str(clone))
    monkeypatch.chdir(clone.parent)
    assert (clone / "vae_digits" / "1" / "saved_model.pb").is_file()
    assert loading.shipped_models() == list(ZOO) and "vae_digits" not in ZOO
    # Every shipped name is an MNIST model: what the pretrained notebook's loop loads.
    zoo = {name: tfvae.load(name) for name in loading.shipped_models()}
    assert {name: list(served.input_spec("reconstruct").shape[1:]) for name, served in zoo.items()} \
        == {name: MANIFEST[name]["input_shape"] for name in ZOO}
    assert zoo["vae_mnist"].path == clone / "vae_mnist" / str(max(MANIFEST["vae_mnist"]["versions"]))
    assert zoo["vae_mnist"].sample(2)["x"].shape == (2, 28, 28, 1)
    # The listing in the errors: the manifest's names, not the user's export.
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sample", "saved_models/nope"])
    assert str(exit_info.value).split("shipped models: ")[1].split(", ") == list(ZOO)
    with pytest.raises(loading.ExportNotFoundError, match="not one of them") as error:
        tfvae.load("vae_digits")
    assert "saved_models/vae_digits" in str(error.value)  # where it is, to load it by its path
    with pytest.raises(loading.ExportNotFoundError):
        tfvae.models.from_pretrained("vae_digits")
    # By its path the user's export loads as before, and so does a shipped model's folder.
    assert tfvae.load("saved_models/vae_digits").sample(2)["x"].shape == (2, 8, 8, 1)
    assert tfvae.load("saved_models/vae_mnist").card["model"] == "vae"


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
    served = tfvae.load(_version(name))
    spread = np.sqrt(1 / SLICE - 1 / 10_000)
    if name in VAES:
        x = test_slices["binary"]
        value = np.mean(np.concatenate([
            served.score(x[i:i + 250], seed=np.arange(i, i + len(x[i:i + 250])))["elbo"]
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
def test_from_pretrained_equals_the_export_and_fine_tunes(name):
    import tf_keras

    served = tfvae.load(_version(name))
    model = tfvae.models.from_pretrained(name)
    assert type(model) is tfvae.models.get_class(MANIFEST[name]["model"])
    if SHARED_DATA.is_dir():
        x = next(iter(tfvae.data.load("mnist", "test", batch_size=256, binarize="static",
                                      data_dir=SHARED_DATA / "tensorflow_datasets",
                                      download=False))).numpy()
    else:  # the equality needs no real images; the fine-tuning is on these ones either way
        x = (np.random.default_rng(0).random((256, 28, 28, 1)) < 0.2).astype(np.float32)
    np.testing.assert_allclose(model(x[:64]).numpy(), served.reconstruct(x[:64])["x"], atol=1e-4)
    np.testing.assert_allclose(model.sample_outputs(np.arange(4))["x"].numpy(),
                               served.sample(np.arange(4))["x"], atol=1e-4)
    # Fine-tuning as the README does it: a few steps at Adam 1e-4 lower the loss on these images.
    # (Adam's first steps move every weight by about the learning rate: at 1e-3, 8 steps leave
    # a trained autoencoder worse than it started.) Without XLA, which the README's compile()
    # would choose for most: compiling these MNIST-sized steps took most of this test's time,
    # and tests/test_battery.py trains every family compiled.
    tf_keras.utils.set_random_seed(0)
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-4), jit_compile=False)

    def loss():
        if not isinstance(model, tfvae.models.DenoisingAE):
            return model.evaluate(x, batch_size=256, verbose=0, return_dict=True)["loss"]
        # A denoising model trains on corrupted inputs, and its first steps may raise the loss
        # of clean ones: the loss it trains on, with the same corruption before and after.
        tf.random.set_seed(0)
        return float(np.mean(model.compute_terms(tf.constant(x), training=True)["loss"]))

    before = loss()
    model.fit(x, batch_size=64, epochs=2, verbose=0)
    after = loss()
    assert after < before, (before, after)
