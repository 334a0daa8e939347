from pyg_attn.nn.conv.dot_product_attention_conv import DotProductAttentionConv
from pyg_attn.nn.conv.edge_gat_conv import EdgeGATConv

__all__ = ['DotProductAttentionConv', 'EdgeGATConv']
