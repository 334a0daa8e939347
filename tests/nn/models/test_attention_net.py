import pytest
import torch
from torch_geometric.nn import GATConv, GCNConv, TransformerConv

from pyg_attn.nn import (AttentionNet, DotProductAttentionConv, EdgeGATConv,
                         FlashAttentionConv)

# FlashAttentionConv forwards **kwargs to DotProductAttentionConv: its heads,
# concat and dropout must still reach it
ATTENTION_CONVS = [EdgeGATConv, DotProductAttentionConv, FlashAttentionConv,
                   GATConv, TransformerConv]


def graph(num_nodes=6, num_edges=12, in_channels=5, edge_dim=3):
    x = torch.randn(num_nodes, in_channels)
    edge_index = torch.randint(num_nodes, (2, num_edges))
    edge_attr = torch.randn(num_edges, edge_dim)
    return x, edge_index, edge_attr


@pytest.mark.parametrize('conv', ATTENTION_CONVS + [GCNConv],
                         ids=lambda c: c.__name__)
@pytest.mark.parametrize('num_layers', [1, 2, 3])
def test_attention_net_shapes(conv, num_layers):
    x, edge_index, _ = graph()
    model = AttentionNet(5, 4, 3, num_layers=num_layers, conv=conv, heads=2)
    assert model(x, edge_index).shape == (6, 3)
    assert isinstance(model.convs[0], conv)


@pytest.mark.parametrize('conv', ATTENTION_CONVS, ids=lambda c: c.__name__)
def test_attention_net_heads(conv):
    model = AttentionNet(5, 4, 3, num_layers=3, conv=conv, heads=2,
                         out_heads=3, dropout=0.1)
    assert [c.heads for c in model.convs] == [2, 2, 3]
    assert [c.concat for c in model.convs] == [True, True, False]
    assert [c.in_channels for c in model.convs] == [5, 8, 8]
    assert all(c.dropout == 0.1 for c in model.convs)


def test_attention_net_gcn_width():
    model = AttentionNet(5, 4, 3, num_layers=3, conv=GCNConv, heads=2)
    assert [(c.in_channels, c.out_channels) for c in model.convs] == [
        (5, 4), (4, 4), (4, 3)]


@pytest.mark.parametrize('conv', ATTENTION_CONVS, ids=lambda c: c.__name__)
def test_attention_net_edge_dim(conv):
    x, edge_index, edge_attr = graph()
    model = AttentionNet(5, 4, 3, conv=conv, heads=2, edge_dim=3).eval()
    out = model(x, edge_index, edge_attr)
    assert out.shape == (6, 3)
    assert not torch.allclose(out, model(x, edge_index, edge_attr + 1))


def test_attention_net_edge_dim_unsupported():
    with pytest.raises(ValueError, match="'edge_dim' \\(3\\) is set"):
        AttentionNet(5, 4, 3, conv=GCNConv, edge_dim=3)


def test_attention_net_num_layers():
    with pytest.raises(ValueError, match="'num_layers' \\(0\\)"):
        AttentionNet(5, 4, 3, num_layers=0)


@pytest.mark.parametrize('norm', [None, 'layer', 'batch'])
@pytest.mark.parametrize('conv', [EdgeGATConv, DotProductAttentionConv,
                                  GCNConv], ids=lambda c: c.__name__)
def test_attention_net_residual_norm(conv, norm):
    x, edge_index, _ = graph()
    model = AttentionNet(5, 4, 3, num_layers=3, conv=conv, heads=2,
                         residual=True, norm=norm)
    out = model(x, edge_index)
    assert out.shape == (6, 3)
    out.sum().backward()
    assert all(p.grad is not None and p.grad.isfinite().all()
               for p in model.parameters())


def test_attention_net_factory_and_conv_kwargs():
    def factory(in_channels, out_channels, **kwargs):
        return TransformerConv(in_channels, out_channels, **kwargs)

    x, edge_index, _ = graph()
    model = AttentionNet(5, 4, 3, conv=factory, heads=2,
                         conv_kwargs=dict(beta=True, root_weight=True))
    assert all(c.beta for c in model.convs)
    assert model.convs[0].heads == 2 and model.convs[1].heads == 1
    assert model(x, edge_index).shape == (6, 3)


def test_attention_net_dropout():
    x, edge_index, _ = graph()
    model = AttentionNet(5, 4, 3, heads=2, dropout=0.5)
    assert not torch.allclose(model(x, edge_index), model(x, edge_index))
    model.eval()
    assert torch.allclose(model(x, edge_index), model(x, edge_index))


def test_attention_net_reset_parameters():
    x, edge_index, _ = graph()
    model = AttentionNet(5, 4, 3, heads=2, residual=True).eval()
    out = model(x, edge_index)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    model.reset_parameters()
    assert all(p.abs().sum() > 0 for p in model.parameters() if p.dim() > 1)
    assert not torch.allclose(model(x, edge_index), out)


def test_attention_net_repr():
    model = AttentionNet(1433, 8, 7)
    assert str(model) == ('AttentionNet(1433, 7, num_layers=2, '
                          'conv=EdgeGATConv, heads=8)')
    model = AttentionNet(16, 8, 3, conv=GCNConv)
    assert str(model) == 'AttentionNet(16, 3, num_layers=2, conv=GCNConv, heads=8)'


@pytest.mark.parametrize('num_layers', [2, 3])
@pytest.mark.parametrize('conv', ATTENTION_CONVS, ids=lambda c: c.__name__)
def test_attention_net_hop_by_hop(conv, num_layers):
    # On a NeighborLoader batch with every in-edge, the bipartite hop-by-hop
    # stack gives the seeds the full-graph outputs and gradients.
    from pyg_attn.loader import NeighborLoader
    from pyg_attn.testing import random_graph
    data = random_graph(80, 120, num_features=5, edge_dim=3, seed=4)
    model = AttentionNet(5, 4, 3, num_layers=num_layers, conv=conv, heads=2,
                         edge_dim=3, residual=True, norm='layer',
                         norm_kwargs=dict(mode='node')).eval()
    batch = next(iter(NeighborLoader(data, [-1] * num_layers, batch_size=4,
                                     input_nodes=torch.tensor([3, 0, 7, 11]))))
    assert batch.num_sampled_nodes[-1] > 0  # the last hop reaches new nodes
    assert batch.num_nodes < data.num_nodes  # a true subgraph
    x = data.x.clone().requires_grad_()
    full = model(x, data.edge_index, data.edge_attr)[batch.n_id[:4]]
    x_batch = x[batch.n_id]
    out = model(x_batch, batch.edge_index, batch.edge_attr,
                num_sampled_nodes_per_hop=batch.num_sampled_nodes,
                num_sampled_edges_per_hop=batch.num_sampled_edges)
    assert out.shape == (4, 3)
    torch.testing.assert_close(out, full)
    grad, = torch.autograd.grad(out.square().sum(), x)
    expected, = torch.autograd.grad(full.square().sum(), x)
    torch.testing.assert_close(grad, expected)
    assert grad[batch.n_id[batch.num_sampled_nodes[0]:]].abs().sum() > 0


def test_attention_net_hop_errors():
    x, edge_index, _ = graph()
    model = AttentionNet(5, 4, 3, num_layers=2, heads=2)
    with pytest.raises(ValueError, match='go together; pass both'):
        model(x, edge_index, num_sampled_nodes_per_hop=[2, 2, 2])
    with pytest.raises(ValueError, match=r"1 hop\(s\).*2 layers.*2 entries"):
        model(x, edge_index, num_sampled_nodes_per_hop=[2, 4],
              num_sampled_edges_per_hop=[12])
    # e.g. a SparseTensor (torch-sparse): no hop order to cut
    with pytest.raises(ValueError, match=r"\[2, E\] tensor.*got list"):
        model(x, edge_index.tolist(), num_sampled_nodes_per_hop=[2, 2, 2],
              num_sampled_edges_per_hop=[6, 6])
