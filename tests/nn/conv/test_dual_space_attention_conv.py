import copy
import io

import pytest
import torch
from torch_geometric.data import Batch

from pyg_attn.functional import latent_knn
from pyg_attn.nn import DualSpaceAttentionConv
from pyg_attn.testing import (EDGE_DIM, NUM_FEATURES, assert_batch_independent,
                              assert_close, assert_compile_matches_eager,
                              assert_edge_permutation_invariant,
                              assert_finite_gradients,
                              assert_node_permutation_equivariant,
                              assert_output_shape, assert_reset_parameters,
                              assert_same_function, random_graph, run,
                              small_graphs)
from pyg_attn.testing.reference import reference_dual_space_attention

GRAPHS = small_graphs()
CONFIGS = {
    'plain': dict(),
    'edge': dict(edge_dim=EDGE_DIM),
    'gate-mean': dict(fusion='gate', concat=False),
    'no-root-no-bias': dict(root_weight=False, bias=False),
}


class DenseDualSpace(DualSpaceAttentionConv):
    """The layer's weights, computed by the dense reference."""
    def forward(self, x, edge_index, latent_edge_index, edge_attr=None):
        return reference_dual_space_attention(self, x, edge_index,
                                              latent_edge_index, edge_attr)


class WithLatentEdges(torch.nn.Module):
    """The layer with fixed, precomputed latent edges."""
    def __init__(self, conv, latent_edge_index):
        super().__init__()
        self.conv = conv
        self.latent_edge_index = latent_edge_index

    def forward(self, x, edge_index, edge_attr=None):
        return self.conv(x, edge_index, edge_attr=edge_attr,
                         latent_edge_index=self.latent_edge_index)


def _pair(kwargs, heads=2, out_channels=4, k=3, dtype=torch.float32):
    conv = DualSpaceAttentionConv(NUM_FEATURES, out_channels, heads=heads,
                                  k=k, **kwargs).to(dtype)
    ref = DenseDualSpace(NUM_FEATURES, out_channels, heads=heads, k=k,
                         **kwargs).to(dtype)
    ref.load_state_dict(conv.state_dict())
    return conv, ref


def _odd_latent_edges(num_nodes, seed=0):
    """Arbitrary latent edges: repeats, self-pairs, node 0 without any."""
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, num_nodes, (3 * num_nodes, ), generator=gen)
    dst = torch.randint(1, num_nodes, (3 * num_nodes, ), generator=gen)
    return torch.stack([src, dst])


# every config on two graphs, the plain one on the edge cases (without
# edges, the loop reference of the edge-feature case leaves the key weights
# unused, a None gradient where ours is zero)
REFERENCE_CASES = [(g, c) for g in ('multi_edge', 'random_N23_E101')
                   for c in CONFIGS] + [('zero_in_degree', 'plain'),
                                        ('empty', 'plain')]


@pytest.mark.parametrize('latent', ['knn', 'odd'])
@pytest.mark.parametrize('graph,config', REFERENCE_CASES,
                         ids=[f'{g}-{c}' for g, c in REFERENCE_CASES])
def test_matches_dense_reference(graph, config, latent):
    kwargs = CONFIGS[config]
    data = GRAPHS[graph]
    conv, ref = _pair(kwargs)
    latent_edge_index = (latent_knn(data.x, 3)[0] if latent == 'knn' else
                         _odd_latent_edges(data.num_nodes))
    edge_attr = data.edge_attr if 'edge_dim' in kwargs else None
    assert_same_function(conv, ref, data.x, data.edge_index,
                         latent_edge_index=latent_edge_index,
                         edge_attr=edge_attr)


def test_matches_dense_reference_float64():
    data = GRAPHS['random_N23_E101']
    conv, ref = _pair(dict(edge_dim=EDGE_DIM, fusion='gate'),
                      dtype=torch.float64)
    x = data.x.double()
    assert_same_function(conv, ref, x, data.edge_index,
                         latent_edge_index=latent_knn(x, 5)[0],
                         edge_attr=data.edge_attr.double())


def test_searched_neighbours_are_the_latent_knn_of_x():
    data = GRAPHS['random_N23_E101']
    conv = DualSpaceAttentionConv(NUM_FEATURES, 4, heads=2, k=5).eval()
    out = conv(data.x, data.edge_index)
    expected = latent_knn(data.x, 5)[0]
    assert torch.equal(conv.last_latent_edge_index, expected)
    assert_close(out, conv(data.x, data.edge_index,
                           latent_edge_index=expected))
    # a graph smaller than k + 1: every other node of it, nothing else
    conv = DualSpaceAttentionConv(NUM_FEATURES, 4, k=16).eval()
    conv(GRAPHS['path'].x, GRAPHS['path'].edge_index)
    src, dst = conv.last_latent_edge_index
    assert torch.equal(torch.bincount(dst), torch.full((5, ), 4))
    assert (src != dst).all()


@pytest.mark.parametrize('graph', list(GRAPHS))
def test_pyg_native_properties(graph):
    data = GRAPHS[graph]
    conv = DualSpaceAttentionConv(NUM_FEATURES, 4, heads=2, k=3,
                                  edge_dim=EDGE_DIM)
    assert_output_shape(conv, data, 8)
    assert_edge_permutation_invariant(conv, data)
    assert_node_permutation_equivariant(conv, data)
    assert_finite_gradients(conv, data)
    # every attention's weights sum to 1 over each node's edges (0 without)
    conv.eval()
    out, graph_weights, latent_weights = run(conv, data,
                                             return_attention_weights=True)
    assert torch.equal(out, run(conv, data))
    edge_index, alpha = graph_weights
    latent_edge_index, alpha_latent, alpha_cross = latent_weights
    assert edge_index is data.edge_index
    assert torch.equal(latent_edge_index, conv.last_latent_edge_index)
    for index, weights in ((edge_index, alpha),
                           (latent_edge_index, alpha_latent),
                           (latent_edge_index, alpha_cross)):
        assert weights.shape == (index.size(1), 2) and (weights >= 0).all()
        sums = weights.new_zeros(data.num_nodes, 2).index_add_(0, index[1],
                                                               weights)
        has_edges = torch.bincount(index[1], minlength=data.num_nodes) > 0
        assert_close(sums[has_edges], torch.ones_like(sums[has_edges]))
        assert (sums[~has_edges] == 0).all()


def test_zero_in_degree_and_lone_node():
    """A node without graph edges gets a zero graph aggregation, a graph of
    one node no latent neighbours: finite output either way."""
    data = GRAPHS['zero_in_degree']
    conv = DualSpaceAttentionConv(NUM_FEATURES, 4, k=2, root_weight=False,
                                  bias=False).eval()
    graph = conv.graph_attention(data.x, data.edge_index)
    assert (graph[[0, 4]] == 0).all()
    out = conv(data.x[:1], data.edge_index[:, :0])
    assert conv.last_latent_edge_index.shape == (2, 0)
    assert (out == 0).all()


def test_batch_independent_and_never_crosses_graphs():
    conv = DualSpaceAttentionConv(NUM_FEATURES, 4, heads=2, k=4,
                                  edge_dim=EDGE_DIM)
    first, second = GRAPHS['random_N11_E37'], GRAPHS['random_N23_E101']
    assert_batch_independent(conv, first, second)
    batch = Batch.from_data_list([first, second, GRAPHS['path']])
    conv(batch.x, batch.edge_index, batch.edge_attr, batch=batch.batch)
    src, dst = conv.last_latent_edge_index
    assert (batch.batch[src] == batch.batch[dst]).all()
    assert src.numel() == 4 * batch.num_nodes


def test_compile_fullgraph_with_precomputed_latent_edges():
    data = random_graph(13, 40)
    conv = DualSpaceAttentionConv(NUM_FEATURES, 4, heads=2, k=3,
                                  edge_dim=EDGE_DIM, fusion='gate')
    latent_edge_index = latent_knn(data.x, 3)[0]
    assert_compile_matches_eager(WithLatentEdges(conv, latent_edge_index),
                                 data)
    assert conv.last_latent_edge_index is latent_edge_index


def test_compile_with_search_breaks_the_graph_and_matches_eager():
    """The search is one documented graph break (dynamo's behaviour, so the
    eager backend; inductor is covered by the fullgraph test above)."""
    data = random_graph(13, 40)
    conv = DualSpaceAttentionConv(NUM_FEATURES, 4, heads=2, k=3).eval()
    torch._dynamo.reset()
    with pytest.raises(Exception, match='neighbour search reads the data'):
        torch.compile(conv, fullgraph=True, backend='eager')(data.x,
                                                             data.edge_index)
    torch._dynamo.reset()
    compiled = torch.compile(conv, backend='eager')
    assert_close(compiled(data.x, data.edge_index),
                 conv(data.x, data.edge_index))
    assert torch.equal(conv.last_latent_edge_index,
                       latent_knn(data.x, 3)[0])
    torch._dynamo.reset()


def test_refresh_interval_caches_in_training():
    data = GRAPHS['random_N23_E101']
    x1, x2 = data.x, torch.randn_like(data.x)
    conv = DualSpaceAttentionConv(NUM_FEATURES, 4, k=3, refresh_interval=3)
    knn1, knn2 = latent_knn(x1, 3)[0], latent_knn(x2, 3)[0]
    assert not torch.equal(knn1, knn2)

    conv.train()
    conv(x1, data.edge_index)  # forward 1: searched
    cached = conv.last_latent_edge_index
    assert torch.equal(cached, knn1)
    for _ in range(2):  # forwards 2 and 3: cached, although x changed
        conv(x2, data.edge_index)
        assert conv.last_latent_edge_index is cached
    conv.eval()  # eval: searched every forward, the cache left alone
    conv(x2, data.edge_index)
    assert torch.equal(conv.last_latent_edge_index, knn2)
    conv.train()
    conv(x2, data.edge_index)  # forward 4: refreshed
    assert torch.equal(conv.last_latent_edge_index, knn2)

    conv(x1, data.edge_index)  # forward 5 of the new interval: cached
    assert torch.equal(conv.last_latent_edge_index, knn2)
    # another node count, batch or edge_index: never the cache
    conv(x1[:20], data.edge_index[:, data.edge_index.max(0).values < 20])
    assert torch.equal(conv.last_latent_edge_index, latent_knn(x1[:20],
                                                               3)[0])
    conv(x1, data.edge_index)
    assert torch.equal(conv.last_latent_edge_index, knn1)
    conv(x2, data.edge_index.flip(0))
    assert torch.equal(conv.last_latent_edge_index, knn2)
    one_graph = torch.zeros(23, dtype=torch.long)
    conv(x1, data.edge_index.flip(0), batch=one_graph)
    assert torch.equal(conv.last_latent_edge_index, knn1)
    conv.clear_latent_cache()
    conv(x2, data.edge_index.flip(0), batch=one_graph)
    assert torch.equal(conv.last_latent_edge_index, knn2)


@pytest.mark.parametrize('refresh_interval', [1, None])
def test_refresh_every_forward_or_once(refresh_interval):
    data = GRAPHS['random_N23_E101']
    x1, x2 = data.x, torch.randn_like(data.x)
    conv = DualSpaceAttentionConv(NUM_FEATURES, 4, k=3,
                                  refresh_interval=refresh_interval).train()
    conv(x1, data.edge_index)
    conv(x2, data.edge_index)
    expected = x2 if refresh_interval == 1 else x1
    assert torch.equal(conv.last_latent_edge_index,
                       latent_knn(expected, 3)[0])


def test_eval_reuses_only_the_same_unchanged_tensor():
    data = GRAPHS['random_N23_E101']
    conv = DualSpaceAttentionConv(NUM_FEATURES, 4, k=3).eval()
    x = data.x.clone()
    conv(x, data.edge_index)
    first = conv.last_latent_edge_index
    conv(x, data.edge_index.flip(0))  # the search ignores the graph edges
    assert conv.last_latent_edge_index is first
    conv(x.clone(), data.edge_index)  # equal values, another tensor
    assert conv.last_latent_edge_index is not first
    conv(x, data.edge_index)
    second = conv.last_latent_edge_index
    x[:, 0] = torch.randn(23)  # in place: the version counter moves
    conv(x, data.edge_index)
    assert conv.last_latent_edge_index is not second
    assert torch.equal(conv.last_latent_edge_index, latent_knn(x, 3)[0])
    third = conv.last_latent_edge_index
    conv(x, data.edge_index, batch=torch.zeros(23, dtype=torch.long))
    assert conv.last_latent_edge_index is not third
    conv.k = 4
    conv(x, data.edge_index, batch=torch.zeros(23, dtype=torch.long))
    assert torch.equal(conv.last_latent_edge_index, latent_knn(x, 4)[0])


def test_pickle_and_deepcopy_drop_the_caches():
    data = GRAPHS['path']
    conv = DualSpaceAttentionConv(NUM_FEATURES, 4, k=2)
    conv.train()(data.x, data.edge_index)
    conv.eval()(data.x, data.edge_index)
    buffer = io.BytesIO()
    torch.save(conv, buffer)
    buffer.seek(0)
    for other in (torch.load(buffer, weights_only=False),
                  copy.deepcopy(conv)):
        assert other._cache is None and other._eval_cache is None
        assert_close(other(data.x, data.edge_index),
                     conv(data.x, data.edge_index))
    assert conv._cache is not None  # the original keeps its own


def test_selection_is_not_differentiated():
    """The output's gradient with respect to x equals the gradient with the
    same latent edges held fixed."""
    data = GRAPHS['random_N11_E37']
    conv = DualSpaceAttentionConv(NUM_FEATURES, 4, heads=2, k=3).eval()
    grads = []
    for latent in (None, latent_knn(data.x, 3)[0]):
        x = data.x.clone().requires_grad_()
        conv(x, data.edge_index, latent_edge_index=latent).pow(2).sum() \
            .backward()
        grads.append(x.grad)
    assert_close(grads[0], grads[1])
    assert grads[0].abs().sum() > 0


def test_lazy_in_channels():
    data = GRAPHS['path']
    conv = DualSpaceAttentionConv(-1, 4, heads=2, k=2, edge_dim=EDGE_DIM)
    out = conv(data.x, data.edge_index, edge_attr=data.edge_attr)
    assert out.shape == (5, 8)
    assert conv.lin_skip.weight.shape == (8, NUM_FEATURES)


@pytest.mark.parametrize('dtype', [torch.float64, torch.bfloat16])
def test_dtypes(dtype):
    data = random_graph(13, 60)
    conv = DualSpaceAttentionConv(NUM_FEATURES, 4, heads=2, k=3).eval()
    expected = conv(data.x, data.edge_index)
    conv = conv.to(dtype)
    x = data.x.to(dtype).requires_grad_()
    out = conv(x, data.edge_index)
    assert out.dtype == dtype and torch.isfinite(out).all()
    tol = {torch.float64: 1e-5, torch.bfloat16: 1e-1}[dtype]
    torch.testing.assert_close(out.float(), expected, rtol=tol, atol=tol)
    out.float().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_reset_parameters_and_repr():
    for fusion in ('linear', 'gate'):
        conv = DualSpaceAttentionConv(NUM_FEATURES, 4, heads=2, k=5,
                                      fusion=fusion, edge_dim=EDGE_DIM)
        assert_reset_parameters(conv)
    assert repr(conv) == 'DualSpaceAttentionConv(6, 4, heads=2, k=5)'


def test_bad_input():
    data = GRAPHS['path']
    x, edge_index = data.x, data.edge_index
    conv = DualSpaceAttentionConv(NUM_FEATURES, 4, k=2)
    with pytest.raises(ValueError, match=r"'k' \(0\) must be an integer >= 1"):
        DualSpaceAttentionConv(NUM_FEATURES, 4, k=0)
    with pytest.raises(ValueError, match=r"'k' \(-3\)"):
        DualSpaceAttentionConv(NUM_FEATURES, 4, k=-3)
    with pytest.raises(ValueError, match=r"'refresh_interval' \(0\)"):
        DualSpaceAttentionConv(NUM_FEATURES, 4, refresh_interval=0)
    with pytest.raises(ValueError, match=r"unknown 'fusion' \('sum'\)"):
        DualSpaceAttentionConv(NUM_FEATURES, 4, fusion='sum')
    with pytest.raises(ValueError, match=r"'knn_threshold' \(0\)"):
        DualSpaceAttentionConv(NUM_FEATURES, 4, knn_threshold=0)
    with pytest.raises(ValueError, match=r"'heads' \(0\)"):
        DualSpaceAttentionConv(NUM_FEATURES, 4, heads=0)
    with pytest.raises(ValueError, match=r"'in_channels' \(\(6, 6\)\).*no "
                       "bipartite"):
        DualSpaceAttentionConv((6, 6), 4)
    with pytest.raises(ValueError, match="no bipartite.*sampled subgraph"):
        conv((x, x[:3]), edge_index)
    with pytest.raises(ValueError, match="'x_src' has 5 features"):
        conv(x[:, :5], edge_index)
    with pytest.raises(ValueError, match=r"shape \[2, num_edges\]"):
        conv(x, edge_index.t())
    with pytest.raises(ValueError, match=r"'batch' has shape \(4,\).*5 nodes"):
        conv(x, edge_index, batch=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="'latent_edge_index' has source "
                       "index 7 but there are 5"):
        conv(x, edge_index, latent_edge_index=torch.tensor([[7], [0]]))
    with pytest.raises(ValueError, match="without 'edge_dim'"):
        conv(x, edge_index, edge_attr=data.edge_attr)
