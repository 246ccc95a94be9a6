"""Run an export's signatures in a process that cannot import what its users lack:

    python tests/signature_worker.py tensorflow EXPORT_DIR CASES.npz OUT.npz
    python tests/signature_worker.py runtimes EXPORT_DIR CASES.npz OUT.npz

`tensorflow`: a SavedModel loaded with `tf.saved_model.load`, where tfvae, TensorFlow Probability
and tf_keras cannot be imported, as in TF Serving. `runtimes`: a LiteRT or ONNX export run by
`tfvae.load`, where TensorFlow, TFP, tf_keras and Keras cannot be imported, as on a phone or in a
service without TensorFlow.

CASES.npz holds `<signature>__<input name>` arrays (a signature with several inputs has several
entries); OUT.npz gets `<signature>__<output>`. With `--serve` instead of the three paths, one
process serves many exports (importing a runtime costs seconds, paid once per test session): it
reads lines `EXPORT_DIR<TAB>CASES.npz<TAB>OUT.npz` on stdin and answers each with one line on
stdout, "ok" or "error: ..." (conftest.py's `tf_only` and `runtimes_only` fixtures).
"""
import importlib.abc
import os
import sys

BLOCKED = {
    "tensorflow": ("tfvae", "tensorflow_probability", "tf_keras"),
    "runtimes": ("tensorflow", "tensorflow_probability", "tf_keras", "keras"),
}
WHY = {
    "tensorflow": "the export must run with TensorFlow alone",
    "runtimes": "LiteRT and ONNX exports run without TensorFlow",
}


class Block(importlib.abc.MetaPathFinder):
    def __init__(self, mode):
        self.mode = mode

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED[self.mode]:
            raise ImportError(f"{name} is blocked: {WHY[self.mode]}")
        return None


def block(mode):
    """Make BLOCKED[mode] unimportable (with TensorFlow imported first in `tensorflow` mode),
    and check that they are."""
    sys.meta_path.insert(0, Block(mode))
    if mode == "tensorflow":
        # TF Serving has no tf_keras; TensorFlow would look for it if tf.keras named it. The
        # checkout's tfvae must not be found on the path either.
        os.environ.pop("TF_USE_LEGACY_KERAS", None)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        sys.path = [p for p in sys.path if os.path.abspath(p or ".") != root]
        import tensorflow  # noqa: F401
    for name in BLOCKED[mode]:
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            raise SystemExit(f"{name} could be imported")


def load(mode, export_dir):
    """`run(signature, {input: array})` -> {output: array} for the export in `export_dir`."""
    if mode == "runtimes":
        import tfvae

        return tfvae.load(export_dir).run
    import tensorflow as tf

    loaded = tf.saved_model.load(export_dir)

    def run(signature, arguments):
        outputs = loaded.signatures[signature](**{k: tf.constant(v) for k, v in arguments.items()})
        return {name: value.numpy() for name, value in outputs.items()}
    return run


def run_signatures(mode, export_dir, cases_file, out_file):
    import numpy as np

    run = load(mode, export_dir)
    inputs, outputs = {}, {}
    with np.load(cases_file) as cases:
        for key in cases.files:  # <signature>__<input>: a signature's inputs together
            signature, argument = key.split("__")
            inputs.setdefault(signature, {})[argument] = cases[key]
    for signature, arguments in inputs.items():
        for name, value in run(signature, arguments).items():
            outputs[f"{signature}__{name}"] = value
    np.savez(out_file, **outputs)
    loaded = [name for name in BLOCKED[mode] if name in sys.modules]
    assert not loaded, f"{loaded} were imported"
    return sorted(inputs)


def serve(mode):
    """Answer `EXPORT_DIR<TAB>CASES<TAB>OUT` lines until stdin closes."""
    for line in sys.stdin:
        try:
            run_signatures(mode, *line.rstrip("\n").split("\t"))
            answer = "ok"
        except Exception as error:  # reported to the test, which fails with it
            answer = "error: " + f"{type(error).__name__}: {error}".replace("\n", " ")[:3000]
        print(answer, flush=True)


if __name__ == "__main__":
    mode, arguments = sys.argv[1], sys.argv[2:]
    if mode not in BLOCKED:
        raise SystemExit(f"the mode is one of {', '.join(BLOCKED)}; got {mode!r}")
    block(mode)
    if arguments == ["--serve"]:
        serve(mode)
    else:
        print("signatures run:", run_signatures(mode, *arguments[:3]))
