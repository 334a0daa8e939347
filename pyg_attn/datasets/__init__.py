from pyg_attn.datasets.root import (data_root, load_heterophilous,
                                    load_planetoid)
from pyg_attn.datasets.disease import DiseaseLP

__all__ = ['data_root', 'load_planetoid', 'load_heterophilous', 'DiseaseLP']
