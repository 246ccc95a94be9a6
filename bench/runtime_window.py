"""The runtime window: do the shipped exports load and run in older TensorFlow runtimes?

TF Serving's images follow TensorFlow with a lag, so the exports must load in runtimes older than
the one that wrote them. For each runtime asked for, this script uses a virtual environment of
its own holding that `tensorflow-cpu` from PyPI (made with --create), loads every shipped export
there (saved_models/zoo.json: each model's "versions") through the session-based loader
(`tf.compat.v1.saved_model.loader.load` in a Session, tag "serve": TF Serving's SavedModelBundle
path), runs every signature by its tensor names on fixed inputs, and compares the outputs with
those computed the same way by the TensorFlow running this script.

Outputs that differ between two runs in the reference runtime (a posterior sample: `encode`'s
`z`, the one-sample terms of `score`) cannot be compared value by value; for those only the
shape, the dtype and finiteness are compared. Every other output must match to rtol 1e-4,
atol 1e-5.

    python bench/runtime_window.py --create --tf 2.20.0           # makes .venv-tf2.20 (~250 MB)
    python bench/runtime_window.py --tf 2.20.0 2.19.1 2.18.1      # one JSON line
    python bench/runtime_window.py --python path/to/python        # any interpreter with tensorflow

The venvs are made in the repository root as .venv-tf<major.minor>, each with a .gitignore of
its own (`*`), so git never sees them.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
BATCH = 3
RTOL, ATOL = 1e-4, 1e-5


def venv_dir(version):
    """.venv-tf2.20 for "2.20.0": one venv per minor release (patch releases replace each other)."""
    return REPO / (".venv-tf" + ".".join(version.split(".")[:2]))


def venv_python(version):
    return venv_dir(version) / "bin" / "python"


def create_venv(version):
    """A venv with tensorflow-cpu==version from PyPI (the CPU wheel: no CUDA libraries)."""
    path = venv_dir(version)
    if not venv_python(version).exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        # As Python 3.13's venv does: the venv ignores itself, whatever the repository's .gitignore.
        (path / ".gitignore").write_text("*\n")
    subprocess.run([str(venv_python(version)), "-m", "pip", "install", "--quiet",
                    f"tensorflow-cpu=={version}"], check=True)


def exports(models_dir):
    """[(name, version, path)]: the models of models_dir/zoo.json with their listed versions, or
    without a zoo.json every folder holding numbered versions with a saved_model.pb."""
    models_dir = Path(models_dir)
    zoo = models_dir / "zoo.json"
    found = []
    if zoo.exists():
        for name, entry in json.loads(zoo.read_text())["models"].items():
            for version in entry["versions"]:
                found.append((name, int(version), models_dir / name / str(version)))
    else:
        for model in sorted(p for p in models_dir.iterdir() if p.is_dir()):
            found += [(model.name, int(v.name), v) for v in sorted(model.iterdir())
                      if v.name.isdigit() and (v / "saved_model.pb").exists()]
    missing = [str(path) for _, _, path in found if not (path / "saved_model.pb").exists()]
    if missing:
        raise SystemExit(f"listed exports without a saved_model.pb: {missing}")
    if not found:
        raise SystemExit(f"no export found in {models_dir}")
    return found


def run_exports(requests, outputs_path):
    """In whichever runtime runs this: load each export with the session-based loader and run
    every signature twice on the given inputs; save the outputs and the runtime's version."""
    import numpy as np
    import tensorflow as tf

    results, report = {}, {"tensorflow": tf.__version__, "loaded": 0, "signatures_run": 0,
                           "errors": []}
    for key, export in requests.items():
        graph = tf.Graph()
        try:
            with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
                meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"],
                                                                  export["path"])
                report["loaded"] += 1
                for name, signature in meta_graph.signature_def.items():
                    if name.startswith("__"):
                        continue
                    feeds = {info.name: np.load(export["inputs"][name][alias])
                             for alias, info in signature.inputs.items()}
                    fetches = {alias: info.name for alias, info in signature.outputs.items()}
                    for run in (0, 1):
                        for alias, value in session.run(fetches, feeds).items():
                            results[f"{key}|{name}|{alias}|{run}"] = value
                    report["signatures_run"] += 1
        except Exception as error:  # one export that fails is the finding, not the end
            report["errors"].append(f"{key}: {type(error).__name__}: {str(error)[:500]}")
    np.savez(outputs_path, **results)
    return report


def fixed_inputs(path, folder):
    """Per signature, a batch of BATCH fixed inputs from the signature's own shapes, saved as .npy
    files under folder: images in [0, 1), codes from N(0, 1), seeds 0, 1, 2."""
    import numpy as np
    import tensorflow as tf

    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    (meta_graph,) = [m for m in saved.meta_graphs if "serve" in m.meta_info_def.tags]
    rng = np.random.default_rng(0)
    inputs = {}
    for name, signature in sorted(meta_graph.signature_def.items()):
        if name.startswith("__"):
            continue
        for alias, info in sorted(signature.inputs.items()):
            dtype = tf.dtypes.as_dtype(info.dtype).as_numpy_dtype
            shape = [BATCH] + [d.size for d in info.tensor_shape.dim[1:]]
            if np.issubdtype(dtype, np.integer):
                value = np.arange(BATCH, dtype=dtype)
            elif alias == "z":
                value = rng.normal(size=shape).astype(dtype)
            else:
                value = rng.uniform(size=shape).astype(dtype)
            file = Path(folder) / f"{path.parent.name}-{path.name}-{name}-{alias}.npy"
            np.save(file, value)
            inputs.setdefault(name, {})[alias] = str(file)
    return inputs


def compare(reference, other):
    """Counts and failures of `other`'s outputs against the reference runtime's."""
    import numpy as np

    compared = stochastic = 0
    max_diff, failures = 0.0, []
    keys = sorted({key.rsplit("|", 1)[0] for key in reference})
    for key in keys:
        want, again = reference[f"{key}|0"], reference[f"{key}|1"]
        if f"{key}|0" not in other:
            failures.append(f"{key}: no output")
            continue
        got = other[f"{key}|0"]
        if got.shape != want.shape or got.dtype != want.dtype:
            failures.append(f"{key}: {got.dtype}{list(got.shape)} != "
                            f"{want.dtype}{list(want.shape)}")
        elif not np.array_equal(want, again):
            # Random by design in every runtime: the same kind of values, not the same values.
            stochastic += 1
            if np.isfinite(want).all() and not np.isfinite(got).all():
                failures.append(f"{key}: non-finite values")
        else:
            compared += 1
            if want.dtype.kind in "fc":
                diff = float(np.max(np.abs(got.astype(np.float64) - want)))if want.size else 0.0
                max_diff = max(max_diff, diff)
                if not np.allclose(got, want, rtol=RTOL, atol=ATOL):
                    failures.append(f"{key}: max abs diff {diff:.3g}")
            elif not np.array_equal(got, want):
                failures.append(f"{key}: values differ")
    return {"outputs_compared": compared, "stochastic_outputs": stochastic,
            "max_abs_diff": max_diff, "failures": failures}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tf", nargs="*", default=["2.20.0"], metavar="VERSION",
                        help="tensorflow-cpu releases to check, each in .venv-tf<major.minor>")
    parser.add_argument("--python", nargs="*", default=[], metavar="PYTHON",
                        help="also check these interpreters (any with tensorflow installed)")
    parser.add_argument("--create", action="store_true",
                        help="make (or complete) the venv of each --tf version first")
    parser.add_argument("--models-dir", default=str(REPO / "saved_models"))
    parser.add_argument("--worker", nargs=2, metavar=("REQUESTS", "OUTPUTS"),
                        help=argparse.SUPPRESS)  # the part that runs in the other runtime
    args = parser.parse_args(argv)

    if args.worker:
        report = run_exports(json.loads(Path(args.worker[0]).read_text()), args.worker[1])
        print(json.dumps(report))
        return 0

    import numpy as np
    import tensorflow as tf

    runtimes = {}
    for version in args.tf:
        if args.create:
            create_venv(version)
        if not venv_python(version).exists():
            raise SystemExit(f"no venv for TensorFlow {version} at {venv_dir(version).name}: make "
                             f"it with `python bench/runtime_window.py --create --tf {version}` "
                             f"(downloads tensorflow-cpu {version} from PyPI)")
        runtimes[f"tensorflow-cpu=={version}"] = str(venv_python(version))
    runtimes.update({python: python for python in args.python})

    with tempfile.TemporaryDirectory() as folder:
        requests = {}
        for name, version, path in exports(args.models_dir):
            requests[f"{name}/{version}"] = {"path": str(path),
                                             "inputs": fixed_inputs(path, folder)}
        (Path(folder) / "requests.json").write_text(json.dumps(requests))
        reference_report = run_exports(requests, Path(folder) / "reference.npz")
        if reference_report["errors"]:
            raise SystemExit(f"the reference runtime itself fails: {reference_report['errors']}")
        reference = dict(np.load(Path(folder) / "reference.npz"))
        line = {"reference": tf.__version__, "exports": len(requests),
                "signatures": reference_report["signatures_run"], "runtimes": {}}
        for label, python in runtimes.items():
            outputs = Path(folder) / "outputs.npz"
            outputs.unlink(missing_ok=True)
            run = subprocess.run([python, str(Path(__file__).resolve()), "--worker",
                                  str(Path(folder) / "requests.json"), str(outputs)],
                                 capture_output=True, text=True, cwd=folder)
            if run.returncode != 0:
                line["runtimes"][label] = {"ok": False, "error": run.stderr.strip()[-2000:]}
                continue
            report = json.loads(run.stdout.strip().splitlines()[-1])
            result = {"tensorflow": report["tensorflow"], "loaded": report["loaded"],
                      "signatures_run": report["signatures_run"], "errors": report["errors"]}
            result.update(compare(reference, dict(np.load(outputs))))
            result["ok"] = (not result["errors"] and not result["failures"]
                            and result["loaded"] == len(requests)
                            and result["signatures_run"] == reference_report["signatures_run"])
            line["runtimes"][label] = result
    print(json.dumps(line))
    return 0 if all(r["ok"] for r in line["runtimes"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
