"""Transforms that build edges and edge attributes for the layers."""
from pyg_attn.transforms.edge_position import EdgePosition
from pyg_attn.transforms.hnsw_graph import HNSWGraph

__all__ = ['HNSWGraph', 'EdgePosition']
