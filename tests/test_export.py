"""Export's versioned layout and atomicity, and the loader's errors for bad exports and inputs."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfvae
from tfvae import validation, loading, signatures
from tfvae.loading import ExportNotFoundError, InvalidExportError


@pytest.fixture(scope="module")
def model():
    tf_keras.utils.set_random_seed(0)
    return tfvae.models.VAE(input_shape=(8, 8, 1), latent_dim=2, hidden_units=(16,))


def test_versions_count_up_and_never_overwrite(model, tmp_path):
    first = tfvae.export(model, tmp_path / "vae")
    second = tfvae.export(model, tmp_path / "vae")
    assert (first.name, second.name) == ("1", "2")
    with pytest.raises(FileExistsError):
        tfvae.export(model, tmp_path / "vae", version=2)
    assert tfvae.export(model, tmp_path / "vae", version=7).name == "7"
    assert tfvae.export(model, tmp_path / "vae").name == "8"
    # Nothing but numbered versions is left behind: no staging folder TF Serving could trip on.
    assert sorted(p.name for p in (tmp_path / "vae").iterdir()) == ["1", "2", "7", "8"]
    assert tfvae.load(tmp_path / "vae").version == 8
    assert tfvae.load(tmp_path / "vae", version=1).version == 1


def test_a_failed_export_leaves_the_folder_as_it_was(model, tmp_path, monkeypatch):
    tfvae.export(model, tmp_path / "vae")

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        tfvae.export(model, tmp_path / "vae")
    assert sorted(p.name for p in (tmp_path / "vae").iterdir()) == ["1"]


def test_non_finite_weights_are_never_exported(tmp_path):
    broken = tfvae.models.VAE(input_shape=(4, 4, 1), latent_dim=2, hidden_units=(8,))
    broken.decoder.layers[-1].bias.assign(tf.fill(broken.decoder.layers[-1].bias.shape, np.nan))
    with pytest.raises(ValueError, match="non-finite"):
        tfvae.export(broken, tmp_path / "broken")
    assert not list((tmp_path / "broken").glob("*")) if (tmp_path / "broken").exists() else True


def test_card_travels_inside_the_export(model, tmp_path):
    path = tfvae.export(model, tmp_path / "vae", data="digits", metrics={"test_elbo": np.float32(-30.5)})
    card = json.loads((path / "assets" / "tfvae_card.json").read_text())
    assert card["model"] == "vae" and card["data"] == "digits"
    assert card["metrics"]["test_elbo"] == pytest.approx(-30.5)
    assert card["config"]["latent_dim"] == 2 and card["tfvae_version"] == tfvae.__version__
    assert set(card["signatures"]) >= {"encode", "decode", "sample", "reconstruct", "score"}


def test_score_signature_reports_the_elbo_terms_of_the_seeds_draw(model, tmp_path, digits):
    served = tfvae.load(tfvae.export(model, tmp_path / "vae"))
    seeds = np.arange(len(digits)) + 7
    scores = served.score(digits, seed=seeds)
    expected = model.compute_terms(tf.constant(digits), seeds=tf.constant(seeds))
    for term in ("kl", "elbo", "reconstruction", "loss"):
        np.testing.assert_allclose(scores[term], expected[term], rtol=1e-5, atol=1e-4)
    # The same request, the same answer; another seed, another draw of the same expectation.
    np.testing.assert_array_equal(served.score(digits, seed=seeds)["elbo"], scores["elbo"])
    other = served.score(digits, seed=seeds + 1000)["elbo"]
    assert not np.allclose(other, scores["elbo"]) and abs(np.mean(other - scores["elbo"])) < 2


def test_loaded_score_is_the_score_signature(model, tmp_path, digits):
    served = tfvae.load(tfvae.export(model, tmp_path / "vae"))
    scores = served.score(digits[:3])        # seeds 0, 1, 2 by default
    run = served.run("score", {"x": digits[:3], "seed": np.arange(3)})
    assert set(scores) == set(run) >= {"loss", "elbo", "kl"}
    np.testing.assert_array_equal(scores["elbo"], run["elbo"])
    assert all(value.shape == (3,) for value in scores.values())
    with pytest.raises(ValueError, match="pass a dict"):
        served.run("score", digits[:3])
    with pytest.raises(ValueError, match="same batch size"):
        served.score(digits[:3], seed=np.arange(4))


def test_loader_rejects_bad_inputs_with_the_expected_shape(model, tmp_path, digits):
    served = tfvae.load(tfvae.export(model, tmp_path / "vae"))
    with pytest.raises(ValueError, match=r"\[batch, 8, 8, 1\].*add a batch axis"):
        served.encode(digits[0])
    with pytest.raises(ValueError, match=r"\[batch, 8, 8, 1\]"):
        served.reconstruct(digits.reshape(-1, 64))
    with pytest.raises(ValueError, match="non-finite"):
        served.encode(np.full_like(digits[:2], np.nan))
    with pytest.raises(TypeError, match="dtype"):
        served.encode(np.array([["a"]]))
    with pytest.raises(TypeError, match="integers"):
        served.sample(np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"\[batch, 2\]"):
        served.decode(np.zeros((3, 5), np.float32))
    with pytest.raises(KeyError, match="no signature"):
        served.run("generate", digits)
    # Accepted: float64 and integer pixels convert; an int gives that many seeds.
    assert served.encode(digits[:2].astype(np.float64))["mean"].shape == (2, 2)
    assert served.sample(3)["x"].shape == (3, 8, 8, 1)


def test_loader_reports_missing_and_corrupt_exports(model, tmp_path):
    with pytest.raises(ExportNotFoundError, match="no export"):
        tfvae.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportNotFoundError, match="no numbered version"):
        tfvae.load(tmp_path / "empty")
    path = tfvae.export(model, tmp_path / "vae")
    with pytest.raises(ExportNotFoundError, match="no version 5"):
        tfvae.load(tmp_path / "vae", version=5)
    (path / "saved_model.pb").write_bytes(b"not a protocol buffer")
    with pytest.raises(InvalidExportError, match="could not load"):
        tfvae.load(tmp_path / "vae")
    (tmp_path / "vae" / "2").mkdir()  # a numbered folder without a SavedModel
    with pytest.raises(InvalidExportError, match="no saved_model.pb"):
        tfvae.load(tmp_path / "vae")


@pytest.mark.parametrize("legacy_keras", [None, "0"])
def test_importing_tfvae_to_load_needs_neither_tfp_nor_tf_keras(legacy_keras):
    """tfvae.load and a signature's run import neither TFP nor the models. `import tfvae`
    before TensorFlow sets
    TF_USE_LEGACY_KERAS=1 (tf.keras is then tf_keras), and TensorFlow itself loads the Keras
    that tf.keras names: with the variable at 0, nothing of tf_keras is loaded at all."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    if legacy_keras is not None:
        env["TF_USE_LEGACY_KERAS"] = legacy_keras
    code = ("import sys, numpy, tfvae; model = tfvae.load('vae_mnist'); "
            "model.decode(z=numpy.zeros((1, 50), 'float32')); "
            "print(sorted(m for m in ('tensorflow_probability', "
            "'tf_keras', 'tfvae.models') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = "[]" if legacy_keras == "0" else "['tf_keras']"
    assert result.stdout.strip().splitlines()[-1] == expected


@pytest.mark.parametrize("name, kwargs, own", [
    ("hvae", dict(latent_dims=(3, 2), hidden_units=(8,)), "mean_l"),
    ("ae", dict(latent_dim=2, hidden_units=(8,)), "code [batch, latent_dim]"),
])
def test_a_familys_signature_text_replaces_only_the_entries_it_names(name, kwargs, own):
    from tfvae.cards import model_card

    model = tfvae.models.get(name, input_shape=(4, 4, 1), **kwargs)
    generic = model_card(tfvae.models.VAE(input_shape=(4, 4, 1), latent_dim=2,
                                          hidden_units=(8,)))["signatures"]
    signatures = model_card(model)["signatures"]
    assert set(signatures) == {"encode", "decode", "sample", "reconstruct", "score",
                               "log_likelihood"}
    assert own in signatures["encode"] and signatures["score"] == generic["score"]


FAMILIES = [("vae", dict(latent_dim=2, hidden_units=(8,))),
            ("ae", dict(latent_dim=2, hidden_units=(8,))),
            ("hvae", dict(latent_dims=(3, 2), hidden_units=(8,))),
            ("iaf_vae", dict(latent_dim=2, hidden_units=(8,), flow_steps=1,
                             flow_hidden_units=(8,), context_dim=4))]


@pytest.mark.parametrize("name, kwargs", FAMILIES, ids=[name for name, _ in FAMILIES])
def test_every_signature_of_an_export_is_described_by_the_contract(name, kwargs, tmp_path):
    model = tfvae.models.get(name, input_shape=(4, 4, 1), **kwargs)
    path = tfvae.export(model, tmp_path / name)
    defs = signatures.signature_defs(path)
    assert sorted(defs) == sorted(signatures.names())
    dims = {"input_shape": list(model.input_shape), "latent_shape": list(model.latent_shape),
            "scalar": []}
    for signature_name, definition in defs.items():
        contract = signatures.get(signature_name)
        assert sorted(definition.inputs) == sorted(signatures.input_names(signature_name))
        specs = signatures.input_specs(signature_name, model.input_shape, model.latent_shape)
        for expected, spec in zip(contract.inputs, specs):
            info = definition.inputs[expected.name]
            assert tf.dtypes.as_dtype(info.dtype) == expected.dtype
            assert [d.size for d in info.tensor_shape.dim] == [-1, *dims[expected.per_example]]
            assert (spec.name, spec.dtype, spec.shape.as_list()) == \
                (expected.name, expected.dtype, [None, *dims[expected.per_example]])
        # Families add outputs; every model gives the contract's.
        assert set(definition.outputs) >= set(contract.outputs), signature_name
        expected = getattr(model, contract.method)(*[
            tf.ones([2, *spec.shape[1:]], spec.dtype) for spec in specs])
        assert set(definition.outputs) == set(expected), signature_name
        # What a client calls an unnamed (one-output) answer is an output the signature has.
        lone = signatures.lone_output(signature_name)
        assert lone is None or lone in definition.outputs, signature_name
    default, reconstruct = (
        {key: (info.dtype, info.tensor_shape) for key, info in defs[name].outputs.items()}
        for name in (signatures.DEFAULT_SIGNATURE, "reconstruct"))
    assert default == reconstruct
    card = json.loads((path / "assets" / "tfvae_card.json").read_text())
    assert list(card["signatures"]) == list(signatures.SIGNATURES)
    own = getattr(model, "card_info", dict)().get("signatures", {})
    for signature_name, text in card["signatures"].items():
        assert text == own.get(signature_name, signatures.get(signature_name).text)


def test_every_way_into_a_model_refuses_a_mistake_in_the_same_words(model, tmp_path, digits):
    from tfvae import serving

    path = tfvae.export(model, tmp_path / "vae")
    wrong = digits[:3].reshape(3, 64)
    info = signatures.signature_defs(path)["encode"].inputs["x"]
    doors = {"evaluate": lambda: model.evaluate(wrong, verbose=0),
             "loaded": lambda: tfvae.load(path).encode(wrong),
             "client": lambda: serving._conform(wrong, info, "encode()", "x")}
    if model.optimizer is None:
        model.compile()
    for door, call in doors.items():
        with pytest.raises(ValueError) as error:
            call()
        assert str(error.value).endswith(
            "of shape [batch, 8, 8, 1] and dtype float32; got shape [3, 64]"), door
        assert " takes " in str(error.value), door


def test_one_input_check_casts_only_what_loses_nothing():
    cast = validation.lossless_cast
    assert cast(np.zeros((1, 2)), np.float32).dtype == np.float32
    assert cast(np.array([1, 2], np.int32), np.int64).dtype == np.int64
    assert cast(np.array([1, 2], np.uint8), np.float32).dtype == np.float32
    # Refused: a fraction as a seed, text, booleans, a float64 float32 cannot hold, an integer
    # float32 cannot hold exactly.
    for value, dtype in (([0.5], np.int64), ([["a"]], np.float32), ([True], np.float32),
                         ([1e300], np.float32), ([2 ** 25 + 1], np.float32)):
        assert cast(np.asarray(value), dtype) is None, value
    assert signatures.input_names("generate") is None and signatures.lone_output("encode") is None
    assert signatures.get("serving_default") is signatures.get("reconstruct")
    with pytest.raises(KeyError, match="not a tfvae signature"):
        signatures.get("generate")


def test_the_data_flow_is_one_way_export_never_imports_serving():
    import subprocess
    import sys

    code = ("import sys, tfvae.exporting, tfvae.loading, tfvae.warmup, tfvae.signatures; "
            "print(sorted(m for m in ('tfvae.serving', 'tfvae.cli') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


# ---- shipped models by name: only the manifest's, whatever else is in the zoo's folder --------
def _zoo_folder(root, model, shipped=("tiny_mnist",)):
    """A folder laid out as saved_models/ is: exports listed in zoo.json, with version 1."""
    for name in shipped:
        tfvae.export(model, root / name)
    entries = {name: {"model": "vae", "class": "VAE", "description": "a test double",
                      "input_shape": [8, 8, 1], "dataset": "digits", "versions": [1]}
               for name in shipped}
    (root / loading.MANIFEST).write_text(json.dumps({"models": entries}))
    return root


@pytest.fixture(scope="module")
def zoo_template(model, tmp_path_factory):
    root = _zoo_folder(tmp_path_factory.mktemp("zoo") / "saved_models", model)
    tfvae.export(model, root / "vae_digits")
    return root


@pytest.fixture
def zoo(zoo_template, tmp_path, monkeypatch):
    """A zoo of one shipped model, tiny_mnist, and a user's export beside it, vae_digits (what
    the README's first command wrote into saved_models/ before it exported to runs/)."""
    root = Path(shutil.copytree(zoo_template, tmp_path / "saved_models"))
    monkeypatch.delenv(loading.ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setattr(loading, "SHIPPED_MODELS", root)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # names resolve from any working directory
    return root


def _listed(message):
    return message.split("shipped models: ")[1].split(";")[0].split(", ")


def test_a_name_is_looked_up_in_the_manifest_alone(zoo):
    from tfvae import cli

    assert loading.shipped_models() == ["tiny_mnist"]
    assert tfvae.load("tiny_mnist").path == zoo / "tiny_mnist" / "1"
    assert loading.resolve(Path("tiny_mnist")) == zoo / "tiny_mnist" / "1"  # a Path too
    # The user's export is not a shipped model: not by name, not in the listing...
    with pytest.raises(ExportNotFoundError, match="load it by its path") as error:
        tfvae.load("vae_digits")
    assert _listed(str(error.value)) == ["tiny_mnist"]
    with pytest.raises(ExportNotFoundError):
        tfvae.models.from_pretrained("vae_digits")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sample", "nope"])
    assert "no export at 'nope'" in str(exit_info.value)
    assert _listed(str(exit_info.value)) == ["tiny_mnist"]
    with pytest.raises(ExportNotFoundError, match="no export at 'x/nope'") as error:
        tfvae.load("x/nope")  # a path: the same listing as before
    assert _listed(str(error.value)) == ["tiny_mnist"]
    # ... and still loads by its path, as any export does.
    assert tfvae.load(zoo / "vae_digits").version == 1


def test_a_name_loads_only_the_versions_shipped(zoo):
    # A user's version 2 in the shipped model's folder (tfvae.export would write it so).
    shutil.copytree(zoo / "tiny_mnist" / "1", zoo / "tiny_mnist" / "2")
    assert tfvae.load("tiny_mnist").version == 1
    assert tfvae.load("tiny_mnist", version=1).version == 1
    with pytest.raises(ExportNotFoundError, match="ships tiny_mnist as version 1, not version 2"
                                                  ".*load it by its path"):
        tfvae.load("tiny_mnist", version=2)
    assert tfvae.load(zoo / "tiny_mnist").version == 2  # by path: every version, as before


def test_a_bare_name_in_the_working_directory_is_that_folder(zoo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for version in (1, 2):  # a user's export of two versions, named as the shipped model is
        shutil.copytree(zoo / "tiny_mnist" / "1", tmp_path / "tiny_mnist" / str(version))
    # As before the manifest: a name that exists here is that folder, not the shipped model.
    assert tfvae.load("tiny_mnist").path == Path("tiny_mnist") / "2"
    # "./x" is a path: it is not looked up in the zoo even when x is a shipped name.
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(ExportNotFoundError, match=r"no export at '\./tiny_mnist'"):
        tfvae.load("./tiny_mnist")
    assert tfvae.load(str(Path("..") / "tiny_mnist")).version == 2


def test_the_environment_variable_points_at_another_zoo(zoo, tmp_path, monkeypatch):
    other = tmp_path / "other"
    shutil.copytree(zoo / "tiny_mnist", other / "other_mnist")
    manifest = json.loads((zoo / loading.MANIFEST).read_text())
    manifest["models"] = {"other_mnist": manifest["models"]["tiny_mnist"]}
    (other / loading.MANIFEST).write_text(json.dumps(manifest))
    monkeypatch.setenv(loading.ENVIRONMENT_VARIABLE, str(other))
    assert loading.shipped_root() == other
    assert loading.shipped_models() == ["other_mnist"]
    assert tfvae.load("other_mnist").path == other / "other_mnist" / "1"
    with pytest.raises(ExportNotFoundError):
        tfvae.load("tiny_mnist")
    assert loading.shipped_models(zoo) == ["tiny_mnist"]  # an explicit root wins


def test_without_the_repository_the_error_says_what_to_do(tmp_path, monkeypatch):
    # What a non-editable `pip install .` sees: SHIPPED_MODELS inside site-packages, no zoo there.
    monkeypatch.delenv(loading.ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setattr(loading, "SHIPPED_MODELS", tmp_path / "site-packages" / "saved_models")
    monkeypatch.chdir(tmp_path)
    fix = ['saved_models/ folder of the tfvae repository', loading.REPOSITORY,
           'tfvae.load("path/to/tfvae/saved_models/vae_mnist")',
           "TFVAE_SAVED_MODELS=path/to/tfvae/saved_models"]
    for call in (lambda: tfvae.load("vae_mnist"), loading.shipped_models,
                 lambda: tfvae.models.from_pretrained("vae_mnist")):
        with pytest.raises(ExportNotFoundError) as error:
            call()
        for words in fix:
            assert words in str(error.value), (words, str(error.value))
    # A path is what failed there: its message stays as it was, without a listing.
    with pytest.raises(ExportNotFoundError) as error:
        tfvae.load(tmp_path / "nowhere")
    assert str(error.value).endswith("give a model folder (e.g. saved_models/NAME) or a "
                                     "version folder")
    # The variable set to a folder without a zoo: the message says so.
    monkeypatch.setenv(loading.ENVIRONMENT_VARIABLE, "not_a_zoo")
    with pytest.raises(ExportNotFoundError, match="TFVAE_SAVED_MODELS=not_a_zoo holds no zoo.json"):
        tfvae.load("vae_mnist")


def test_a_damaged_manifest_is_named(zoo):
    for text in ("not json", '{"zoo": {}}', '{"models": {"../up": {"versions": [1]}}}',
                 '{"models": {"m": {"versions": []}}}', '{"models": {"m": {"versions": ["1"]}}}',
                 '{"models": {"m": {"versions": [true]}}}', '{"models": ["m"]}'):
        (zoo / loading.MANIFEST).write_text(text)
        with pytest.raises(InvalidExportError, match="the zoo's manifest .*zoo.json is damaged"):
            tfvae.load("tiny_mnist")
        with pytest.raises(ExportNotFoundError, match="no export at"):  # a path: as before
            tfvae.load("x/nope")
    assert tfvae.load(zoo / "tiny_mnist").version == 1
