"""The model zoo. `get(name, **kwargs)` builds a registered model; `names()` lists them."""
from tfvae.models.autoencoders import AE, ContractiveAE, DenoisingAE, SparseAE
from tfvae.models.base import LatentVariableModel
from tfvae.models.hierarchical import HierarchicalVAE, LadderVAE
from tfvae.models.iaf import IAFVAE
from tfvae.models.registry import get, get_class, names, register
from tfvae.models.vae import VAE

__all__ = ["AE", "ContractiveAE", "DenoisingAE", "SparseAE", "HierarchicalVAE", "IAFVAE",
           "LadderVAE", "LatentVariableModel", "VAE", "get", "get_class", "names", "register"]
