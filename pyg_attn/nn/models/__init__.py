from pyg_attn.nn.models.attention_net import AttentionNet

__all__ = [
    'AttentionNet',
]
