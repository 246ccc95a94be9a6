"""bench/linear_probe.py (a logistic regression on a model's codes, beside PCA's codes of the same
size and the raw pixels) and bench/train_zoo.py's early stopping of the autoencoders, on
scikit-learn's digits (seconds); and the shipped autoencoders' cards, which state both."""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import linear_probe  # noqa: E402
import train_zoo  # noqa: E402

AUTOENCODERS = ("ae", "denoising_ae", "sparse_ae", "contractive_ae")


@pytest.fixture(scope="module")
def digits_split():
    """(train images, train labels, test images, test labels): 1500 / 297 digits, 8x8x1."""
    return linear_probe.load_labelled("digits")


@pytest.fixture(scope="module")
def small_ae(digits_split):
    """A small autoencoder trained a few epochs on the digits, with its export."""
    import tf_keras

    import tfvae

    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.get("ae", input_shape=(8, 8, 1), latent_dim=6, hidden_units=(32,))
    model.compile(jit_compile=False)
    model.fit(digits_split[0], batch_size=64, epochs=5, verbose=0)
    return model


def test_the_probe_scores_the_features_against_the_test_labels(digits_split):
    """Features that are the labels give 100%; noise gives about chance: the classifier is
    fitted on the training labels and scored against the test labels, each in its order."""
    train_x, train_y, test_x, test_y = digits_split
    rng = np.random.default_rng(0)
    one_hot = np.eye(10)
    exact = linear_probe.probe(one_hot[train_y], train_y, one_hot[test_y], test_y)
    assert exact["accuracy"] == 1.0 and exact["features"] == 10 and exact["converged"]
    noise = linear_probe.probe(rng.normal(size=(len(train_y), 10)), train_y,
                               rng.normal(size=(len(test_y), 10)), test_y)
    assert noise["accuracy"] < 0.25            # chance is 0.1 (297 test digits)
    # The test labels shuffled: right features, wrong answers.
    shuffled = linear_probe.probe(train_x, train_y, test_x, rng.permutation(test_y))
    assert shuffled["accuracy"] < 0.25


def test_pixels_and_pca_baselines_on_digits(digits_split):
    baselines = linear_probe.Baselines(*digits_split)
    pixels = baselines.pixels()
    assert pixels["features"] == 64 and pixels["converged"]
    assert pixels["accuracy"] > 0.9            # chance is 0.1
    small, large = baselines.pca(2), baselines.pca(16)
    assert (small["features"], large["features"]) == (2, 16)
    # Two components keep part of the classes apart; sixteen nearly all that the pixels do.
    assert 0.3 < small["accuracy"] < large["accuracy"] <= pixels["accuracy"] + 0.02
    assert baselines.pca(16) is large          # computed once
    # Deterministic: a second fit gives the same accuracy.
    again = linear_probe.Baselines(*digits_split).pca(16)
    assert again["accuracy"] == large["accuracy"]


def test_a_models_codes_are_probed_beside_pca_of_their_size(digits_split, small_ae, tmp_path):
    import tfvae

    baselines = linear_probe.Baselines(*digits_split)
    result = baselines.of_model(small_ae)
    assert result["code_dim"] == result["codes"]["features"] == result["pca"]["features"] == 6
    assert result["pixels"]["features"] == 64
    assert result["codes"]["accuracy"] > 0.5
    # The export's `encode` gives the same codes as the model in memory, hence the same probe.
    served = tfvae.load(tfvae.export(small_ae, tmp_path / "ae_digits"))
    x = digits_split[2]
    np.testing.assert_allclose(linear_probe.model_codes(served, x),
                               linear_probe.model_codes(small_ae, x), atol=1e-5)
    assert baselines.of_model(served)["codes"]["accuracy"] == result["codes"]["accuracy"]


def test_the_script_prints_one_json_line_for_an_export(small_ae, tmp_path):
    import tfvae

    path = tfvae.export(small_ae, tmp_path / "ae_digits")
    out = tmp_path / "probe.jsonl"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "linear_probe.py"), "--dataset", "digits",
         "--models", str(path), "--pca", "3", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and out.read_text().strip() == lines[0]
    run = json.loads(lines[0])
    assert run["benchmark"] == "linear_probe" and run["dataset"] == "digits"
    assert (run["train_examples"], run["test_examples"]) == (1500, 297)
    assert "LogisticRegression(solver='lbfgs', C=1.0, max_iter=1000)" in run["classifier"]
    assert run["command"].startswith("python bench/linear_probe.py --models ")
    assert run["pixels"]["features"] == 64 and run["pixels"]["accuracy"] > 0.9
    assert set(run["pca"]) == {"3", "6"}       # asked for, and the model's code size
    (model,) = run["models"].values()
    assert model["model"] == "ae" and model["code_dim"] == 6
    assert model["codes"]["features"] == 6 and 0.5 < model["codes"]["accuracy"] <= 1


def test_early_stopping_stops_on_the_held_out_loss():
    """Trained on 100 digits, an autoencoder overfits within a few dozen epochs: the loss on
    the held-out digits turns up while the training loss still falls, and the run stops
    `patience` epochs after the best held-out epoch, whose weights it restores."""
    import tf_keras

    import tfvae

    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.get("ae", input_shape=(8, 8, 1), latent_dim=16, hidden_units=(128,))
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-2), jit_compile=False)
    train = tfvae.data.load("digits", "train", batch_size=25, take=100, seed=0)
    held_out = tfvae.data.load("digits", "test", batch_size=297)
    max_epochs, patience = 300, 5
    run = train_zoo.fit_early_stopping(model, train, held_out, max_epochs, patience, verbose=0)
    assert run["stopped_early"] and run["epochs_run"] < max_epochs
    assert run["epochs_run"] == run["best_epoch"] + patience
    best = run["best_epoch"] - 1
    assert run["best_validation_loss"] == min(run["validation_loss"])
    assert run["validation_loss"][best] == run["best_validation_loss"]
    assert min(run["validation_loss"][best + 1:]) > run["best_validation_loss"]
    # Stopped on the held-out loss, not the training loss, which was still falling.
    assert run["train_loss"][-1] < run["train_loss"][best]
    # The best epoch's weights are back: the held-out loss is the best one again.
    restored = model.evaluate(held_out, verbose=0, return_dict=True)["loss"]
    assert restored == pytest.approx(run["best_validation_loss"], rel=1e-4)


def test_a_denoising_autoencoder_stops_on_its_held_out_denoising_loss():
    """The denoising run monitors the denoising criterion on held-out digits, each with one
    corruption fixed for the whole run: the series the stopping rule saw is that criterion,
    and the restored weights give its best value again."""
    import tensorflow as tf
    import tf_keras

    import tfvae

    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.get("denoising_ae", input_shape=(8, 8, 1), latent_dim=16,
                             hidden_units=(128,), corruption="masking", noise_level=0.25)
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-2), jit_compile=False)
    train = tfvae.data.load("digits", "train", batch_size=25, take=100, seed=0)
    held_out = tfvae.data.load("digits", "test", batch_size=297)
    images = next(iter(held_out)).numpy()
    monitor = train_zoo.held_out_denoising_loss(model, images, batch_size=100)
    run = train_zoo.fit_early_stopping(model, train, held_out, 300, 5,
                                       monitor="val_denoising_loss", callbacks=[monitor],
                                       verbose=0)
    assert run["stopped_early"] and run["epochs_run"] == run["best_epoch"] + 5
    assert len(run["validation_loss"]) == len(run["val_loss"]) == run["epochs_run"]
    assert run["best_validation_loss"] == min(run["validation_loss"])
    # Not Keras' clean-input validation loss: another series.
    assert all(abs(d - c) > 1e-3 for d, c in zip(run["validation_loss"], run["val_loss"]))
    # The same corrupted inputs every epoch: the criterion is a function of the weights alone.
    logs = {}
    monitor.on_epoch_end(0, logs)
    again = {}
    monitor.on_epoch_end(1, again)
    assert logs["val_denoising_loss"] == again["val_denoising_loss"] == pytest.approx(
        run["best_validation_loss"], rel=1e-5)
    clean = model.evaluate(held_out, verbose=0, return_dict=True)["loss"]
    assert clean == pytest.approx(run["val_loss"][run["best_epoch"] - 1], rel=1e-4)
    assert tf.reduce_all(tf.math.is_finite(model.code(images)))


def _latest_cards():
    saved = REPO / "saved_models"
    if not (saved / "zoo.json").is_file():
        return {}
    manifest = json.loads((saved / "zoo.json").read_text())["models"]
    return {family: (saved / name, json.loads(
                (saved / name / str(max(entry["versions"])) / "assets" / "tfvae_card.json")
                .read_text()))
            for name, entry in manifest.items() for family in [entry["model"]]
            if family in AUTOENCODERS}


@pytest.mark.parametrize("family", AUTOENCODERS)
def test_shipped_autoencoder_cards_state_early_stopping_and_the_probe(family):
    cards = _latest_cards()
    if family not in cards:
        pytest.skip("saved_models/ has not been trained yet (python bench/train_zoo.py)")
    folder, card = cards[family]
    training = card["training"]
    if "early_stopping" not in training:
        pytest.skip(f"{folder.name}'s latest version predates early stopping")
    stopping = training["early_stopping"]
    assert stopping["validation_split"] == train_zoo.AE_VALIDATION_SPLIT
    assert stopping["stopped_early"] and stopping["restore_best_weights"]
    assert training["epochs"] == stopping["epochs_run"] == len(stopping["validation_loss"])
    assert stopping["epochs_run"] == stopping["best_epoch"] + stopping["patience"]
    assert stopping["best_validation_loss"] == min(stopping["validation_loss"])
    probe = card["linear_probe"]
    assert probe["code_dim"] == card["config"]["latent_dim"] == probe["codes"]["features"]
    assert probe["pca"]["features"] == probe["code_dim"] and probe["pixels"]["features"] == 784
    assert all(probe[key]["converged"] for key in ("codes", "pca", "pixels"))
    assert probe["command"] == f"python bench/linear_probe.py --models {folder.name}:" \
                               f"{max(int(p.name) for p in folder.iterdir() if p.name.isdigit())}"
    readme = (folder / "README.md").read_text()
    assert "## Linear probe" in readme and probe["command"] in readme
    assert f"patience {stopping['patience']} epochs" in readme
    assert f"best epoch, {stopping['best_epoch']}" in readme
    for key in ("codes", "pca", "pixels"):
        assert f"{100 * probe[key]['accuracy']:.2f}%" in readme
