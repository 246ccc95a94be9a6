"""The model zoo. `get(name, **kwargs)` builds a registered model; `names()` lists them."""
from tfvae.models.base import LatentVariableModel
from tfvae.models.registry import get, get_class, names, register
from tfvae.models.vae import VAE

__all__ = ["LatentVariableModel", "VAE", "get", "get_class", "names", "register"]
