from pyg_attn.datasets.root import data_root, load_planetoid
from pyg_attn.datasets.disease import DiseaseLP

__all__ = ['data_root', 'load_planetoid', 'DiseaseLP']
