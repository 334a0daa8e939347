import pytest
import torch

import pyg_attn.functional.recompute as recompute_module
from pyg_attn.functional import sparse
from pyg_attn.nn import DotProductAttentionConv, RotaryAttentionConv
from pyg_attn.testing import (EDGE_DIM, NUM_FEATURES, assert_batch_independent,
                              assert_bipartite, assert_close,
                              assert_compile_matches_eager,
                              assert_local_attention_properties,
                              assert_reset_parameters, assert_same_function,
                              bipartite_graph, random_graph,
                              reference_rotary_attention, small_graphs)


def with_positions(data, pos_dim=2, seed=0):
    """``data`` with seeded ``edge_pos`` ``[E, pos_dim]``: hop-like integers
    in the first component, reals after."""
    gen = torch.Generator().manual_seed(seed)
    data = data.clone()
    pos = torch.randn(data.num_edges, pos_dim, generator=gen) * 3
    pos[:, 0] = torch.randint(0, 4, (data.num_edges, ), generator=gen)
    data.edge_pos = pos
    return data


GRAPHS = {name: with_positions(g, seed=i)
          for i, (name, g) in enumerate(small_graphs().items())}
CONFIGS = {
    'plain': dict(),
    'edge': dict(edge_dim=EDGE_DIM),
    'edge-mean-beta': dict(edge_dim=EDGE_DIM, concat=False, beta=True),
    'edge-rotate-value': dict(edge_dim=EDGE_DIM, rotate_value=True),
}


class ZeroPositions(RotaryAttentionConv):
    """Called as DotProductAttentionConv is; every position zero."""
    def __init__(self, *args, mode='edge', **kwargs):
        super().__init__(*args, **kwargs)
        self.mode = mode

    def forward(self, x, edge_index, edge_attr=None):
        if self.mode == 'edge':
            pos = torch.zeros(edge_index.size(1), self.pos_dim)
            return super().forward(x, edge_index, edge_attr, edge_pos=pos)
        num_nodes = x[0].size(0) if isinstance(x, tuple) else x.size(0)
        pos = torch.zeros(num_nodes, self.pos_dim)
        if isinstance(x, tuple):
            pos = (pos, torch.zeros(x[1].size(0), self.pos_dim))
        return super().forward(x, edge_index, edge_attr, node_pos=pos)


@pytest.mark.parametrize('mode', ['edge', 'node'])
@pytest.mark.parametrize('config', CONFIGS, ids=list(CONFIGS))
@pytest.mark.parametrize('graph', ['zero_in_degree', 'random_N23_E101'])
def test_zero_positions_equal_dot_product(graph, config, mode):
    kwargs = dict(CONFIGS[config])
    rotate_value = kwargs.pop('rotate_value', False)
    data = GRAPHS[graph]
    ref = DotProductAttentionConv(NUM_FEATURES, 4, heads=3, **kwargs)
    conv = ZeroPositions(NUM_FEATURES, 4, heads=3, pos_dim=2, mode=mode,
                         rotate_value=rotate_value, **kwargs)
    conv.load_state_dict(ref.state_dict())
    edge_attr = data.edge_attr if 'edge_dim' in kwargs else None
    assert_same_function(conv, ref, data.x, data.edge_index, edge_attr)


@pytest.mark.parametrize('mode', ['edge', 'node'])
def test_zero_positions_equal_dot_product_bipartite(mode):
    x, edge_index, edge_attr = bipartite_graph(num_features=(5, 6))
    ref = DotProductAttentionConv((5, 6), 4, heads=3, edge_dim=EDGE_DIM)
    conv = ZeroPositions((5, 6), 4, heads=3, mode=mode, edge_dim=EDGE_DIM)
    conv.load_state_dict(ref.state_dict())
    assert_same_function(conv, ref, x, edge_index, edge_attr)


def _projections(conv, x):
    H, C = conv.heads, conv.out_channels
    return (lin(x).view(-1, H, C)
            for lin in (conv.lin_query, conv.lin_key, conv.lin_value))


DENSE = {  # pos_dim, mode, rotate_value, edge_dim, out_channels, rotary_dim
    'P1-edge': (1, 'edge', False, None, 6, None),
    'P2-edge-value-attr': (2, 'edge', True, EDGE_DIM, 6, None),
    'P3-node': (3, 'node', False, None, 6, None),
    'P2-node-value': (2, 'node', True, EDGE_DIM, 6, None),
    'P2-both-value': (2, 'both', True, None, 6, None),
    'P1-both-attr': (1, 'both', False, EDGE_DIM, 6, None),
    'C7-rot4-P2-both-value': (2, 'both', True, EDGE_DIM, 7, 4),
}


@pytest.mark.parametrize('case', DENSE, ids=list(DENSE))
def test_matches_dense_rope_reference(case):
    pos_dim, mode, rotate_value, edge_dim, C, rotary_dim = DENSE[case]
    data = GRAPHS['random_N11_E37']
    conv = RotaryAttentionConv(NUM_FEATURES, C, heads=2, pos_dim=pos_dim,
                               base=20.0, rotate_value=rotate_value,
                               edge_dim=edge_dim, root_weight=False,
                               rotary_dim=rotary_dim).double()
    gen = torch.Generator().manual_seed(1)
    edge_pos = node_pos = None
    if mode in ('edge', 'both'):
        edge_pos = torch.randn(data.num_edges, pos_dim, generator=gen,
                               dtype=torch.float64) * 4
    if mode in ('node', 'both'):
        node_pos = torch.randn(data.num_nodes, pos_dim, generator=gen,
                               dtype=torch.float64) * 4
    edge_attr = data.edge_attr.double() if edge_dim else None
    edge_emb = None
    x = data.x.double().requires_grad_()
    out = conv(x, data.edge_index, edge_attr, edge_pos, node_pos)
    x_ref = data.x.double().requires_grad_()
    if edge_dim:
        edge_emb = conv.lin_edge(edge_attr).view(-1, 2, C)
    expected = reference_rotary_attention(
        *_projections(conv, x_ref), data.edge_index, data.num_nodes,
        edge_pos, node_pos, base=20.0, rotate_value=rotate_value,
        edge_emb=edge_emb, rotary_dim=rotary_dim).reshape(-1, 2 * C)
    assert_close(out, expected)
    grad = torch.randn_like(out)
    (g, ) = torch.autograd.grad(out, x, grad)
    (g_ref, ) = torch.autograd.grad(expected, x_ref, grad)
    assert_close(g, g_ref)


@pytest.mark.parametrize('rotate_value', [False, True])
def test_node_positions_are_relative(rotate_value):
    """Node mode depends on p_j - p_i only: shifting every position changes
    nothing, and it equals edge mode with edge_pos = p_src - p_dst."""
    data = GRAPHS['random_N23_E101']
    conv = RotaryAttentionConv(NUM_FEATURES, 8, heads=2, pos_dim=2,
                               base=30.0, rotate_value=rotate_value,
                               edge_dim=EDGE_DIM).double().eval()
    x, edge_attr = data.x.double(), data.edge_attr.double()
    node_pos = torch.randn(data.num_nodes, 2, dtype=torch.float64) * 5
    out, (_, alpha) = conv(x, data.edge_index, edge_attr, node_pos=node_pos,
                           return_attention_weights=True)
    shift = torch.tensor([[13.0, -4.5]], dtype=torch.float64)
    out_shifted, (_, alpha_shifted) = conv(
        x, data.edge_index, edge_attr, node_pos=node_pos + shift,
        return_attention_weights=True)
    assert_close(out_shifted, out)
    assert_close(alpha_shifted, alpha)
    src, dst = data.edge_index
    edge_pos = node_pos[src] - node_pos[dst]
    assert_close(conv(x, data.edge_index, edge_attr, edge_pos=edge_pos), out)
    unshifted = conv(x, data.edge_index, edge_attr,
                     edge_pos=torch.zeros_like(edge_pos))
    assert not torch.allclose(unshifted, out)


def test_rotation_preserves_value_norms():
    # each destination has one incoming edge: its output is R(theta) v_j
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
    x = torch.randn(4, NUM_FEATURES, dtype=torch.float64)
    conv = RotaryAttentionConv(NUM_FEATURES, 8, heads=2, rotate_value=True,
                               root_weight=False).double()
    zero = conv(x, edge_index, edge_pos=torch.zeros(4))
    pos = torch.tensor([1.0, 7.0, 50.0, 1e3])
    out = conv(x, edge_index, edge_pos=pos)
    assert not torch.allclose(out, zero)
    assert_close(out.view(4, 2, 8).norm(dim=-1),
                 zero.view(4, 2, 8).norm(dim=-1))


@pytest.mark.parametrize('graph', list(GRAPHS))
def test_pyg_native_properties(graph):
    conv = RotaryAttentionConv(NUM_FEATURES, 4, heads=2, pos_dim=2,
                               edge_dim=EDGE_DIM, rotate_value=True)
    assert_local_attention_properties(conv, GRAPHS[graph], 8)


def test_batch_independent():
    conv = RotaryAttentionConv(NUM_FEATURES, 4, heads=2, pos_dim=2,
                               edge_dim=EDGE_DIM)
    assert_batch_independent(conv, GRAPHS['path'], GRAPHS['random_N11_E37'])


def test_bipartite():
    x, edge_index, edge_attr = bipartite_graph(num_features=(5, 6))
    conv = RotaryAttentionConv((5, 6), 4, heads=2, edge_dim=EDGE_DIM)
    node_pos = (torch.randn(7, 1), torch.randn(4, 1))
    assert_bipartite(conv, x, edge_index, 8, edge_attr=edge_attr,
                     edge_pos=torch.randn(edge_index.size(1)),
                     node_pos=node_pos)


class FeaturePositions(RotaryAttentionConv):
    """Node positions from the first two features (so gradients flow
    through the angles), edge positions from the data."""
    def forward(self, x, edge_index, edge_attr=None, edge_pos=None):
        return super().forward(x, edge_index, edge_attr, edge_pos,
                               node_pos=x[:, :2])


@pytest.mark.parametrize('rotate_value', [False, True])
def test_edge_chunks_match_one_chunk(monkeypatch, chunk_steps, rotate_value):
    """Rotated keys and values are made a chunk of edges at a time and made
    again in backward: 7 edges per chunk (fewer than the 23 nodes) gives the
    output and the gradients, of the features and of every parameter, that
    one chunk of all 101 edges gives."""
    data = GRAPHS['random_N23_E101']
    conv = FeaturePositions(NUM_FEATURES, 4, heads=2, pos_dim=2,
                            edge_dim=EDGE_DIM, rotate_value=rotate_value,
                            learnable_freqs=True)
    params = list(conv.parameters())
    grad = torch.randn(data.num_nodes, 8)

    def run():
        x = data.x.clone().requires_grad_()
        out = conv(x, data.edge_index, data.edge_attr, data.edge_pos)
        return (out, ) + torch.autograd.grad(out, [x] + params, grad)

    expected = run()
    steps = chunk_steps(recompute_module)
    monkeypatch.setattr(sparse, 'CHUNK_ELEMENTS', 7 * 2 * 4)  # 7 edges
    for ours, theirs in zip(run(), expected):
        assert_close(ours, theirs)
    assert steps and set(steps) == {(101, 7)}


def test_compile_matches_eager():
    conv = FeaturePositions(NUM_FEATURES, 4, heads=2, pos_dim=2,
                            edge_dim=EDGE_DIM, rotate_value=True,
                            learnable_freqs=True)
    assert_compile_matches_eager(conv, with_positions(random_graph(13, 40)))


def test_learnable_frequencies():
    data = GRAPHS['random_N11_E37']
    conv = RotaryAttentionConv(NUM_FEATURES, 4, heads=2, pos_dim=2,
                               edge_dim=EDGE_DIM, learnable_freqs=True)
    assert 'freqs' in dict(conv.named_parameters())
    conv(data.x, data.edge_index, data.edge_attr,
         data.edge_pos).sum().backward()
    assert torch.isfinite(conv.freqs.grad).all()
    assert conv.freqs.grad.abs().sum() > 0
    fixed = RotaryAttentionConv(NUM_FEATURES, 4, heads=2, edge_dim=EDGE_DIM)
    assert 'freqs' not in fixed.state_dict()
    missing = conv.load_state_dict(fixed.state_dict(), strict=False)
    assert missing.missing_keys == ['freqs'] and not missing.unexpected_keys
    with torch.no_grad():
        conv.freqs.mul_(2)
    conv.reset_parameters()
    assert_close(conv.freqs, torch.tensor([1.0, 1.0]))


@pytest.mark.parametrize('dtype', [torch.float64, torch.bfloat16])
def test_dtypes(dtype):
    data = GRAPHS['random_N23_E101']
    conv = RotaryAttentionConv(NUM_FEATURES, 4, heads=2, pos_dim=2,
                               edge_dim=EDGE_DIM, rotate_value=True)
    expected = conv(data.x, data.edge_index, data.edge_attr, data.edge_pos)
    conv = conv.to(dtype)
    x = data.x.to(dtype).requires_grad_()
    out = conv(x, data.edge_index, data.edge_attr.to(dtype), data.edge_pos)
    assert out.dtype == dtype
    tol = {torch.float64: 1e-5, torch.bfloat16: 5e-2}[dtype]
    torch.testing.assert_close(out.float(), expected, rtol=tol, atol=tol)
    out.float().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_reset_parameters_and_repr():
    conv = RotaryAttentionConv(NUM_FEATURES, 4, heads=2, edge_dim=3,
                               pos_dim=2)
    assert_reset_parameters(conv)
    assert repr(conv) == 'RotaryAttentionConv(6, 4, heads=2, pos_dim=2)'
    partial = RotaryAttentionConv(NUM_FEATURES, 7, rotary_dim=4)
    assert repr(partial) == ('RotaryAttentionConv(6, 7, heads=1, pos_dim=1, '
                             'rotary_dim=4)')


def test_bad_input():
    data = GRAPHS['path']
    x, edge_index = data.x, data.edge_index
    conv = RotaryAttentionConv(NUM_FEATURES, 4, heads=2, pos_dim=2)
    with pytest.raises(ValueError, match=r"'out_channels' \(5\) must be even"
                       r".*out_channels=6.*rotary_dim=4"):
        RotaryAttentionConv(NUM_FEATURES, 5)
    for rotary_dim in (3, 6, 0):
        with pytest.raises(ValueError, match=rf"'rotary_dim' \({rotary_dim}\) "
                           r"must be an even integer in \[2, out_channels = "
                           r"5\]"):
            RotaryAttentionConv(NUM_FEATURES, 5, rotary_dim=rotary_dim)
    with pytest.raises(ValueError, match=r"'pos_dim' \(3\) must lie in \[1, "
                       r"rotary_dim / 2 = 2\]"):
        RotaryAttentionConv(NUM_FEATURES, 4, pos_dim=3)
    with pytest.raises(ValueError, match="needs positions.*'edge_pos'"):
        conv(x, edge_index)
    with pytest.raises(ValueError, match=r"'edge_pos' has shape \(7, 2\) but "
                       "there are 8 edges"):
        conv(x, edge_index, edge_pos=data.edge_pos[:7])
    with pytest.raises(ValueError, match="'edge_pos' has 1 components but.*"
                       "pos_dim=2"):
        conv(x, edge_index, edge_pos=data.edge_pos[:, 0])
    with pytest.raises(ValueError, match=r"'node_pos' has shape \(4, 2\) but "
                       "there are 5 source nodes"):
        conv(x, edge_index, node_pos=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="'edge_pos' must be a real"):
        conv(x, edge_index, edge_pos=torch.ones(8, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match='source index 5 but there are 5'):
        conv(x, torch.tensor([[5], [0]]), edge_pos=torch.zeros(1, 2))
