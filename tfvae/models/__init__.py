"""The model zoo. `get(name, **kwargs)` builds a registered model; `names()` lists them;
`from_pretrained(name_or_path)` returns a shipped or exported model, trainable.

One family, one file: `vae.py`, `iaf.py`, `hierarchical.py`, `autoencoders.py`, on the shared
`base.py` (the Keras plumbing, bodies and heads, serving functions, and for the VAEs the
objective and evaluation) and `tfvae.objectives`. A new family is one more file whose class is
decorated with `@register(name)`.
"""
from tfvae.models.autoencoders import AE, ContractiveAE, DenoisingAE, SparseAE
from tfvae.models.base import LatentVariableModel, VariationalModel
from tfvae.models.hierarchical import HierarchicalVAE, LadderVAE
from tfvae.models.iaf import IAFVAE
from tfvae.models.pretrained import from_pretrained
from tfvae.models.registry import get, get_class, names, register
from tfvae.models.vae import VAE

__all__ = ["AE", "ContractiveAE", "DenoisingAE", "SparseAE", "HierarchicalVAE", "IAFVAE",
           "LadderVAE", "LatentVariableModel", "VAE", "VariationalModel", "from_pretrained",
           "get", "get_class", "names", "register"]
