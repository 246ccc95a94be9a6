"""Export's versioned layout and atomicity, and the loader's errors for bad exports and inputs."""
import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfvae
from tfvae import signatures
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


def test_score_signature_reports_the_elbo_terms(model, tmp_path, digits):
    served = tfvae.load(tfvae.export(model, tmp_path / "vae"))
    scores = served.run("score", digits)
    expected = model.compute_terms(tf.constant(digits))
    np.testing.assert_allclose(scores["kl"], expected["kl"], rtol=1e-5)  # closed form: exact
    # The reconstruction term is a one-sample estimate: equal on average, not per call.
    assert abs(np.mean(scores["elbo"]) - np.mean(expected["elbo"].numpy())) < 2.0


def test_loaded_score_is_the_score_signature(model, tmp_path, digits):
    served = tfvae.load(tfvae.export(model, tmp_path / "vae"))
    scores = served.score(digits[:3])
    assert set(scores) == set(served.run("score", digits[:3])) >= {"loss", "elbo", "kl"}
    assert all(value.shape == (3,) for value in scores.values())


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


def test_importing_tfvae_to_load_needs_neither_tfp_nor_tf_keras(tmp_path):
    import subprocess
    import sys

    code = ("import sys, tfvae; tfvae.load; "
            "print(sorted(m for m in ('tensorflow_probability', 'tf_keras') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("name, kwargs, own", [
    ("hvae", dict(latent_dims=(3, 2), hidden_units=(8,)), "mean_l"),
    ("ae", dict(latent_dim=2, hidden_units=(8,)), "code [batch, latent_dim]"),
])
def test_a_familys_signature_text_replaces_only_the_entries_it_names(name, kwargs, own):
    from tfvae.exporting import model_card

    model = tfvae.models.get(name, input_shape=(4, 4, 1), **kwargs)
    generic = model_card(tfvae.models.VAE(input_shape=(4, 4, 1), latent_dim=2,
                                          hidden_units=(8,)))["signatures"]
    signatures = model_card(model)["signatures"]
    assert set(signatures) == {"encode", "decode", "sample", "reconstruct", "score"}
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
        ((alias, info),) = definition.inputs.items()
        assert alias == contract.input == signatures.input_name(signature_name)
        assert tf.dtypes.as_dtype(info.dtype) == contract.dtype
        assert [d.size for d in info.tensor_shape.dim] == [-1, *dims[contract.per_example]]
        spec = signatures.input_spec(signature_name, model.input_shape, model.latent_shape)
        assert (spec.name, spec.dtype, spec.shape.as_list()) == \
            (alias, contract.dtype, [None, *dims[contract.per_example]])
        # Families add outputs; every model gives the contract's.
        assert set(definition.outputs) >= set(contract.outputs), signature_name
        expected = getattr(model, contract.method)(tf.zeros([2, *spec.shape[1:]], spec.dtype))
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


def test_the_contract_casts_only_what_loses_nothing():
    assert signatures.cast(np.zeros((1, 2)), tf.float32).dtype == np.float32
    assert signatures.cast(tf.constant([1, 2], tf.int32), tf.int64).dtype == np.int64
    assert signatures.cast(np.array([1, 2], np.uint8), tf.float32).dtype == np.float32
    # Left as they are, for the receiver to refuse with its own message.
    assert signatures.cast([0.5], tf.int64).dtype == np.float64
    assert signatures.cast([["a"]], tf.float32).dtype.kind == "U"
    assert signatures.input_name("generate") is None and signatures.lone_output("encode") is None
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
