from pyg_attn.nn.conv import (
    DotProductAttentionConv,
    EdgeGATConv,
    FlashAttentionConv,
    LinearAttentionConv,
    PoincareAttentionConv,
    LocalGlobalAttentionConv,
    RotaryAttentionConv,
    EuclideanWrapper,
    MoEAttentionConv,
    DualSpaceAttentionConv,
)
from pyg_attn.nn.models import AttentionNet, FermiDiracDecoder, LinkPredictionNet

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
    'AttentionNet',
    'FermiDiracDecoder',
    'LinkPredictionNet',
]
