"""The model registry: one decorator names a class publicly and registers it with Keras."""
import tf_keras

_MODELS = {}


def register(name):
    """Class decorator: `tfvae.models.get(name)` builds it, and Keras can deserialize it."""

    def wrap(cls):
        if name in _MODELS:
            raise ValueError(f"a model is already registered as {name!r}")
        cls = tf_keras.saving.register_keras_serializable(package="tfvae")(cls)
        cls.registry_name = name
        _MODELS[name] = cls
        return cls

    return wrap


def names():
    """The registered model names, sorted."""
    return sorted(_MODELS)


def get_class(name):
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(names())}")
    return _MODELS[name]


def get(name, **kwargs):
    """A new model of the registered `name`, built with `kwargs` (see the class docstring)."""
    return get_class(name)(**kwargs)
