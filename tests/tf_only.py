"""Run an export's signatures in a process where tfvae, TensorFlow Probability and tf_keras
cannot be imported, as in TF Serving: `python tests/tf_only.py EXPORT_DIR CASES.npz OUT.npz`.

CASES.npz holds `<signature>__<input name>` arrays; OUT.npz gets `<signature>__<output>`.
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


def main(export_dir, cases_file, out_file):
    # TF Serving has no tf_keras; TensorFlow would look for it if tf.keras named it.
    os.environ.pop("TF_USE_LEGACY_KERAS", None)
    sys.meta_path.insert(0, Block())
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.dirname(__file__))]
    import numpy as np
    import tensorflow as tf

    for name in BLOCKED:
        try:
            __import__(name)
        except ImportError:
            pass
        else:
            raise SystemExit(f"{name} could be imported")
    loaded = tf.saved_model.load(export_dir)
    outputs = {}
    with np.load(cases_file) as cases:
        for key in cases.files:
            signature, argument = key.split("__")
            result = loaded.signatures[signature](**{argument: tf.constant(cases[key])})
            for out_name, value in result.items():
                outputs[f"{signature}__{out_name}"] = value.numpy()
    np.savez(out_file, **outputs)
    print("signatures run:", sorted({k.split("__")[0] for k in outputs}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
