"""bench/runtime_window.py: the shipped exports load and run in older TensorFlow runtimes.

The comparison machinery is tested with this interpreter standing in for the older runtime, on a
fresh export; the real check runs against the venvs the script made (.venv-tf<major.minor>), and
is skipped where none was made (they are ~250 MB each, downloaded from PyPI).
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tf_keras

import tfvae

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "runtime_window.py"


def load_script():
    spec = importlib.util.spec_from_file_location("runtime_window", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(*args):
    result = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                            timeout=1800, cwd=REPO)
    assert result.stdout.strip(), result.stderr[-3000:]
    return result.returncode, json.loads(result.stdout.strip().splitlines()[-1])


def test_the_window_script_loads_runs_and_compares_every_signature(tmp_path):
    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.get("vae", input_shape=(8, 8, 1), latent_dim=3, hidden_units=(16,))
    for _ in range(2):
        tfvae.export(model, tmp_path / "vae")
    code, line = run("--tf", "--python", sys.executable, "--models-dir", str(tmp_path))
    (result,) = line["runtimes"].values()
    assert code == 0 and result["ok"], line
    assert line["exports"] == 2 and result["loaded"] == 2  # both versions, no zoo.json here
    assert result["signatures_run"] == line["signatures"] == 2 * 7
    # Every output, draws included (they come from the seeds), is compared value by value.
    assert result["stochastic_outputs"] == 0 and result["outputs_compared"] > 0
    assert result["max_abs_diff"] == 0.0  # the same runtime gives the same numbers


def test_compare_reports_differences_and_missing_outputs():
    window = load_script()
    x = np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)
    reference = {"m/1|decode|x|0": x, "m/1|decode|x|1": x,
                 "m/1|encode|z|0": x, "m/1|encode|z|1": x + 1}  # z: random between runs
    same = window.compare(reference, {"m/1|decode|x|0": x, "m/1|encode|z|0": x - 5})
    assert same["failures"] == [] and same["outputs_compared"] == 1
    assert same["stochastic_outputs"] == 1
    off = window.compare(reference, {"m/1|decode|x|0": x + 1e-3, "m/1|encode|z|0": x * np.nan})
    assert len(off["failures"]) == 2 and off["max_abs_diff"] == pytest.approx(1e-3, rel=1e-3)
    missing = window.compare(reference, {"m/1|encode|z|0": x})
    assert missing["failures"] == ["m/1|decode|x: no output"]
    shape = window.compare(reference, {"m/1|decode|x|0": x[:1], "m/1|encode|z|0": x})
    assert "float32[1, 3] != float32[2, 3]" in shape["failures"][0]


def test_the_shipped_exports_run_in_every_older_runtime_made_here():
    versions = sorted(p.name[len(".venv-tf"):] for p in REPO.glob(".venv-tf*")
                      if (p / "bin" / "python").exists())
    if not versions:
        pytest.skip("no older TensorFlow venv here: make one with `python bench/runtime_window.py "
                    "--create --tf 2.20.0` (downloads tensorflow-cpu from PyPI, ~250 MB)")
    window = load_script()
    pythons = [str(REPO / f".venv-tf{version}" / "bin" / "python") for version in versions]
    code, line = run("--tf", "--python", *pythons)
    assert line["exports"] == len(window.exports(REPO / "saved_models"))
    for python, result in line["runtimes"].items():
        assert result["ok"], (python, result)
    assert code == 0
