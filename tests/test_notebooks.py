"""Every notebook in colab/ runs top to bottom (nbclient, the venv's own python3 kernel) on a
small budget (TFVAE_NOTEBOOK_BUDGET=small) and writes its figures as non-empty PNGs; the
pretrained one also in a clone where the README's first command exported a model of its own into
saved_models/, and shows the shipped models alone."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COLAB = REPO / "colab"
SHARED_DATA = REPO.parent / "shared" / "data"

# The PNGs each notebook must write (names relative to its output folder).
FIGURES = {
    "1_quickstart.ipynb": ["reconstructions.png", "samples.png", "latent_space.png",
                           "manifold.png", "export_samples.png"],
    "2_zoo.ipynb": ["kl_per_layer.png", "reconstructions_vae.png", "samples_vae.png",
                    "reconstructions_contractive_ae.png", "samples_ladder_vae.png"],
    "3_serving.ipynb": ["served_samples.png"],
    "4_pretrained.ipynb": ["interpolation_vae_mnist.png", "latent_vae.png",
                           "traversals_vae.png", "anomaly_scores.png", "extremes.png"],
}


def test_every_notebook_is_listed():
    assert sorted(p.name for p in COLAB.glob("*.ipynb")) == sorted(FIGURES)


def test_notebooks_install_only_in_colab_and_define_no_models():
    import nbformat

    for name in FIGURES:
        nb = nbformat.read(COLAB / name, as_version=4)
        first = nb.cells[0]
        assert first.cell_type == "code", f"{name}: the first cell must install tfvae"
        assert 'if IN_COLAB:' in first.source and '"google.colab" in sys.modules' in first.source
        assert "pip install" in first.source, name
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        # No model code of their own: no classes, no Keras layers built by hand.
        assert "class " not in code and "layers.Dense" not in code, name
        assert "import tfvae" in code, name


# The variable pointing tfvae at a zoo folder (tfvae.loading.ENVIRONMENT_VARIABLE); the module
# imports TensorFlow, so it is imported where needed only.
ZOO_VARIABLE = "TFVAE_SAVED_MODELS"


def _shipped():
    """The shipped models of the repository's saved_models/, by its manifest; [] untrained."""
    from tfvae import loading

    saved = REPO / "saved_models"
    return loading.shipped_models(saved) if (saved / loading.MANIFEST).is_file() else []


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_notebook_runs(name, tmp_path, monkeypatch):
    if name == "4_pretrained.ipynb":
        monkeypatch.delenv(ZOO_VARIABLE, raising=False)  # the repository's zoo
        printed = _run_pretrained(tmp_path, monkeypatch)
        for shipped in _shipped():  # the notebook's first cell prints each model's card
            assert shipped in printed, shipped
        return
    _run(name, tmp_path, monkeypatch)


def test_pretrained_notebook_in_a_clone_with_a_users_export(clone, tmp_path, monkeypatch):
    """The issue "Colab as it ships": the README's first command, then the tests, in one clone
    (`clone`: conftest.py). That command used to export vae_digits (8x8 digits) into
    saved_models/, where the notebook took it for a shipped MNIST model ("cannot reshape array
    of size 784 into shape (8,8,1)")."""
    from tfvae import loading

    assert ZOO_VARIABLE == loading.ENVIRONMENT_VARIABLE
    _check_pretrained_can_run()
    assert (clone / "vae_digits" / "1" / "saved_model.pb").is_file()
    monkeypatch.setenv(ZOO_VARIABLE, str(clone))
    printed = _run_pretrained(tmp_path / "output", monkeypatch)
    assert "vae_digits" not in printed
    for shipped in _shipped():
        assert shipped in printed, shipped


def _needs_nbclient():
    pytest.importorskip("nbclient", reason="needs nbclient and ipykernel (the test extra)")
    pytest.importorskip("ipykernel", reason="needs nbclient and ipykernel (the test extra)")


def _check_pretrained_can_run():
    _needs_nbclient()
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs MNIST from ../shared/data (not found at {SHARED_DATA})")
    if "vae_mnist" not in _shipped():
        pytest.skip("saved_models/ has not been trained yet (python bench/train_zoo.py)")


def _run_pretrained(output, monkeypatch):
    _check_pretrained_can_run()
    return _run("4_pretrained.ipynb", output, monkeypatch)


def _run(name, tmp_path, monkeypatch):
    """Run notebook `name` with its figures going to `tmp_path`, check them; what it printed."""
    _needs_nbclient()
    import nbformat
    from nbclient import NotebookClient

    tmp_path.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("TFVAE_NOTEBOOK_BUDGET", "small")
    monkeypatch.setenv("TFVAE_NOTEBOOK_OUTPUT", str(tmp_path))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    # The kernel imports the checkout's tfvae whether or not it is pip-installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(COLAB / name, as_version=4)
    # kernel "python3" is the kernel of the running interpreter: jupyter_client runs it with
    # sys.executable, so the venv's packages are what the notebook sees.
    client = NotebookClient(nb, kernel_name="python3", timeout=300,
                            resources={"metadata": {"path": str(COLAB)}})
    client.execute()  # raises CellExecutionError naming the cell on any error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []) if o.get("output_type") == "stream")
    if name == "3_serving.ipynb":
        # Shell commands (!...) do not raise on failure: check saved_model_cli's answer.
        assert "inputs['seed'] tensor_info" in printed, printed[-2000:]
    for figure in FIGURES[name]:
        path = tmp_path / figure
        assert path.is_file() and path.stat().st_size > 2000, f"{name} did not write {figure}"
    return printed
