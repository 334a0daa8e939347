from pyg_attn.nn.conv import DotProductAttentionConv, EdgeGATConv
from pyg_attn.nn.conv import FlashAttentionConv
from pyg_attn.nn.conv import LinearAttentionConv
from pyg_attn.nn.models import AttentionNet

__all__ = ['DotProductAttentionConv', 'EdgeGATConv', 'LinearAttentionConv', 'FlashAttentionConv', 'AttentionNet']
