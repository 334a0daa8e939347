import pytest
import torch

from pyg_attn.functional import sparse
from pyg_attn.nn import DotProductAttentionConv, FlashAttentionConv
from pyg_attn.testing import (EDGE_DIM, NUM_FEATURES, assert_batch_independent,
                              assert_bipartite, assert_close,
                              assert_compile_matches_eager,
                              assert_local_attention_properties,
                              assert_reset_parameters, assert_same_function,
                              bipartite_graph, random_graph, small_graphs)

GRAPHS = small_graphs()
CONFIGS = {
    'plain': dict(),
    'edge': dict(edge_dim=EDGE_DIM),
    'edge-mean-beta': dict(edge_dim=EDGE_DIM, concat=False, beta=True),
}
# one chunk; many chunks; a chunk smaller than a node's in-degree
CHUNKS = [100_000, 7, 1]


def _pair(kwargs, chunk_size, in_channels=NUM_FEATURES):
    ref = DotProductAttentionConv(in_channels, 4, heads=3, **kwargs)
    conv = FlashAttentionConv(in_channels, 4, heads=3, chunk_size=chunk_size,
                              **kwargs)
    conv.load_state_dict(ref.state_dict())
    return conv, ref


def _assert_same(conv, ref, x, edge_index, edge_attr):
    assert_same_function(conv, ref, x, edge_index, edge_attr)
    _, (_, alpha) = conv(x, edge_index, edge_attr,
                         return_attention_weights=True)
    _, (_, expected_alpha) = ref(x, edge_index, edge_attr,
                                 return_attention_weights=True)
    assert_close(alpha, expected_alpha)


@pytest.mark.parametrize('chunk_size', CHUNKS, ids=lambda c: f'chunk{c}')
@pytest.mark.parametrize('config', CONFIGS, ids=list(CONFIGS))
@pytest.mark.parametrize('graph', ['zero_in_degree', 'star',
                                   'random_N23_E101'])
def test_matches_dot_product(graph, config, chunk_size):
    data = GRAPHS[graph]
    kwargs = CONFIGS[config]
    conv, ref = _pair(kwargs, chunk_size)
    edge_attr = data.edge_attr if 'edge_dim' in kwargs else None
    _assert_same(conv, ref, data.x, data.edge_index, edge_attr)


@pytest.mark.parametrize('chunk_size', CHUNKS, ids=lambda c: f'chunk{c}')
def test_matches_dot_product_bipartite(chunk_size):
    x, edge_index, edge_attr = bipartite_graph(num_features=(5, 6))
    conv, ref = _pair(dict(edge_dim=EDGE_DIM), chunk_size, (5, 6))
    _assert_same(conv, ref, x, edge_index, edge_attr)
    assert_bipartite(conv, x, edge_index, 12, edge_attr=edge_attr)


def test_float64_many_chunks():
    data = random_graph(17, 200)
    conv, ref = _pair(dict(edge_dim=EDGE_DIM), 3)
    conv, ref = conv.double(), ref.double()
    data.x, data.edge_attr = data.x.double(), data.edge_attr.double()
    _assert_same(conv, ref, data.x, data.edge_index, data.edge_attr)


def test_dropout_mask_is_replayed_in_backward():
    data = random_graph(9, 60)
    conv = FlashAttentionConv(NUM_FEATURES, 2, heads=2, dropout=0.5,
                              chunk_size=7, edge_dim=EDGE_DIM).double()
    x = data.x.double().requires_grad_()
    edge_attr = data.edge_attr.double()

    def fn(x):
        torch.manual_seed(0)  # the same mask on every call
        return conv(x, data.edge_index, edge_attr)

    assert not torch.allclose(fn(x), conv.eval()(x, data.edge_index,
                                                  edge_attr))
    conv.train()
    assert torch.autograd.gradcheck(fn, (x,))


@pytest.mark.parametrize('graph', list(GRAPHS))
def test_pyg_native_properties(graph):
    data = GRAPHS[graph]
    conv = FlashAttentionConv(NUM_FEATURES, 4, heads=2, edge_dim=EDGE_DIM,
                              chunk_size=3)
    assert_local_attention_properties(conv, data, 8)


def test_batch_independent():
    conv = FlashAttentionConv(NUM_FEATURES, 4, heads=2, edge_dim=EDGE_DIM,
                              chunk_size=5)
    assert_batch_independent(conv, GRAPHS['path'], GRAPHS['random_N11_E37'])


@pytest.mark.parametrize('chunk_size', [5, None])
def test_compile_matches_eager(chunk_size):
    conv = FlashAttentionConv(NUM_FEATURES, 4, heads=2, edge_dim=EDGE_DIM,
                              chunk_size=chunk_size)
    assert_compile_matches_eager(conv, random_graph(13, 40))


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision(dtype):
    data = random_graph(13, 300)
    conv = FlashAttentionConv(NUM_FEATURES, 4, heads=2, edge_dim=EDGE_DIM,
                              chunk_size=64)
    expected = conv(data.x, data.edge_index, data.edge_attr)
    conv = conv.to(dtype)
    x = data.x.to(dtype).requires_grad_()
    out = conv(x, data.edge_index, data.edge_attr.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), expected, rtol=5e-2, atol=5e-2)
    out.float().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_reset_parameters_repr_and_state_dict():
    conv = FlashAttentionConv(NUM_FEATURES, 4, heads=2, edge_dim=3,
                              chunk_size=128)
    assert_reset_parameters(conv)
    assert repr(conv) == 'FlashAttentionConv(6, 4, heads=2, chunk_size=128)'
    ref = DotProductAttentionConv(NUM_FEATURES, 4, heads=2, edge_dim=3)
    assert conv.state_dict().keys() == ref.state_dict().keys()


@pytest.mark.parametrize('edge_dim,edges_per_chunk', [(EDGE_DIM, 3), (12, 2)])
def test_default_chunk_follows_chunk_elements(monkeypatch, chunk_steps,
                                              edge_dim, edges_per_chunk):
    """Without chunk_size a chunk keeps each of its [c, H, C] messages and
    [c, edge_dim] edge features within CHUNK_ELEMENTS values (24 here, at 2
    heads of 4): 3 edges with 3 edge features, 2 with 12; forward and
    backward walk 101 edges in those steps, and the layer still equals the
    dot-product layer."""
    import pyg_attn.functional.online_softmax as online_module
    steps = chunk_steps(online_module)
    monkeypatch.setattr(sparse, 'CHUNK_ELEMENTS', 3 * 2 * 4)
    data = random_graph(23, 101, edge_dim=edge_dim)
    ref = DotProductAttentionConv(NUM_FEATURES, 4, heads=2, edge_dim=edge_dim)
    conv = FlashAttentionConv(NUM_FEATURES, 4, heads=2, edge_dim=edge_dim)
    conv.load_state_dict(ref.state_dict())
    assert_same_function(conv, ref, data.x, data.edge_index, data.edge_attr)
    assert len(steps) >= 2  # forward and backward
    assert set(steps) == {(101, edges_per_chunk)}
    assert repr(conv) == 'FlashAttentionConv(6, 4, heads=2, chunk_size=None)'


def test_bad_input():
    with pytest.raises(ValueError, match=r"'chunk_size' \(0\) must be"):
        FlashAttentionConv(NUM_FEATURES, 4, chunk_size=0)
    conv = FlashAttentionConv(NUM_FEATURES, 4, edge_dim=EDGE_DIM)
    data = GRAPHS['path']
    with pytest.raises(ValueError, match='no .edge_attr. was given'):
        conv(data.x, data.edge_index)
