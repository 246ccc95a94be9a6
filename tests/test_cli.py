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


@pytest.mark.parametrize("command", ["train", "evaluate", "sample", "export", "convert", "models",
                                     "serving-config"])
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
    assert card["data"] == {"name": "my_images", "source": "image folder",
                            "examples": {"training": 18, "validation": 6},
                            "test_metrics_on": "validation"}
    assert card["test_protocol"] == {"dataset": "my_images", "split": "test", "binarize": None,
                                     "seed": 0, "take": None, "k": None, "image_size": 8,
                                     "color_mode": "rgb", "validation_split": 0.25}
    assert str(tmp_path) not in json.dumps(card)  # no machine paths in a card

    # `evaluate` scores the same held-out quarter (same --seed), in this process.
    cli.main(["evaluate", str(tmp_path / "exports" / "vae_folder"), *flags])
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["examples"] == 6 and evaluated["dataset"] == "my_images"
    assert evaluated["metrics"]["kl"] == pytest.approx(result["test"]["kl"], rel=1e-3)
    # Given only the folder, it takes the image size, colour mode and split from the card.
    cli.main(["evaluate", str(tmp_path / "exports" / "vae_folder"), "--data-dir", str(folder)])
    from_card = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert from_card["from_card"] and from_card["examples"] == 6
    assert from_card["protocol"] == {"dataset": "my_images", "split": "test", "binarize": None,
                                     "seed": 0, "image_size": 8, "color_mode": "rgb",
                                     "validation_split": 0.25}
    assert from_card["metrics"]["kl"] == pytest.approx(evaluated["metrics"]["kl"], abs=1e-4)
    with pytest.raises(SystemExit, match="pass --data-dir FOLDER"):
        cli.main(["evaluate", str(tmp_path / "exports" / "vae_folder")])


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


# --- quiet TensorFlow logs ----------------------------------------------------

def _clean_environment():
    """This environment without TF_CPP_MIN_LOG_LEVEL (conftest sets it for the tests)."""
    import os

    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def _tensorflow_lines(stderr):
    from tfvae import logs

    return [line for line in stderr.splitlines() if logs.is_tensorflow_log(line)
            or any(word in line for word in ("cuInit", "I0000", "absl", "cudart_stub",
                                             "cpu_feature_guard"))]


def test_commands_print_no_tensorflow_logs_by_default(tmp_path):
    # `models` imports TensorFlow (its start-up lines: absl's banner, cudart_stub); `sample`
    # also runs ops, where a machine with CUDA libraries but no GPU logs "failed call to
    # cuInit" (this one does, at TF_CPP_MIN_LOG_LEVEL below 3).
    model = tfvae.models.VAE(input_shape=(8, 8, 1), latent_dim=2, hidden_units=(8,))
    tfvae.export(model, tmp_path / "vae")
    for argv in (["models"], ["sample", str(tmp_path / "vae"), "--num", "4",
                              "--out", str(tmp_path / "s.png")]):
        result = subprocess.run([sys.executable, "-m", "tfvae.cli", *argv], capture_output=True,
                                text=True, timeout=600, env=_clean_environment())
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip()
        assert _tensorflow_lines(result.stderr) == [], result.stderr[-3000:]


def test_importing_tfvae_selects_keras_2_and_nothing_more():
    # A notebook's process: no import hook, no redirected file descriptor, no log level set;
    # TensorFlow imported after tfvae uses tf_keras as tf.keras.
    script = ("import os, sys; hooks = list(sys.meta_path); import tfvae\n"
              "assert sys.meta_path == hooks, sys.meta_path\n"
              "assert 'TF_CPP_MIN_LOG_LEVEL' not in os.environ\n"
              "assert os.environ['TF_USE_LEGACY_KERAS'] == '1'\n"
              "import tensorflow as tf\n"
              "print(tf.keras.optimizers.Adam.__module__.split('.')[0])")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=600, env={k: v for k, v in _clean_environment().items()
                                              if k != "TF_USE_LEGACY_KERAS"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["tf_keras"]


def test_verbose_flag_leaves_tensorflow_logs_alone():
    # In a fresh process: --verbose neither sets TF_CPP_MIN_LOG_LEVEL nor filters the import;
    # without it the level is 3; a level the user set is kept either way.
    script = ("import os, sys; from tfvae import cli\n"
              "for argv in sys.argv[1:]:\n"
              "    cli.main(argv.split()); print('LEVEL', os.environ.get('TF_CPP_MIN_LOG_LEVEL'))")
    for env, levels in (({}, ["None", "3"]), ({"TF_CPP_MIN_LOG_LEVEL": "1"}, ["1", "1"])):
        result = subprocess.run([sys.executable, "-c", script, "--verbose models", "models"],
                                capture_output=True, text=True, timeout=600,
                                env={**_clean_environment(), **env})
        assert result.returncode == 0, result.stderr[-3000:]
        lines = result.stdout.strip().splitlines()
        assert [line for line in lines if line.startswith("LEVEL")] == [
            f"LEVEL {level}" for level in levels], env
        assert [line.split()[0] for line in lines if not line.startswith("LEVEL")] == \
            2 * list(tfvae.models.names())
    assert cli.build_parser().parse_args(["--verbose", "models"]).verbose


def test_log_filter_drops_tensorflow_lines_only(capfd):
    import os

    from tfvae import logs

    lines = {
        "WARNING: All log messages before absl::InitializeLog() is called are written to "
        "STDERR": True,
        "I0000 00:00:1796169967.760814   31705 cudart_stub.cc:31] Could not find cuda drivers "
        "on your machine, GPU will not be used.": True,
        "E0000 00:00:1796169969.1   31705 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
        "CUDA error": True,
        "2024-01-31 12:00:00.000001: W tensorflow/core/util/port.cc:113] oneDNN custom "
        "operations are on.": True,
        "F0000 00:00:1796169969.1   31705 check.cc:7] Check failed: x": False,
        "Traceback (most recent call last):": False,
        "UserWarning: something Python says": False,
    }
    for line, dropped in lines.items():
        assert logs.is_tensorflow_log(line) is dropped, line
        assert logs.is_tensorflow_log(line, level=0) is False
    # Level 1 hides INFO only, as TF_CPP_MIN_LOG_LEVEL=1 does.
    assert not logs.is_tensorflow_log("W0000 00:00:1.0   1 a.cc:1] x", level=1)
    capfd.readouterr()
    with logs.filtered_stderr(level=3):
        os.write(2, ("\n".join(lines) + "\n").encode())
    err = capfd.readouterr().err.splitlines()
    assert err == [line for line, dropped in lines.items() if not dropped]


# --- evaluate follows the model card -----------------------------------------

def test_evaluate_follows_the_card_and_reproduces_its_figures(tmp_path, capsys, monkeypatch):
    """Trained with --binarize static --seed 3, evaluated with no data flags: the same 297 test
    digits with the same bits. The KL term is a closed form of the encoder's output, so it
    reproduces to the card's rounding; the ELBO uses one posterior sample per example, so it
    agrees within 5 standard errors of the difference of two such estimates, measured here."""
    export = tmp_path / "vae_static"
    cli.main(["train", "vae", "--dataset", "digits", "--binarize", "static", "--seed", "3",
              "--epochs", "2", "--latent-dim", "2", "--hidden-units", "16", "--batch-size",
              "64", "--export", str(export)])
    capsys.readouterr()
    served = tfvae.load(export)
    card = served.card
    assert card["data"] == {"name": "digits", "source": "scikit-learn digits"}
    assert card["test_protocol"] == {"dataset": "digits", "split": "test", "binarize": "static",
                                     "seed": 3, "take": None, "k": None}

    monkeypatch.setattr(tfvae.progress, "MIN_INTERVAL", 0.0)  # its bar, however fast
    cli.main(["evaluate", str(export)])
    captured = capsys.readouterr()
    line = json.loads(captured.out.strip().splitlines()[-1])
    assert f"evaluating {export}: 3/3 batches [####" in captured.err  # 297 digits, batch 128
    assert line["from_card"] is True and line["examples"] == 297
    assert line["protocol"] == {"dataset": "digits", "split": "test", "binarize": "static",
                                "seed": 3, "take": None}
    assert "evaluating on digits, split test, binarize static, seed 3: the model card's test " \
           "protocol" in captured.err
    assert line["card_metrics"]["kl"] == card["metrics"]["test_kl"]
    # Both figures are rounded to 4 decimals: 1e-4 covers the two roundings.
    assert line["metrics"]["kl"] == pytest.approx(card["metrics"]["test_kl"], abs=1.5e-4)

    from tfvae import data

    x = np.concatenate([b.numpy() for b in data.load("digits", "test", binarize="static",
                                                     seed=3)])
    seeds = np.arange(len(x))
    first, second = served.score(x, seed=seeds)["elbo"], served.score(x, seed=seeds + 1000)["elbo"]
    np.testing.assert_array_equal(first, served.score(x, seed=seeds)["elbo"])  # from the seeds
    standard_error = float(np.sqrt(np.sum((first - second) ** 2)) / len(x))
    assert 0 < standard_error < 1
    assert abs(line["metrics"]["elbo"] - card["metrics"]["test_elbo"]) < 5 * standard_error

    # With --k, the export's log_likelihood too: the same numbers as the loader's, from each
    # example's index in the split as its seed; above the ELBO, as an IWAE bound is.
    cli.main(["evaluate", str(export), "--k", "20"])
    with_k = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = np.mean(served.log_likelihood(x, k=20, seed=np.arange(len(x)))["log_likelihood"])
    assert with_k["k"] == 20
    assert with_k["metrics"]["log_likelihood"] == pytest.approx(expected, abs=1e-3)
    assert with_k["metrics"]["log_likelihood"] > with_k["metrics"]["elbo"]

    # Grey levels (or the default seed's bits) are other inputs: the KL term moves off.
    for flags in (["--binarize", "none"], ["--seed", "0"]):
        cli.main(["evaluate", str(export), "--dataset", "digits", *flags])
        other = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert other["protocol"]["binarize"] == (None if "none" in flags else "static")
        assert abs(other["metrics"]["kl"] - card["metrics"]["test_kl"]) > 10 * 1.5e-4


def test_evaluate_shipped_vae_follows_its_card(shared_data, capsys):
    """vae_mnist's card: the ELBO on the fixed binarization (seed 0) of the 10,000 test images,
    with its per-example spread (about 25 nats). The first 1,000 of them give the same figure
    up to the subset's sampling error, spread * sqrt(1/1000 - 1/10000) (about 0.8 nats): four
    of those are allowed. Grey levels score about 5 nats lower, outside that."""
    card = tfvae.load("vae_mnist").card["metrics"]
    cli.main(["evaluate", "vae_mnist", "--data-dir", str(shared_data / "tensorflow_datasets"),
              "--offline", "--take", "1000"])
    captured = capsys.readouterr()
    line = json.loads(captured.out.strip().splitlines()[-1])
    assert line["from_card"] and line["examples"] == 1000
    assert line["protocol"] == {"dataset": "mnist", "split": "test", "binarize": "static",
                                "seed": 0, "take": 1000}
    assert "binarize static, seed 0, take 1000" in captured.err
    assert line["card_metrics"] == {"elbo": card["test_elbo"]}
    tolerance = 4 * card["test_elbo_std"] * np.sqrt(1 / 1000 - 1 / 10_000)
    assert 0.5 < tolerance < 5
    assert abs(line["metrics"]["elbo"] - card["test_elbo"]) < tolerance


def test_cards_test_protocol_reads_every_kind_of_card():
    from pathlib import Path

    from tfvae import cards

    zoo = Path(__file__).resolve().parents[1] / "saved_models"
    for folder in sorted(zoo.glob("*/[0-9]*")):  # every shipped card holds it as fields
        card = cards.read(folder)
        assert card["test_protocol"] == cards.test_protocol(card), folder
        assert card["test_protocol"]["dataset"] == card["data"]["name"], folder
    vae = cards.read(zoo / "vae_mnist" / "3")
    assert cards.test_protocol(vae) == {"dataset": "mnist", "split": "test", "binarize": "static",
                                        "seed": 0, "take": None, "k": 5000}
    assert cards.test_protocol(cards.read(zoo / "ae_mnist" / "1"))["binarize"] is None
    # Cards written by `tfvae train` before the field: the protocol is in `data`; the oldest
    # recorded no seed: the training seed stands in.
    old = {"data": {"name": "digits", "binarize": "static", "take": 100},
           "training": {"seed": 2}}
    assert cards.test_protocol(old) == {"dataset": "digits", "split": "test",
                                        "binarize": "static", "seed": 2, "take": 100, "k": None}
    for card in (None, {}, {"data": "mnist"}, {"data": {"name": "x", "binarize": "odd"}},
                 {"test_protocol": {"dataset": "mnist", "k": 0}}):
        assert cards.test_protocol(card) is None
    with pytest.raises(ValueError, match="unknown fields"):
        cards.check_test_protocol({"dataset": "mnist", "bits": "static"})


@pytest.mark.parametrize("flags, expected, from_card", [
    ([], {"dataset": "mnist", "split": "test", "binarize": "static", "seed": 0, "take": None},
     True),
    (["--take", "10", "--split", "train"],
     {"dataset": "mnist", "split": "train", "binarize": "static", "seed": 0, "take": 10}, True),
    (["--dataset", "mnist", "--binarize", "dynamic", "--seed", "4"],
     {"dataset": "mnist", "split": "test", "binarize": "dynamic", "seed": 4, "take": None},
     True),
    # Other data than the card's: today's defaults, nothing from the card.
    (["--dataset", "fashion_mnist"],
     {"dataset": "fashion_mnist", "split": "test", "binarize": None, "seed": 0, "take": None},
     False),
])
def test_evaluate_flags_given_replace_the_cards(monkeypatch, flags, expected, from_card):
    card = {"test_protocol": {"dataset": "mnist", "split": "test", "binarize": "static",
                              "seed": 0, "take": None, "k": 5000}}
    monkeypatch.setattr(cli, "_card_of", lambda args: card)
    args = cli.build_parser().parse_args(["evaluate", "some_export", *flags])
    cli._use_card_protocol(args)
    assert {k: getattr(args, k) for k in expected} == expected
    assert args.from_card is from_card


@pytest.mark.parametrize("format", ["litert", "onnx"])
def test_export_and_convert_commands_write_the_other_formats(tmp_path, format):
    """`tfvae export --format` from a .keras file, `tfvae convert` from an export: both give the
    SavedModel's outputs in the runtime of the format, and the converted card keeps the figures."""
    pytest.importorskip("ai_edge_litert" if format == "litert" else "onnxruntime")
    model = tfvae.models.VAE(input_shape=(8, 8, 1), latent_dim=2, hidden_units=(8,))
    model.save(tmp_path / "m.keras")
    saved = tfvae.export(model, tmp_path / "saved", metrics={"test_elbo": -12.5})
    cli.main(["export", str(tmp_path / "m.keras"), str(tmp_path / "exported"), "--format", format])
    cli.main(["convert", str(tmp_path / "saved"), str(tmp_path / "converted"), "--format", format])
    z = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)
    expected = tfvae.load(saved).decode(z)["x"]
    for folder in ("exported", "converted"):
        loaded = tfvae.load(tmp_path / folder)
        assert loaded.card["format"] == format
        np.testing.assert_allclose(loaded.decode(z)["x"], expected, rtol=1e-5, atol=1e-5)
    assert tfvae.load(tmp_path / "converted").card["metrics"] == {"test_elbo": -12.5}
