import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import GATConv

from pyg_attn.nn import EdgeGATConv
from pyg_attn.testing import (EDGE_DIM, NUM_FEATURES, assert_batch_independent,
                              assert_bipartite, assert_close,
                              assert_compile_matches_eager,
                              assert_local_attention_properties,
                              assert_reset_parameters, assert_same_function,
                              bipartite_graph, random_graph,
                              reference_attention, small_graphs)

GRAPHS = small_graphs()
CONFIGS = {
    'plain': dict(),
    'edge': dict(edge_dim=EDGE_DIM),
    'edge-mean-residual': dict(edge_dim=EDGE_DIM, concat=False,
                               residual=True),
    'edge-fill-max': dict(edge_dim=EDGE_DIM, fill_value='max', bias=False),
    'edge-fill-value': dict(edge_dim=EDGE_DIM, fill_value=0.5),
    'no-loops': dict(edge_dim=EDGE_DIM, add_self_loops=False),
}


def _pair(kwargs, in_channels=NUM_FEATURES, heads=3, out_channels=4):
    ref = GATConv(in_channels, out_channels, heads=heads, **kwargs)
    conv = EdgeGATConv(in_channels, out_channels, heads=heads, **kwargs)
    conv.load_state_dict(ref.state_dict())
    return conv, ref


@pytest.mark.parametrize('config', CONFIGS, ids=list(CONFIGS))
@pytest.mark.parametrize('graph', ['self_loops', 'zero_in_degree',
                                   'multi_edge', 'random_N23_E101'])
def test_matches_gat_conv(config, graph):
    kwargs = CONFIGS[config]
    data = GRAPHS[graph]
    conv, ref = _pair(kwargs)
    edge_attr = data.edge_attr if 'edge_dim' in kwargs else None
    assert_same_function(conv, ref, data.x, data.edge_index, edge_attr)
    out, (edge_index, alpha) = conv(data.x, data.edge_index, edge_attr,
                                    return_attention_weights=True)
    _, (ref_index, ref_alpha) = ref(data.x, data.edge_index, edge_attr,
                                    return_attention_weights=True)
    # ours keeps the input's self-loops (weight 0) where GATConv drops them
    kept = torch.ones(edge_index.size(1), dtype=torch.bool)
    if conv.add_self_loops:
        num_input = data.num_edges
        kept[:num_input] = data.edge_index[0] != data.edge_index[1]
        assert (alpha[:num_input][~kept[:num_input]] == 0).all()
    assert torch.equal(edge_index[:, kept], ref_index)
    assert_close(alpha[kept], ref_alpha)


@pytest.mark.parametrize('in_channels', [(5, 6), 5], ids=['lin_src-dst',
                                                           'shared-lin'])
@pytest.mark.parametrize('add_self_loops', [True, False])
def test_matches_gat_conv_bipartite(in_channels, add_self_loops):
    num_features = (in_channels, in_channels) if isinstance(
        in_channels, int) else in_channels
    x, edge_index, edge_attr = bipartite_graph(num_features=num_features)
    edge_index[:, 0] = 2  # a self-loop (2, 2) among the bipartite edges
    conv, ref = _pair(dict(edge_dim=EDGE_DIM, residual=True,
                           add_self_loops=add_self_loops), in_channels)
    out = assert_same_function(conv, ref, x, edge_index, edge_attr)
    assert_bipartite(conv, x, edge_index, out.size(1), edge_attr=edge_attr)


def test_edge_in_message_matches_loop_reference():
    data = GRAPHS['multi_edge']
    H, C = 2, 4
    conv = EdgeGATConv(NUM_FEATURES, C, heads=H, edge_dim=EDGE_DIM,
                       add_self_loops=False, edge_in_message=True, bias=False)
    src, dst = data.edge_index
    h = conv.lin(data.x).view(-1, H, C)
    edge_emb = conv.lin_edge(data.edge_attr).view(-1, H, C)
    logits = F.leaky_relu((h[src] * conv.att_src).sum(-1) +
                          (h[dst] * conv.att_dst).sum(-1) +
                          (edge_emb * conv.att_edge).sum(-1), 0.2)
    messages = h[src] + conv.lin_edge_message(data.edge_attr).view(-1, H, C)
    expected = reference_attention(logits, messages, dst, data.num_nodes)
    out = conv(data.x, data.edge_index, data.edge_attr)
    assert_close(out, expected.view(-1, H * C))
    without = EdgeGATConv(NUM_FEATURES, C, heads=H, edge_dim=EDGE_DIM,
                          add_self_loops=False, bias=False)
    without.load_state_dict(conv.state_dict(), strict=False)
    assert not torch.allclose(without(data.x, data.edge_index,
                                      data.edge_attr), out)


@pytest.mark.parametrize('graph', list(GRAPHS))
@pytest.mark.parametrize('edge_in_message', [False, True])
def test_pyg_native_properties(graph, edge_in_message):
    data = GRAPHS[graph]
    conv = EdgeGATConv(NUM_FEATURES, 4, heads=2, edge_dim=EDGE_DIM,
                       edge_in_message=edge_in_message)
    assert_local_attention_properties(conv, data, 8)


def test_batch_independent():
    conv = EdgeGATConv(NUM_FEATURES, 4, heads=2, edge_dim=EDGE_DIM,
                       edge_in_message=True)
    assert_batch_independent(conv, GRAPHS['self_loops'],
                             GRAPHS['random_N11_E37'])


def test_zero_in_degree_without_loops():
    data = GRAPHS['zero_in_degree']  # nodes 0 and 4 have no incoming edge
    conv = EdgeGATConv(NUM_FEATURES, 4, heads=2, add_self_loops=False,
                       bias=False)
    out = conv(data.x, data.edge_index)
    assert torch.isfinite(out).all()
    assert (out[[0, 4]] == 0).all() and (out[1:4].abs().sum(-1) > 0).all()


def test_lazy_in_channels():
    data = GRAPHS['path']
    conv = EdgeGATConv(-1, 4, heads=2, edge_dim=EDGE_DIM, residual=True)
    assert conv(data.x, data.edge_index, data.edge_attr).shape == (5, 8)
    assert conv.lin.weight.shape == (8, NUM_FEATURES)
    x, edge_index, _ = bipartite_graph(num_features=(5, 6))
    assert EdgeGATConv((-1, -1), 4)(x, edge_index).shape == (4, 4)


@pytest.mark.parametrize('edge_in_message', [False, True])
def test_compile_matches_eager(edge_in_message):
    conv = EdgeGATConv(NUM_FEATURES, 4, heads=2, edge_dim=EDGE_DIM,
                       edge_in_message=edge_in_message)
    data = random_graph(13, 40)
    data.edge_index[:, :3] = 4  # existing self-loops to mask
    assert_compile_matches_eager(conv, data)


@pytest.mark.parametrize('dtype', [torch.float64, torch.float16,
                                   torch.bfloat16])
def test_dtypes(dtype):
    data = random_graph(13, 60)
    conv = EdgeGATConv(NUM_FEATURES, 4, heads=2, edge_dim=EDGE_DIM,
                       edge_in_message=True)
    expected = conv(data.x, data.edge_index, data.edge_attr)
    conv = conv.to(dtype)
    x = data.x.to(dtype).requires_grad_()
    out = conv(x, data.edge_index, data.edge_attr.to(dtype))
    assert out.dtype == dtype and torch.isfinite(out).all()
    tol = {torch.float64: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}
    torch.testing.assert_close(out.float(), expected, rtol=tol[dtype],
                               atol=tol[dtype])
    out.float().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_reset_parameters_and_repr():
    conv = EdgeGATConv(NUM_FEATURES, 4, heads=2, edge_dim=3, residual=True,
                       edge_in_message=True)
    assert_reset_parameters(conv)
    assert repr(conv) == 'EdgeGATConv(6, 4, heads=2)'


def test_bad_input():
    data = GRAPHS['path']
    x, edge_index, edge_attr = data.x, data.edge_index, data.edge_attr
    conv = EdgeGATConv(NUM_FEATURES, 4, heads=2, edge_dim=EDGE_DIM)
    with pytest.raises(ValueError, match=r"'heads' \(-1\) must be"):
        EdgeGATConv(NUM_FEATURES, 4, heads=-1)
    with pytest.raises(ValueError, match="'edge_in_message=True' needs"):
        EdgeGATConv(NUM_FEATURES, 4, edge_in_message=True)
    with pytest.raises(ValueError, match="'fill_value' \\('median'\\)"):
        EdgeGATConv(NUM_FEATURES, 4, edge_dim=3, fill_value='median')
    with pytest.raises(ValueError, match=r"shape \[2, num_edges\]"):
        conv(x, edge_index[0], edge_attr)
    with pytest.raises(ValueError, match='integer tensor'):
        conv(x, edge_index.to(torch.float64), edge_attr)
    with pytest.raises(ValueError, match='destination index 9 but there are 5'):
        conv(x, torch.tensor([[0], [9]]), edge_attr[:1])
    with pytest.raises(ValueError, match=r"shape \(9, 3\).*8 edges"):
        conv(x, edge_index, torch.cat([edge_attr, edge_attr[:1]]))
    with pytest.raises(ValueError, match='4 features.*edge_dim=3'):
        conv(x, edge_index, torch.randn(8, 4))
    with pytest.raises(ValueError, match="without 'edge_dim'"):
        EdgeGATConv(NUM_FEATURES, 4)(x, edge_index, edge_attr)
    with pytest.raises(ValueError, match="'x_dst' has 7 features"):
        EdgeGATConv((6, 5), 4)((x, torch.randn(5, 7)), edge_index)
