"""Mini-batch loading that runs without pyg-lib or torch-sparse."""
from pyg_attn.loader.neighbor_sampler import (
    TorchNeighborSampler,
    sample_neighbors,
)
from pyg_attn.loader.neighbor_loader import NeighborLoader
from pyg_attn.loader.link_neighbor_loader import LinkNeighborLoader

__all__ = ['NeighborLoader', 'LinkNeighborLoader', 'TorchNeighborSampler',
           'sample_neighbors']
