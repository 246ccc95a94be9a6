"""The `tfvae` command end to end on the embedded digits: train, export, evaluate, sample."""
import json
import subprocess
import sys

import numpy as np
import pytest

import tfvae
from tfvae import cli


def run_cli(*args, cwd=None):
    result = subprocess.run([sys.executable, "-m", "tfvae.cli", *args], capture_output=True,
                            text=True, timeout=600, cwd=cwd)
    return result


def test_train_export_evaluate_sample_end_to_end(tmp_path):
    trained = run_cli("train", "vae", "--dataset", "digits", "--epochs", "3", "--latent-dim", "4",
                      "--hidden-units", "64,32", "--batch-size", "64",
                      "--export", str(tmp_path / "vae_digits"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = json.loads(trained.stdout.strip().splitlines()[-1])
    assert result["export"] == str(tmp_path / "vae_digits" / "1")
    assert result["test"]["elbo"] < 0 and result["test"]["kl"] >= 0
    assert "Epoch 3/3" in trained.stderr  # Keras' progress goes to stderr, the JSON to stdout

    card = tfvae.load(tmp_path / "vae_digits").card
    assert card["config"]["latent_dim"] == 4 and card["config"]["hidden_units"] == [64, 32]
    assert card["metrics"]["test_elbo"] == pytest.approx(result["test"]["elbo"])

    evaluated = run_cli("evaluate", str(tmp_path / "vae_digits"), "--dataset", "digits")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads(evaluated.stdout)["metrics"]
    assert json.loads(evaluated.stdout)["examples"] == 297
    assert metrics["kl"] == pytest.approx(result["test"]["kl"], rel=1e-3)
    assert metrics["elbo"] == pytest.approx(result["test"]["elbo"], abs=1.0)
    assert 0 < metrics["mse"] < 0.25

    out = tmp_path / "samples.png"
    sampled = run_cli("sample", str(tmp_path / "vae_digits"), "--num", "9", "--out", str(out))
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    from matplotlib.image import imread

    image = imread(out)
    assert image.shape[0] > 100 and image.shape[1] > 100 and np.std(image) > 0.01


def test_models_lists_the_registry(capsys):
    cli.main(["models"])
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == tfvae.models.names()


@pytest.mark.parametrize("command", ["train", "evaluate", "sample", "export", "models", "serving-config"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: tfvae " + command in capsys.readouterr().out


def test_bad_input_gets_one_clear_line():
    result = run_cli("train", "vae", "--dataset", "no_such_data", "--epochs", "1")
    assert result.returncode != 0
    assert "no_such_data" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("sample", "saved_models/does_not_exist")
    assert result.returncode != 0 and "no export" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("train", "vae", "--latent-dim", "0", "--epochs", "1")
    assert result.returncode != 0 and "latent_dim" in result.stderr


def test_export_command_exports_a_saved_keras_model(tmp_path):
    model = tfvae.models.VAE(input_shape=(8, 8, 1), latent_dim=2, hidden_units=(8,))
    model.save(tmp_path / "m.keras")
    cli.main(["export", str(tmp_path / "m.keras"), str(tmp_path / "exports" / "m")])
    served = tfvae.load(tmp_path / "exports" / "m")
    np.testing.assert_allclose(served.decode(np.zeros((1, 2), np.float32))["x"],
                               model.decode(np.zeros((1, 2), np.float32)).mean(), atol=1e-6)


def test_serving_config_command_lists_every_exported_model(tmp_path, capsys):
    model = tfvae.models.VAE(input_shape=(8, 8, 1), latent_dim=2, hidden_units=(8,))
    for name in ("a_model", "b_model"):
        tfvae.export(model, tmp_path / "zoo" / name)
    cli.main(["serving-config", str(tmp_path / "zoo"), "--version-policy", "latest:2",
              "--batching", str(tmp_path / "batching.config")])
    config = capsys.readouterr().out
    assert config.startswith("model_config_list {")
    assert 'base_path: "/models/a_model"' in config and 'name: "b_model"' in config
    assert "max_batch_size { value: 256 }" in (tmp_path / "batching.config").read_text()


def test_kl_warmup_flag_ramps_the_weight_and_is_recorded(tmp_path):
    trained = run_cli("train", "hvae", "--dataset", "digits", "--epochs", "3", "--kl-warmup", "2",
                      "--set", "latent_dims=[3,2]", "--hidden-units", "16", "--batch-size", "64",
                      "--take", "256", "--export", str(tmp_path / "hvae"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    # A two-epoch ramp: the weight is 0 in epoch 1, 1/2 in epoch 2, 1 from epoch 3 on.
    for weight in ("0.0000", "0.5000", "1.0000"):
        assert f"kl_weight: {weight}" in trained.stderr
    card = tfvae.load(tmp_path / "hvae").card
    assert card["training"]["kl_warmup_epochs"] == 2
    # The test loss is the full objective, the negative ELBO (beta 1, no free bits).
    assert card["metrics"]["test_loss"] == pytest.approx(-card["metrics"]["test_elbo"], rel=1e-3)


@pytest.mark.parametrize("model, flags, message", [
    ("ae", ("--epochs", "2", "--kl-warmup", "1"), "--kl-warmup needs a VAE"),
    ("vae", ("--epochs", "2", "--kl-warmup", "2"), "must be fewer than --epochs 2"),
])
def test_kl_warmup_flag_refuses_what_it_cannot_do(model, flags, message):
    refused = run_cli("train", model, "--dataset", "digits", *flags)
    assert refused.returncode != 0 and message in refused.stderr
    assert "Traceback" not in refused.stderr


# --- training on a folder of images -------------------------------------------

def write_image_folder(root, count=24):
    """`count` small RGB PNGs of varying size in two class folders."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for i in range(count):
        image = rng.integers(0, 256, (10 + i % 3, 12, 3), dtype=np.uint8)
        path = root / ("ab"[i % 2]) / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tf.io.encode_png(image).numpy())
    return root


def test_train_and_evaluate_on_an_image_folder(tmp_path, capsys):
    folder = write_image_folder(tmp_path / "my_images")
    flags = ("--data-dir", str(folder), "--image-size", "8", "--color-mode", "rgb",
             "--validation-split", "0.25")
    trained = run_cli("train", "vae", *flags, "--epochs", "1", "--latent-dim", "2",
                      "--hidden-units", "16", "--batch-size", "8",
                      "--export", str(tmp_path / "exports" / "vae_folder"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = json.loads(trained.stdout.strip().splitlines()[-1])
    assert result["dataset"] == "my_images" and "training vae on my_images" in trained.stderr
    assert result["examples"] == {"training": 18, "validation": 6}
    assert result["test"]["elbo"] < 0

    served = tfvae.load(tmp_path / "exports" / "vae_folder")
    card = served.card
    assert card["config"]["input_shape"] == [8, 8, 3]
    assert card["data"] == {"name": "my_images", "source": "image folder", "image_size": [8, 8],
                            "color_mode": "rgb", "binarize": None, "validation_split": 0.25,
                            "examples": {"training": 18, "validation": 6},
                            "test_metrics_on": "validation"}
    assert str(tmp_path) not in json.dumps(card)  # no machine paths in a card

    # `evaluate` scores the same held-out quarter (same --seed), in this process.
    cli.main(["evaluate", str(tmp_path / "exports" / "vae_folder"), *flags])
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["examples"] == 6 and evaluated["dataset"] == "my_images"
    assert evaluated["metrics"]["kl"] == pytest.approx(result["test"]["kl"], rel=1e-3)


@pytest.mark.parametrize("flags, message", [
    (("--image-size", "8"), "--image-size needs --data-dir"),
    (("--dataset", "mnist", "--data-dir", "{folder}", "--image-size", "8"),
     "--dataset mnist and --image-size exclude each other"),
    (("--data-dir", "{folder}"), "pass --image-size"),
    (("--dataset", "digits", "--data-dir", "{folder}"), "pass --image-size"),
    (("--color-mode", "rgb"), "--color-mode applies to a folder of images"),
    (("--data-dir", "{folder}", "--validation-split", "0.1"), "--validation-split applies"),
    (("--data-dir", "{folder}", "--image-size", "8", "--take", "5"), "--take does not apply"),
    (("--data-dir", "{folder}/missing", "--image-size", "8"), "is not a folder"),
])
@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_image_folder_flags_refuse_mixtures(tmp_path, command, flags, message):
    folder = write_image_folder(tmp_path / "imgs", count=2)
    argv = [command, "vae" if command == "train" else str(tmp_path / "no_export"),
            *(flag.format(folder=folder) for flag in flags)]
    with pytest.raises(SystemExit) as refused:
        cli.main(argv)
    assert str(refused.value).startswith("tfvae: ") and message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_image_folder_flag_values_are_checked_by_the_parser(capsys):
    for flags in (("--image-size", "0"), ("--validation-split", "1.5"),
                  ("--color-mode", "cmyk")):
        with pytest.raises(SystemExit) as refused:
            cli.main(["train", "vae", *flags])
        assert refused.value.code == 2 and flags[0] in capsys.readouterr().err
    assert cli.build_parser().parse_args(["train", "vae", "--network", "resnet"]).network == \
        "resnet"


def test_a_tfds_data_folder_is_not_taken_for_an_image_folder(tmp_path):
    # A TFDS data folder: prepared datasets, and downloads whose archives may hold pictures.
    (tmp_path / "mnist" / "3.0.1").mkdir(parents=True)
    (tmp_path / "mnist" / "3.0.1" / "mnist-test.tfrecord-00000-of-00001").write_bytes(b"")
    (tmp_path / "downloads" / "extracted").mkdir(parents=True)
    (tmp_path / "downloads" / "extracted" / "x.png").write_bytes(b"")
    assert not cli._holds_images(str(tmp_path))
    write_image_folder(tmp_path / "pictures", count=2)
    assert cli._holds_images(str(tmp_path / "pictures"))


def test_recorded_commands_carry_no_machine_paths():
    command = cli._portable_command(["train", "vae", "--data-dir", "/srv/data/faces",
                                     "--export=/home/me/saved_models/vae_faces", "--epochs", "3",
                                     "--set", "beta=0.5"])
    assert command == ("tfvae train vae --data-dir faces --export=vae_faces --epochs 3 "
                       "--set beta=0.5")
