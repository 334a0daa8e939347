"""Pure tensor math shared by the layers."""
from pyg_attn.functional.knn import edge_distance, knn
from pyg_attn.functional.random_features import (orthogonal_random_matrix, relu_kernel_features,
                                                 softmax_kernel_features)
from pyg_attn.functional.softmax import edge_softmax, stat_dtype
from pyg_attn.functional.sparse import gather_dot, gather_scatter

__all__ = ['knn', 'edge_distance', 'edge_softmax', 'stat_dtype', 'gather_dot', 'gather_scatter',
           'orthogonal_random_matrix', 'softmax_kernel_features', 'relu_kernel_features']
