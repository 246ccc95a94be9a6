"""Run an export's signatures in a process where tfvae, TensorFlow Probability and tf_keras
cannot be imported, as in TF Serving: `python tests/tf_only.py EXPORT_DIR CASES.npz OUT.npz`.

CASES.npz holds `<signature>__<input name>` arrays (a signature with several inputs has several
entries); OUT.npz gets `<signature>__<output>`.

`python tests/tf_only.py --serve` keeps one such process for many exports (TensorFlow's import
costs seconds, paid once per test session instead of once per export): it reads lines
`EXPORT_DIR<TAB>CASES.npz<TAB>OUT.npz` on stdin and answers each with one line on stdout, "ok"
or "error: ..." (see conftest.py's `tf_only` fixture).
"""
import importlib.abc
import os
import sys

BLOCKED = ("tfvae", "tensorflow_probability", "tf_keras")


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the export must run with TensorFlow alone")
        return None


def tensorflow_alone():
    """Block tfvae, TFP and tf_keras, then import TensorFlow and check that they stay out."""
    # TF Serving has no tf_keras; TensorFlow would look for it if tf.keras named it.
    os.environ.pop("TF_USE_LEGACY_KERAS", None)
    sys.meta_path.insert(0, Block())
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.dirname(__file__))]
    import tensorflow  # noqa: F401

    for name in BLOCKED:
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            raise SystemExit(f"{name} could be imported")


def run_signatures(export_dir, cases_file, out_file):
    import numpy as np
    import tensorflow as tf

    loaded = tf.saved_model.load(export_dir)
    outputs, inputs = {}, {}
    with np.load(cases_file) as cases:
        for key in cases.files:  # <signature>__<input>: a signature's inputs together
            signature, argument = key.split("__")
            inputs.setdefault(signature, {})[argument] = tf.constant(cases[key])
    for signature, arguments in inputs.items():
        for out_name, value in loaded.signatures[signature](**arguments).items():
            outputs[f"{signature}__{out_name}"] = value.numpy()
    np.savez(out_file, **outputs)
    return sorted({k.split("__")[0] for k in outputs})


def serve():
    """Answer `EXPORT_DIR<TAB>CASES<TAB>OUT` lines until stdin closes."""
    for line in sys.stdin:
        try:
            run_signatures(*line.rstrip("\n").split("\t"))
            answer = "ok"
        except Exception as error:  # reported to the test, which fails with it
            answer = "error: " + f"{type(error).__name__}: {error}".replace("\n", " ")[:3000]
        print(answer, flush=True)


if __name__ == "__main__":
    tensorflow_alone()
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        print("signatures run:", run_signatures(*sys.argv[1:4]))
