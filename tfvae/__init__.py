"""tfvae: autoencoders and VAEs in Keras and TensorFlow Probability, trained with `model.fit`
and exported as SavedModels that TensorFlow Serving runs.

    import tfvae
    ds = tfvae.data.load("digits", "train", batch_size=64)
    model = tfvae.models.get("vae", input_shape=(8, 8, 1), latent_dim=8)
    model.compile()
    model.fit(ds, epochs=5)
    tfvae.export(model, "runs/vae_digits")
    served = tfvae.load("runs/vae_digits")
    served.sample([0, 1, 2])["x"]

Submodules load on first use: `tfvae.load` and `tfvae.data` need only TensorFlow, so a serving
client never pays for importing TensorFlow Probability or the models.

Imported before TensorFlow, tfvae makes `tf.keras` mean tf_keras (Keras 2), the Keras of its
models, by setting TF_USE_LEGACY_KERAS=1 unless it is set (TensorFlow then loads tf_keras'
optimizers when it is imported, where it would load Keras 3's); imported after, Keras 3
optimizers and callbacks given to `compile`/`fit` are converted to their tf_keras twins (see
`tfvae.compat`). That is all importing tfvae does to the process.
"""
import importlib
import importlib.util
import os
import sys

# tfvae's models are tf_keras models, as TensorFlow Probability's layers need, and a tf_keras
# model can only use tf_keras optimizers and callbacks. TensorFlow reads TF_USE_LEGACY_KERAS when
# it is imported; set before that, `tf.keras.optimizers.Adam(...)` in the user's own code is
# tf_keras' and just works (TFP recommends the same). Once TensorFlow is imported, setting it
# would leave `tensorflow.keras` imports on Keras 3 and `tf.keras` on tf_keras, so it is left
# alone and tfvae.compat converts Keras 3 objects instead. setdefault: a user who set it (to "0"
# for Keras 3) keeps that choice. Being in os.environ, it is inherited by child processes too.
# A serving client needs TensorFlow alone: without tf_keras installed the variable would point
# TensorFlow at a Keras that is not there, so it is only set where tf_keras is.
def _installed(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a finder that refuses the module (an import blocker) means "absent"
        return False


if "tensorflow" not in sys.modules and _installed("tf_keras"):
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# Nothing else happens on import: TensorFlow's C++ start-up logs are the `tfvae` command's
# business (tfvae.logs), not a library's.

__version__ = "0.1.0"

# public name -> (module, attribute or None for the module itself)
_LAZY = {
    "models": ("tfvae.models", None),
    "data": ("tfvae.data", None),
    "objectives": ("tfvae.objectives", None),
    "layers": ("tfvae.layers", None),
    "callbacks": ("tfvae.callbacks", None),
    "cards": ("tfvae.cards", None),
    "plotting": ("tfvae.plotting", None),
    "randomness": ("tfvae.randomness", None),
    "formats": ("tfvae.formats", None),
    "runtimes": ("tfvae.runtimes", None),
    "signatures": ("tfvae.signatures", None),
    "serving": ("tfvae.serving", None),
    "training": ("tfvae.training", None),
    "compat": ("tfvae.compat", None),
    "export": ("tfvae.exporting", "export"),
    "load": ("tfvae.loading", "load"),
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'tfvae' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return __all__
