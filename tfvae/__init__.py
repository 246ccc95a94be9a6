"""tfvae: autoencoders and VAEs in Keras and TensorFlow Probability, trained with `model.fit`
and exported as SavedModels that TensorFlow Serving runs.

    import tfvae
    ds = tfvae.data.load("digits", "train", batch_size=64)
    model = tfvae.models.get("vae", input_shape=(8, 8, 1), latent_dim=8)
    model.compile()
    model.fit(ds, epochs=5)
    tfvae.export(model, "saved_models/vae_digits")
    served = tfvae.load("saved_models/vae_digits")
    served.sample([0, 1, 2])["x"]

Submodules load on first use: `tfvae.load` and `tfvae.data` need only TensorFlow, so a serving
client never pays for importing TensorFlow Probability or tf_keras.
"""
import importlib

__version__ = "0.1.0"

# public name -> (module, attribute or None for the module itself)
_LAZY = {
    "models": ("tfvae.models", None),
    "data": ("tfvae.data", None),
    "objectives": ("tfvae.objectives", None),
    "layers": ("tfvae.layers", None),
    "callbacks": ("tfvae.callbacks", None),
    "plotting": ("tfvae.plotting", None),
    "serving": ("tfvae.serving", None),
    "training": ("tfvae.training", None),
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
