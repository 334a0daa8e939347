from pyg_attn.nn.models.attention_net import AttentionNet
from pyg_attn.nn.models.link_prediction_net import FermiDiracDecoder, LinkPredictionNet

__all__ = [
    'AttentionNet',
    'FermiDiracDecoder',
    'LinkPredictionNet',
]
