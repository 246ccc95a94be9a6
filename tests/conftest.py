import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """../shared/data (real MNIST); tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared data folder ../shared/data (not found at {SHARED_DATA})")
    return SHARED_DATA


@pytest.fixture(scope="session")
def digits():
    """A small batch of real images (scikit-learn's 8x8 digits in [0, 1]), shape [64, 8, 8, 1]."""
    from sklearn.datasets import load_digits

    return (load_digits().images[:64, :, :, None] / 16.0).astype(np.float32)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# The README's first command before it exported to runs/: into the clone's saved_models/.
COMMAND_1 = [["train", "vae", "--dataset", "digits", "--epochs", "1", "--latent-dim", "8",
              "--hidden-units", "128,64", "--export", "saved_models/vae_digits"],
             ["sample", "saved_models/vae_digits", "--num", "64", "--out", "samples.png"]]


@pytest.fixture(scope="session")
def clone(tmp_path_factory):
    """The saved_models/ of a clone in which the README's first command ran, exporting into
    saved_models/: the shipped zoo (symlinks to the repository's, read only) plus the user's
    export saved_models/vae_digits, of 8x8 digits; for TFVAE_SAVED_MODELS. One for the session:
    the zoo and notebook tests that use it only read it, and making it trains a model."""
    from tfvae import cli, loading

    shipped = REPO / "saved_models"
    zoo = loading.shipped_models(shipped) if (shipped / loading.MANIFEST).is_file() else []
    if not zoo or not all((shipped / name).is_dir() for name in zoo):
        pytest.skip("saved_models/ has not been trained yet (python bench/train_zoo.py)")
    folder = tmp_path_factory.mktemp("clone")
    saved = folder / "saved_models"
    saved.mkdir()
    for name in zoo:
        (saved / name).symlink_to(shipped / name, target_is_directory=True)
    for file in (loading.MANIFEST, "README.md"):
        shutil.copy(shipped / file, saved / file)
    here = os.getcwd()
    os.chdir(folder)
    try:
        for command in COMMAND_1:
            cli.main(command)
    finally:
        os.chdir(here)
    assert (folder / "samples.png").is_file()
    return saved


def _worker(mode):
    """A process running `tests/signature_worker.py MODE --serve` for the session, and
    `run(export_dir, cases_file, out_file)`, which has it run an export's signatures."""
    import subprocess
    import sys

    worker = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "signature_worker.py"), mode, "--serve"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(export_dir, cases_file, out_file):
        worker.stdin.write(f"{export_dir}\t{cases_file}\t{out_file}\n")
        worker.stdin.flush()
        answer = worker.stdout.readline().strip()
        if not answer:  # the worker died (e.g. a blocked import): its stderr says why
            raise AssertionError(f"the {mode} worker ended: {worker.stderr.read()[-3000:]}")
        assert answer == "ok", answer

    yield run
    worker.stdin.close()
    worker.wait(timeout=60)


@pytest.fixture(scope="session")
def tf_only():
    """`run(export_dir, cases_file, out_file)`: an export's signatures run in one process, kept
    for the session, where tfvae, TFP and tf_keras cannot be imported (as in TF Serving)."""
    yield from _worker("tensorflow")


@pytest.fixture(scope="session")
def runtimes_only():
    """`run(export_dir, cases_file, out_file)`: a LiteRT or ONNX export's signatures run by
    tfvae.load in one process, kept for the session, where TensorFlow, TFP and tf_keras cannot
    be imported."""
    yield from _worker("runtimes")


@pytest.fixture(scope="session")
def xla_compiled():
    """`names(graph)`: the functions and nodes of a GraphDef, or of the SavedModel in an export
    folder, that XLA must compile."""
    def must_compile(proto):
        return "_XlaMustCompile" in proto.attr and proto.attr["_XlaMustCompile"].b

    def names(graph):
        if isinstance(graph, (str, os.PathLike)):
            from tensorflow.core.protobuf import saved_model_pb2

            saved = saved_model_pb2.SavedModel.FromString(
                (Path(graph) / "saved_model.pb").read_bytes())
            graph = saved.meta_graphs[0].graph_def
        functions = [f.signature.name for f in graph.library.function if must_compile(f)]
        nodes = [n.name for f in graph.library.function for n in f.node_def if must_compile(n)]
        return functions + nodes + [n.name for n in graph.node if must_compile(n)]

    return names
