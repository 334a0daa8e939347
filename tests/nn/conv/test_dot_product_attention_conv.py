import pytest
import torch
from torch_geometric.nn import TransformerConv

from pyg_attn.nn import DotProductAttentionConv
from pyg_attn.testing import (EDGE_DIM, NUM_FEATURES, assert_batch_independent,
                              assert_bipartite, assert_close,
                              assert_compile_matches_eager,
                              assert_local_attention_properties,
                              assert_reset_parameters, assert_same_function,
                              bipartite_graph, random_graph,
                              reference_dot_product_attention, small_graphs)

GRAPHS = small_graphs()
CONFIGS = {
    'plain': dict(),
    'edge': dict(edge_dim=EDGE_DIM),
    'edge-mean-beta': dict(edge_dim=EDGE_DIM, concat=False, beta=True),
    'no-root': dict(root_weight=False, bias=False),
}


def _pair(kwargs, in_channels=NUM_FEATURES, heads=3, out_channels=4):
    ref = TransformerConv(in_channels, out_channels, heads=heads, **kwargs)
    conv = DotProductAttentionConv(in_channels, out_channels, heads=heads,
                                   **kwargs)
    conv.load_state_dict(ref.state_dict())
    return conv, ref


@pytest.mark.parametrize('config', CONFIGS, ids=list(CONFIGS))
@pytest.mark.parametrize('graph', ['multi_edge', 'zero_in_degree',
                                   'random_N23_E101'])
def test_matches_transformer_conv(config, graph):
    kwargs = CONFIGS[config]
    data = GRAPHS[graph]
    conv, ref = _pair(kwargs)
    edge_attr = data.edge_attr if 'edge_dim' in kwargs else None
    assert_same_function(conv, ref, data.x, data.edge_index, edge_attr)
    out, (edge_index, alpha) = conv(data.x, data.edge_index, edge_attr,
                                    return_attention_weights=True)
    _, (_, expected_alpha) = ref(data.x, data.edge_index, edge_attr,
                                 return_attention_weights=True)
    assert_close(alpha, expected_alpha)
    assert edge_index is data.edge_index


@pytest.mark.parametrize('concat', [True, False])
def test_matches_transformer_conv_bipartite(concat):
    x, edge_index, edge_attr = bipartite_graph(num_features=(5, 6))
    conv, ref = _pair(dict(edge_dim=EDGE_DIM, concat=concat), (5, 6))
    out = assert_same_function(conv, ref, x, edge_index, edge_attr)
    assert_bipartite(conv, x, edge_index, out.size(1), edge_attr=edge_attr)


def test_matches_loop_reference():
    data = GRAPHS['multi_edge']
    conv = DotProductAttentionConv(NUM_FEATURES, 4, heads=2,
                                   edge_dim=EDGE_DIM, root_weight=False)
    H, C = 2, 4
    query = conv.lin_query(data.x).view(-1, H, C)
    key = conv.lin_key(data.x).view(-1, H, C)
    value = conv.lin_value(data.x).view(-1, H, C)
    edge_emb = conv.lin_edge(data.edge_attr).view(-1, H, C)
    expected = reference_dot_product_attention(query, key, value,
                                               data.edge_index, data.num_nodes,
                                               edge_emb)
    out = conv(data.x, data.edge_index, data.edge_attr)
    assert_close(out, expected.view(-1, H * C))


@pytest.mark.parametrize('graph', list(GRAPHS))
def test_pyg_native_properties(graph):
    data = GRAPHS[graph]
    conv = DotProductAttentionConv(NUM_FEATURES, 4, heads=2,
                                   edge_dim=EDGE_DIM)
    assert_local_attention_properties(conv, data, 8)


def test_batch_independent():
    conv = DotProductAttentionConv(NUM_FEATURES, 4, heads=2,
                                   edge_dim=EDGE_DIM)
    assert_batch_independent(conv, GRAPHS['path'], GRAPHS['random_N11_E37'])


def test_zero_in_degree_gets_zero_aggregation():
    data = GRAPHS['zero_in_degree']  # nodes 0 and 4 have no incoming edge
    conv = DotProductAttentionConv(NUM_FEATURES, 4, heads=2, root_weight=False,
                                   bias=False)
    out = conv(data.x, data.edge_index)
    assert torch.isfinite(out).all()
    assert (out[[0, 4]] == 0).all() and (out[1:4].abs().sum(-1) > 0).all()


def test_lazy_in_channels():
    data = GRAPHS['path']
    conv = DotProductAttentionConv(-1, 4, heads=2, edge_dim=EDGE_DIM)
    out = conv(data.x, data.edge_index, data.edge_attr)
    assert out.shape == (data.num_nodes, 8)
    assert conv.lin_query.weight.shape == (8, NUM_FEATURES)
    lazy_bipartite = DotProductAttentionConv((-1, -1), 4)
    x, edge_index, _ = bipartite_graph(num_features=(5, 6))
    assert lazy_bipartite(x, edge_index).shape == (4, 4)


def test_compile_matches_eager():
    conv = DotProductAttentionConv(NUM_FEATURES, 4, heads=2,
                                   edge_dim=EDGE_DIM, beta=True)
    assert_compile_matches_eager(conv, random_graph(13, 40))


@pytest.mark.parametrize('dtype', [torch.float64, torch.float16,
                                   torch.bfloat16])
def test_dtypes(dtype):
    data = random_graph(13, 60)
    conv = DotProductAttentionConv(NUM_FEATURES, 4, heads=2,
                                   edge_dim=EDGE_DIM)
    expected = conv(data.x, data.edge_index, data.edge_attr)
    conv = conv.to(dtype)
    x = data.x.to(dtype).requires_grad_()
    out, (_, alpha) = conv(x, data.edge_index, data.edge_attr.to(dtype),
                           return_attention_weights=True)
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert alpha.dtype == (dtype if dtype == torch.float64 else torch.float32)
    tol = {torch.float64: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}
    torch.testing.assert_close(out.float(), expected, rtol=tol[dtype],
                               atol=tol[dtype])
    out.float().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_reset_parameters_and_repr():
    conv = DotProductAttentionConv(NUM_FEATURES, 4, heads=2, edge_dim=3,
                                   beta=True)
    assert_reset_parameters(conv)
    assert repr(conv) == 'DotProductAttentionConv(6, 4, heads=2)'


def test_bad_input():
    data = GRAPHS['path']
    x, edge_index, edge_attr = data.x, data.edge_index, data.edge_attr
    conv = DotProductAttentionConv(NUM_FEATURES, 4, heads=2, edge_dim=EDGE_DIM)
    with pytest.raises(ValueError, match=r"'heads' \(0\) must be"):
        DotProductAttentionConv(NUM_FEATURES, 4, heads=0)
    with pytest.raises(ValueError, match=r"shape \[2, num_edges\].*transpose"):
        conv(x, edge_index.t(), edge_attr)
    with pytest.raises(ValueError, match='integer tensor.*long'):
        conv(x, edge_index.float(), edge_attr)
    with pytest.raises(ValueError, match='source index 5 but there are 5'):
        conv(x, torch.tensor([[5], [0]]), edge_attr[:1])
    with pytest.raises(ValueError, match='destination index -1'):
        conv(x, torch.tensor([[0], [-1]]), edge_attr[:1])
    with pytest.raises(ValueError, match=r"shape \(7, 3\).*8 edges"):
        conv(x, edge_index, edge_attr[:7])
    with pytest.raises(ValueError, match='2 features.*edge_dim=3'):
        conv(x, edge_index, edge_attr[:, :2])
    with pytest.raises(ValueError, match='no .edge_attr. was given'):
        conv(x, edge_index)
    with pytest.raises(ValueError, match="without 'edge_dim'.*edge_dim=3"):
        DotProductAttentionConv(NUM_FEATURES, 4)(x, edge_index, edge_attr)
    with pytest.raises(ValueError, match="'x_src' has 5 features.*in_chan"):
        conv(x[:, :5], edge_index, edge_attr)
