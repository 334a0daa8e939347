import pytest
import torch

from pyg_attn.nn import (DotProductAttentionConv, EdgeGATConv,
                         LinearAttentionConv)
from pyg_attn.nn.models.adapters import (GlobalAttentionBlock,
                                         KeywordAttentionNet, OutputSlice)
from pyg_attn.testing.graphs import random_graph


class Recorder(DotProductAttentionConv):
    def forward(self, x, edge_index, edge_attr=None, edge_type=None,
                **kwargs):
        self.seen = edge_type
        return super().forward(x, edge_index, edge_attr, **kwargs)


def test_keyword_attention_net_passes_tensors():
    data = random_graph(7, 20)
    edge_type = torch.arange(20) % 2
    model = KeywordAttentionNet(6, 4, 3, conv=Recorder, heads=2,
                                edge_dim=3).eval()
    out = model(data.x, data.edge_index, data.edge_attr, edge_type=edge_type)
    assert out.shape == (7, 3)
    assert all(conv.seen is edge_type for conv in model.convs)
    assert not torch.allclose(out, model(data.x, data.edge_index,
                                         data.edge_attr + 1,
                                         edge_type=edge_type))


def test_keyword_attention_net_equals_attention_net():
    from pyg_attn.nn import AttentionNet
    data = random_graph(7, 20)
    torch.manual_seed(1)
    plain = AttentionNet(6, 4, 3, conv=EdgeGATConv, heads=2).eval()
    torch.manual_seed(1)
    keyword = KeywordAttentionNet(6, 4, 3, conv=EdgeGATConv, heads=2).eval()
    assert torch.equal(plain(data.x, data.edge_index),
                       keyword(data.x, data.edge_index))


@pytest.mark.parametrize('local', [False, True])
def test_global_attention_block(local):
    data = random_graph(9, 30)
    global_conv = LinearAttentionConv(6, 4, heads=2, num_features=16)
    local_conv = EdgeGATConv(6, 4, heads=2) if local else None
    block = GlobalAttentionBlock(global_conv, local_conv)
    out = block(data.x, data.edge_index)
    expected = global_conv(data.x)
    if local:
        expected = expected + local_conv(data.x, data.edge_index)
    assert torch.allclose(out, expected)
    assert repr(block).startswith('GlobalAttentionBlock(LinearAttentionConv(')
    block.reset_parameters()


def test_output_slice():
    data = random_graph(5, 12)
    conv = DotProductAttentionConv(6, 4, heads=2, concat=False)
    sliced = OutputSlice(conv, 3)
    out = sliced(data.x, data.edge_index)
    assert torch.equal(out, conv(data.x, data.edge_index)[:, :3])
    assert repr(sliced) == f'OutputSlice({conv}, 3)'
