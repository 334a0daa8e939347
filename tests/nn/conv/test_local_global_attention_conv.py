import pytest
import torch

from pyg_attn.nn import DotProductAttentionConv, LocalGlobalAttentionConv
from pyg_attn.testing import (EDGE_DIM, NUM_FEATURES, assert_alpha_sums_to_one,
                              assert_batch_independent, assert_bipartite,
                              assert_close, assert_compile_matches_eager,
                              assert_edge_permutation_invariant,
                              assert_finite_gradients,
                              assert_node_permutation_equivariant,
                              assert_output_shape, assert_reset_parameters,
                              assert_same_function, bipartite_graph,
                              random_graph, reference_local_global_attention,
                              reference_softmax, small_graphs)


def with_types(data, num_types=3, seed=0):
    """``data`` with a seeded random ``edge_type`` in ``[0, num_types)``."""
    gen = torch.Generator().manual_seed(seed)
    data = data.clone()
    data.edge_type = torch.randint(0, num_types, (data.num_edges, ),
                                   generator=gen)
    return data


GRAPHS = {name: with_types(g, seed=i)
          for i, (name, g) in enumerate(small_graphs().items())}
CONFIGS = {
    'plain': dict(),
    'edge': dict(edge_dim=EDGE_DIM),
    'edge-mean': dict(edge_dim=EDGE_DIM, concat=False),
    'P3-map': dict(num_partitions=3, partition_map=[2, 0, 1]),
    'no-root': dict(root_weight=False, bias=False),
}


class DenseReference(LocalGlobalAttentionConv):
    """The layer with its single-pass attention replaced by separate masked
    attentions, one per edge set (same parameters, same gate)."""
    def _attend(self, query, key, value, edge_attr, edge_index, part,
                num_dst):
        P, H, C = self.num_partitions, self.heads, self.out_channels
        edge_emb = None
        if edge_attr is not None:
            edge_emb = self.lin_edge(edge_attr).view(-1, P, H, C)
        out = reference_local_global_attention(
            query.view(-1, P, H, C), key.view(-1, P, H, C),
            value.view(-1, P, H, C), edge_index, part, num_dst, edge_emb)
        return out, None


def _pair(kwargs, in_channels=NUM_FEATURES, heads=3, out_channels=4):
    conv = LocalGlobalAttentionConv(in_channels, out_channels, heads=heads,
                                    **kwargs)
    ref = DenseReference(in_channels, out_channels, heads=heads, **kwargs)
    ref.load_state_dict(conv.state_dict())
    return conv, ref


@pytest.mark.parametrize('config', CONFIGS, ids=list(CONFIGS))
@pytest.mark.parametrize('graph', ['zero_in_degree', 'multi_edge',
                                   'random_N23_E101'])
def test_matches_separate_masked_attentions(graph, config):
    kwargs = CONFIGS[config]
    data = GRAPHS[graph]
    conv, ref = _pair(kwargs)
    edge_attr = data.edge_attr if 'edge_dim' in kwargs else None
    assert_same_function(conv, ref, data.x, data.edge_index, data.edge_type,
                         edge_attr)


def test_bipartite_matches_reference():
    x, edge_index, edge_attr = bipartite_graph(num_features=(5, 6))
    edge_type = torch.arange(edge_index.size(1)) % 2
    conv, ref = _pair(dict(edge_dim=EDGE_DIM), (5, 6))
    out = assert_same_function(conv, ref, x, edge_index, edge_type, edge_attr)
    assert_bipartite(conv, x, edge_index, out.size(1), edge_type=edge_type,
                     edge_attr=edge_attr)


def test_gate_mixes_local_and_global_by_a_sigmoid():
    """x'_i = W_s x_i + g h_local + (1 - g) h_global, g = sigmoid(W [..]),
    written out by hand."""
    data = GRAPHS['random_N11_E37']
    conv = LocalGlobalAttentionConv(NUM_FEATURES, 4, heads=2).double()
    x = data.x.double()
    H, C = 2, 4
    q, k, v = (lin(x).view(-1, 2, H, C)
               for lin in (conv.lin_query, conv.lin_key, conv.lin_value))
    part = data.edge_type.clamp(max=1)
    h = reference_local_global_attention(q, k, v, data.edge_index, part,
                                         data.num_nodes)  # [N, 2, H, C]
    h_local, h_global = h[:, 0].reshape(-1, H * C), h[:, 1].reshape(-1, H * C)
    g = torch.sigmoid(conv.lin_gate(torch.cat([h_local, h_global], -1)))
    expected = conv.lin_skip(x) + g * h_local + (1 - g) * h_global
    assert_close(conv(x, data.edge_index, data.edge_type), expected)


def test_missing_partition_gives_zero_not_nan():
    # node 1: local edges only; node 2: global only; node 3: no edges
    edge_index = torch.tensor([[0, 2, 0, 1], [1, 1, 2, 0]])
    edge_type = torch.tensor([0, 0, 4, 1])
    x = torch.randn(4, NUM_FEATURES)
    conv = LocalGlobalAttentionConv(NUM_FEATURES, 4, heads=2,
                                    root_weight=False, bias=False)
    q, k, v = (lin(x).view(-1, 2, 2, 4)
               for lin in (conv.lin_query, conv.lin_key, conv.lin_value))
    h = reference_local_global_attention(q, k, v, edge_index,
                                         edge_type.clamp(max=1), 4)
    assert (h[1, 1] == 0).all() and (h[2, 0] == 0).all()
    out = conv(x, edge_index, edge_type)
    assert torch.isfinite(out).all()
    assert (out[3] == 0).all()
    g = torch.sigmoid(conv.lin_gate(h.reshape(4, -1)))
    assert_close(out[1], g[1] * h[1, 0].reshape(-1))
    assert_close(out[2], (1 - g[2]) * h[2, 1].reshape(-1))


@pytest.mark.parametrize('graph', ['multi_edge', 'isolated_node',
                                   'random_N23_E101'])
def test_alpha_sums_to_one_per_destination_and_partition(graph):
    data = GRAPHS[graph]
    conv = LocalGlobalAttentionConv(NUM_FEATURES, 4, heads=2,
                                    edge_dim=EDGE_DIM, num_partitions=3).eval()
    out, (edge_index, alpha) = conv(data.x, data.edge_index, data.edge_type,
                                    data.edge_attr,
                                    return_attention_weights=True)
    assert edge_index is data.edge_index and alpha.shape == (data.num_edges,
                                                             2)
    group = data.edge_index[1] * 3 + data.edge_type  # (destination, partition)
    sums = alpha.new_zeros(data.num_nodes * 3, 2).index_add_(0, group, alpha)
    has_edges = torch.zeros(data.num_nodes * 3, dtype=torch.bool)
    has_edges[group] = True
    assert_close(sums[has_edges], torch.ones_like(sums[has_edges]))
    assert (sums[~has_edges] == 0).all()
    # the weights are each group's softmax of the per-partition logits
    H, C = 2, 4
    q = conv.lin_query(data.x).view(-1, 3, H, C)
    k = conv.lin_key(data.x).view(-1, 3, H, C)
    e = conv.lin_edge(data.edge_attr).view(-1, 3, H, C)
    src, dst, p = data.edge_index[0], data.edge_index[1], data.edge_type
    logits = (q[dst, p] * (k[src, p] + e[torch.arange(len(p)), p])).sum(-1)
    expected = reference_softmax(logits / C**0.5, group, data.num_nodes * 3)
    assert_close(alpha, expected.float())


@pytest.mark.parametrize('graph', list(GRAPHS))
def test_pyg_native_properties(graph):
    data = GRAPHS[graph]
    conv = LocalGlobalAttentionConv(NUM_FEATURES, 4, heads=2,
                                    edge_dim=EDGE_DIM)
    assert_output_shape(conv, data, 8)
    assert_edge_permutation_invariant(conv, data)
    assert_node_permutation_equivariant(conv, data)
    assert_finite_gradients(conv, data)
    local_only = data.clone()
    local_only.edge_type = torch.zeros_like(data.edge_type)
    assert_alpha_sums_to_one(conv, local_only)


def test_batch_independent():
    conv = LocalGlobalAttentionConv(NUM_FEATURES, 4, heads=2,
                                    edge_dim=EDGE_DIM)
    assert_batch_independent(conv, GRAPHS['path'], GRAPHS['random_N11_E37'])


class FixedTypes(LocalGlobalAttentionConv):
    def forward(self, x, edge_index, edge_attr=None):
        edge_type = torch.zeros(edge_index.size(1), dtype=torch.long)
        return super().forward(x, edge_index, edge_type, edge_attr)


@pytest.mark.parametrize('kwargs', [dict(), dict(edge_dim=EDGE_DIM,
                                                 concat=False)],
                         ids=['plain', 'edge-mean'])
def test_one_partition_is_dot_product_attention(kwargs):
    data = GRAPHS['random_N23_E101']
    ref = DotProductAttentionConv(NUM_FEATURES, 4, heads=3, **kwargs)
    conv = FixedTypes(NUM_FEATURES, 4, heads=3, num_partitions=1, **kwargs)
    conv.load_state_dict(ref.state_dict())
    edge_attr = data.edge_attr if kwargs else None
    assert_same_function(conv, ref, data.x, data.edge_index, edge_attr)


def test_compile_matches_eager():
    data = with_types(random_graph(13, 40), num_types=4)
    conv = LocalGlobalAttentionConv(NUM_FEATURES, 4, heads=2,
                                    edge_dim=EDGE_DIM, num_partitions=3,
                                    partition_map=[0, 1, 1, 2])
    assert_compile_matches_eager(conv, data)


def test_lazy_in_channels():
    data = GRAPHS['path']
    conv = LocalGlobalAttentionConv(-1, 4, heads=2)
    assert conv(data.x, data.edge_index, data.edge_type).shape == (5, 8)
    assert conv.lin_query.weight.shape == (16, NUM_FEATURES)


@pytest.mark.parametrize('dtype', [torch.float64, torch.bfloat16])
def test_dtypes(dtype):
    data = GRAPHS['random_N23_E101']
    conv = LocalGlobalAttentionConv(NUM_FEATURES, 4, heads=2,
                                    edge_dim=EDGE_DIM)
    expected = conv(data.x, data.edge_index, data.edge_type, data.edge_attr)
    conv = conv.to(dtype)
    x = data.x.to(dtype).requires_grad_()
    out = conv(x, data.edge_index, data.edge_type, data.edge_attr.to(dtype))
    assert out.dtype == dtype
    tol = {torch.float64: 1e-5, torch.bfloat16: 5e-2}[dtype]
    torch.testing.assert_close(out.float(), expected, rtol=tol, atol=tol)
    out.float().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_reset_parameters_and_repr():
    conv = LocalGlobalAttentionConv(NUM_FEATURES, 4, heads=2, edge_dim=3,
                                    num_partitions=3)
    assert_reset_parameters(conv)
    assert repr(conv) == ('LocalGlobalAttentionConv(6, 4, heads=2, '
                          'num_partitions=3)')


def test_bad_input():
    data = GRAPHS['path']
    x, edge_index, edge_type = data.x, data.edge_index, data.edge_type
    conv = LocalGlobalAttentionConv(NUM_FEATURES, 4, heads=2)
    with pytest.raises(ValueError, match="'edge_type' is required.*zeros"):
        conv(x, edge_index)
    with pytest.raises(ValueError, match='integer tensor, got torch.float32'
                       '.*long'):
        conv(x, edge_index, edge_type.float())
    with pytest.raises(ValueError, match=r"shape \(7,\).*8 edges"):
        conv(x, edge_index, edge_type[:7])
    with pytest.raises(ValueError, match="has type -1; types must be >= 0"):
        conv(x, edge_index, edge_type - 1)
    mapped = LocalGlobalAttentionConv(NUM_FEATURES, 4, partition_map=[0, 1])
    with pytest.raises(ValueError, match=r"type 2 but 'partition_map' covers "
                       r"types \[0, 2\)"):
        mapped(x, edge_index, torch.full_like(edge_type, 2))
    with pytest.raises(ValueError, match=r"'partition_map' \(\[0, 2\]\).*"
                       r"\[0, 2\)"):
        LocalGlobalAttentionConv(NUM_FEATURES, 4, partition_map=[0, 2])
    with pytest.raises(ValueError, match=r"'num_partitions' \(0\)"):
        LocalGlobalAttentionConv(NUM_FEATURES, 4, num_partitions=0)
    with pytest.raises(ValueError, match=r"'heads' \(0\) must be"):
        LocalGlobalAttentionConv(NUM_FEATURES, 4, heads=0)
    with pytest.raises(ValueError, match='source index 5 but there are 5'):
        conv(x, torch.tensor([[5], [0]]), edge_type[:1])
    with pytest.raises(ValueError, match="without 'edge_dim'"):
        conv(x, edge_index, edge_type, data.edge_attr)
