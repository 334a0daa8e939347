from pyg_attn.datasets.root import data_root, load_planetoid

__all__ = ['data_root', 'load_planetoid']
