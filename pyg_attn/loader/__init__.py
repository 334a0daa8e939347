"""Mini-batch loading that runs without pyg-lib or torch-sparse."""
from pyg_attn.loader.neighbor_sampler import (
    TorchNeighborSampler,
    sample_neighbors,
)
from pyg_attn.loader.neighbor_loader import NeighborLoader

__all__ = ['NeighborLoader', 'TorchNeighborSampler', 'sample_neighbors']
