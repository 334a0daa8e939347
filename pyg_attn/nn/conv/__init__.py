from pyg_attn.nn.conv.dot_product_attention_conv import DotProductAttentionConv
from pyg_attn.nn.conv.edge_gat_conv import EdgeGATConv
from pyg_attn.nn.conv.flash_attention_conv import FlashAttentionConv
from pyg_attn.nn.conv.linear_attention_conv import LinearAttentionConv
from pyg_attn.nn.conv.poincare_attention_conv import PoincareAttentionConv
from pyg_attn.nn.conv.local_global_attention_conv import LocalGlobalAttentionConv
from pyg_attn.nn.conv.rotary_attention_conv import RotaryAttentionConv
from pyg_attn.nn.conv.moe_attention_conv import EuclideanWrapper, MoEAttentionConv
from pyg_attn.nn.conv.dual_space_attention_conv import DualSpaceAttentionConv

__all__ = [
    'DotProductAttentionConv',
    'EdgeGATConv',
    'FlashAttentionConv',
    'LinearAttentionConv',
    'PoincareAttentionConv',
    'LocalGlobalAttentionConv',
    'RotaryAttentionConv',
    'EuclideanWrapper',
    'MoEAttentionConv',
    'DualSpaceAttentionConv',
]
