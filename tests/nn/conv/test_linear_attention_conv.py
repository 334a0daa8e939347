import pytest
import torch
from torch import Tensor
from torch_geometric.data import Batch
from torch_geometric.utils import to_dense_batch

from pyg_attn.nn import LinearAttentionConv
from pyg_attn.nn.conv import linear_attention_conv
from pyg_attn.testing import (NUM_FEATURES, assert_batch_independent,
                              assert_close, assert_compile_matches_eager,
                              assert_edge_permutation_invariant,
                              assert_finite_gradients,
                              assert_node_permutation_equivariant,
                              assert_output_shape, assert_reset_parameters,
                              random_graph, small_graphs)

GRAPHS = small_graphs()


class Global(torch.nn.Module):
    """``conv(x, batch, edge_index=…)`` behind the ``(x, edge_index,
    batch=…)`` call the property checks make."""
    def __init__(self, conv: LinearAttentionConv, num_graphs=None):
        super().__init__()
        self.conv = conv
        self.num_graphs = num_graphs

    def reset_parameters(self):
        self.conv.reset_parameters()

    def forward(self, x, edge_index, batch=None,
                return_attention_weights=False):
        return self.conv(x, batch, edge_index, return_attention_weights,
                         num_graphs=self.num_graphs)


def _complete_edges(sizes):
    """Every (j, i) pair inside each graph of a batch of ``sizes``."""
    edges, start = [], 0
    for n in sizes:
        idx = torch.arange(start, start + n)
        edges.append(torch.cartesian_prod(idx, idx).t())
        start += n
    return torch.cat(edges, dim=1)


def _unit_qk_layer(num_features, head_dim=16):
    """A layer that reads queries, keys and values from the three thirds of
    ``x``: with unit-norm thirds for queries and keys (after the C^-1/4
    scale), logits are q.k of unit vectors."""
    d = head_dim
    conv = LinearAttentionConv(3 * d, d, num_features=num_features,
                               bias=False, root_weight=False)
    eye, zero = torch.eye(d), torch.zeros(d, d)
    with torch.no_grad():
        conv.lin_query.weight.copy_(torch.cat([eye, zero, zero], 1) * d**.25)
        conv.lin_key.weight.copy_(torch.cat([zero, eye, zero], 1) * d**.25)
        conv.lin_value.weight.copy_(torch.cat([zero, zero, eye], 1))
    return conv.eval()


def _relative_error(num_features, x, draws, seed=0):
    conv = _unit_qk_layer(num_features)
    exact = conv.exact_attention(x)
    gen = torch.Generator().manual_seed(seed)
    errors = []
    for _ in range(draws):
        conv.redraw_features(gen)
        errors.append(((conv(x) - exact).norm() / exact.norm()).item())
    return sum(errors) / draws


def test_error_falls_with_num_features():
    """Relative error against exact softmax attention, unit-norm queries and
    keys of head dimension 16, Gaussian values, 300 nodes, averaged over
    draws."""
    gen = torch.Generator().manual_seed(0)
    unit = [torch.nn.functional.normalize(torch.randn(300, 16, generator=gen),
                                          dim=-1) for _ in range(2)]
    x = torch.cat(unit + [torch.randn(300, 16, generator=gen)], dim=1)
    errors = {m: _relative_error(m, x, draws=32) for m in (16, 64, 256, 1024)}
    print('relative error by num_features:', errors)
    assert errors[256] <= 0.2, errors
    for m in (16, 64):
        assert errors[m] >= 1.5 * errors[4 * m], errors
    assert errors[1024] < errors[256], errors


def test_exact_attention_matches_sdpa():
    data = Batch.from_data_list([GRAPHS['path'], GRAPHS['random_N11_E37']])
    conv = LinearAttentionConv(NUM_FEATURES, 4, heads=2, concat=False)
    H, C = 2, 4
    expected = []
    for g in range(2):
        x = data.x[data.batch == g]
        q, k, v = (lin(x).view(-1, H, C).transpose(0, 1)
                   for lin in (conv.lin_query, conv.lin_key, conv.lin_value))
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        expected.append(out.transpose(0, 1).mean(1) + conv.lin_skip(x))
    assert_close(conv.exact_attention(data.x, data.batch),
                 torch.cat(expected))


@pytest.mark.parametrize('graph', list(GRAPHS))
def test_pyg_native_properties(graph):
    data = GRAPHS[graph]
    conv = Global(LinearAttentionConv(NUM_FEATURES, 4, heads=2,
                                      num_features=32))
    assert_output_shape(conv, data, 8)
    assert_edge_permutation_invariant(conv, data)
    assert_node_permutation_equivariant(conv, data)
    assert_finite_gradients(conv, data)


@pytest.mark.parametrize('kernel', ['softmax', 'relu'])
def test_batch_independent(kernel):
    first, second = GRAPHS['path'], GRAPHS['random_N23_E101'].clone()
    second.x = second.x * 10  # exponents far from the first graph's
    conv = LinearAttentionConv(NUM_FEATURES, 4, heads=2, kernel=kernel,
                               num_features=64).eval()
    assert_batch_independent(Global(conv), first, second)
    for dtype, tol in ((torch.float32, 1e-6), (torch.float64, 1e-12)):
        conv = conv.to(dtype)
        batch = Batch.from_data_list([first, second])
        x = batch.x.to(dtype)
        out = conv(x, batch.batch)
        alone = torch.cat([conv(x[:5]), conv(x[5:])])
        assert (out - alone).abs().max() <= tol * alone.abs().max()


def test_performer_attention_leaks_across_graphs():
    """PyG's PerformerAttention on a padded batch lets the padding into the
    normaliser, so a graph's output depends on the others; ours does not."""
    try:
        from torch_geometric.nn.attention import PerformerAttention
    except ImportError:
        pytest.skip('torch_geometric.nn.attention.PerformerAttention missing')
    small, large = GRAPHS['path'], GRAPHS['random_N23_E101']
    batch = Batch.from_data_list([small, large])
    performer = PerformerAttention(NUM_FEATURES, heads=2, head_channels=4)
    dense, mask = to_dense_batch(batch.x, batch.batch)
    padded = performer(dense, mask)[0, :small.num_nodes]
    alone = performer(small.x.unsqueeze(0))[0]
    assert (padded - alone).abs().max() > 1e-4
    ours = LinearAttentionConv(NUM_FEATURES, 4, heads=2)
    out = ours(batch.x, batch.batch)[:small.num_nodes]
    assert (out - ours(small.x)).abs().max() <= 1e-6


def test_attention_weights():
    sizes = [5, 7]
    data = Batch.from_data_list([GRAPHS['path'], GRAPHS['self_loops'],
                                 GRAPHS['star']][::2])
    assert data.batch.bincount().tolist() == sizes
    conv = LinearAttentionConv(NUM_FEATURES, 4, heads=3, root_weight=False,
                               num_features=64)
    edge_index = _complete_edges(sizes)
    out, (ei, alpha) = conv(data.x, data.batch, edge_index,
                            return_attention_weights=True)
    assert ei is edge_index and alpha.shape == (edge_index.size(1), 3)
    assert (alpha > 0).all()
    # over all of a node's graph the implied weights sum to 1 ...
    sums = alpha.new_zeros(12, 3).index_add_(0, edge_index[1], alpha)
    assert_close(sums, torch.ones_like(sums))
    # ... and they are the weights the output uses
    value = conv.lin_value(data.x).view(-1, 3, 4)
    weighted = torch.zeros(12, 3, 4).index_add_(
        0, edge_index[1], alpha.unsqueeze(-1) * value[edge_index[0]])
    assert_close(out, weighted.view(12, 12))
    # a subset of edges gets the same weights as in the complete set
    sub = torch.arange(0, edge_index.size(1), 7)
    _, (_, alpha_sub) = conv(data.x, data.batch, edge_index[:, sub],
                             return_attention_weights=True)
    assert_close(alpha_sub, alpha[sub])
    assert isinstance(conv(data.x, data.batch, edge_index), Tensor)


def test_attention_weights_approach_softmax():
    data = GRAPHS['random_N11_E37']
    conv = LinearAttentionConv(NUM_FEATURES, 4, num_features=4096).eval()
    _, (_, alpha) = conv(data.x, None, data.edge_index,
                         return_attention_weights=True)
    q = conv.lin_query(data.x)
    k = conv.lin_key(data.x)
    exact = torch.softmax(q @ k.t() / 2, dim=-1)  # [N, N], sqrt(C) = 2
    expected = exact[data.edge_index[1], data.edge_index[0]]
    assert ((alpha[:, 0] - expected).abs() / expected).mean() < 0.1


def test_redraw():
    data = GRAPHS['path']
    conv = LinearAttentionConv(NUM_FEATURES, 4, heads=2, num_features=8,
                               redraw_interval=2)
    assert 'projection_matrix' in conv.state_dict()
    assert conv.projection_matrix.shape == (2, 8, 4)
    draws = []
    for _ in range(5):
        conv(data.x)
        draws.append(conv.projection_matrix.clone())
    same = [torch.equal(a, b) for a, b in zip(draws, draws[1:])]
    assert same == [True, False, True, False]  # each draw serves 2 forwards
    conv.eval()
    conv(data.x)
    conv(data.x)
    conv(data.x)
    assert torch.equal(conv.projection_matrix, draws[-1])  # not in eval
    before = conv.projection_matrix.clone()
    conv.redraw_features()
    assert not torch.equal(conv.projection_matrix, before)
    conv.redraw_features(torch.Generator().manual_seed(3))
    first = conv.projection_matrix.clone()
    conv.redraw_features(torch.Generator().manual_seed(3))
    assert torch.equal(conv.projection_matrix, first)
    never = LinearAttentionConv(NUM_FEATURES, 4, num_features=8).train()
    before = never.projection_matrix.clone()
    for _ in range(3):
        never(data.x)
    assert torch.equal(never.projection_matrix, before)


def test_buffer_moves_with_to():
    conv = LinearAttentionConv(NUM_FEATURES, 4, num_features=8)
    conv = conv.to(torch.float64)
    assert conv.projection_matrix.dtype == torch.float64
    loaded = LinearAttentionConv(NUM_FEATURES, 4, num_features=8).double()
    loaded.load_state_dict(conv.state_dict())
    x = GRAPHS['star'].x.double()
    assert torch.equal(loaded(x), conv(x))


def test_dropout():
    data = GRAPHS['random_N23_E101']
    conv = LinearAttentionConv(NUM_FEATURES, 4, heads=2, dropout=0.5)
    conv.train()
    first, second = conv(data.x), conv(data.x)
    assert torch.isfinite(first).all() and not torch.equal(first, second)
    conv.eval()
    assert torch.equal(conv(data.x), conv(data.x))
    conv.train()
    _, (_, alpha) = conv(data.x, None, data.edge_index,
                         return_attention_weights=True)
    conv.eval()
    _, (_, alpha_eval) = conv(data.x, None, data.edge_index,
                              return_attention_weights=True)
    assert_close(alpha, alpha_eval)  # weights are reported before dropout


@pytest.mark.parametrize('kernel', ['softmax', 'relu'])
def test_one_graph_fused_path_matches_composed(monkeypatch, kernel):
    # without 'batch' the layer makes features chunk by chunk
    # (fused_kernel_attention); asking for attention weights takes the
    # whole-tensor path: the same dropout draw must give the same output and
    # gradients
    data = GRAPHS['random_N23_E101']
    conv = LinearAttentionConv(NUM_FEATURES, 4, heads=2, num_features=16,
                               kernel=kernel, dropout=0.3).double()
    x = data.x.double().requires_grad_()
    calls = []
    fused = linear_attention_conv.fused_kernel_attention
    monkeypatch.setattr(linear_attention_conv, 'fused_kernel_attention',
                        lambda *args: calls.append(1) or fused(*args))
    outs, grads = [], []
    for weights in (False, True):
        torch.manual_seed(5)
        out = conv(x, None, data.edge_index, return_attention_weights=weights)
        out = out[0] if weights else out
        outs.append(out)
        grads.append(torch.autograd.grad(
            (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(),
            [x, *conv.parameters()]))
    assert len(calls) == 1  # the first pass only
    assert_close(outs[0], outs[1])
    for a, b in zip(*grads):
        assert_close(a, b)


def test_lazy_in_channels():
    data = GRAPHS['path']
    conv = LinearAttentionConv(-1, 4, heads=2, num_features=8)
    assert conv(data.x).shape == (data.num_nodes, 8)
    assert conv.lin_query.weight.shape == (8, NUM_FEATURES)


def test_empty_batch():
    conv = LinearAttentionConv(NUM_FEATURES, 4, num_features=8)
    x = torch.randn(0, NUM_FEATURES)
    assert conv(x).shape == (0, 4)
    assert conv(x, torch.zeros(0, dtype=torch.long)).shape == (0, 4)


def test_compile_matches_eager():
    data = Batch.from_data_list([random_graph(9, 20),
                                 random_graph(13, 40, seed=1)])
    conv = LinearAttentionConv(NUM_FEATURES, 4, heads=2, num_features=16)
    assert_compile_matches_eager(Global(conv, num_graphs=2), data)


@pytest.mark.parametrize('dtype', [torch.float64, torch.float16,
                                   torch.bfloat16])
def test_dtypes(dtype):
    data = Batch.from_data_list([random_graph(9, 20),
                                 random_graph(13, 40, seed=1)])
    conv = LinearAttentionConv(NUM_FEATURES, 4, heads=2, num_features=32)
    edges = _complete_edges([9, 13])
    expected = conv(data.x, data.batch)
    conv = conv.to(dtype)
    x = data.x.to(dtype).requires_grad_()
    out, (_, alpha) = conv(x, data.batch, edges,
                           return_attention_weights=True)
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert alpha.dtype == (dtype if dtype == torch.float64 else torch.float32)
    tol = {torch.float64: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}
    torch.testing.assert_close(out.float(), expected, rtol=tol[dtype],
                               atol=tol[dtype])
    out.float().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_reset_parameters_and_repr():
    conv = LinearAttentionConv(16, 8, heads=2)
    assert_reset_parameters(conv)
    assert repr(conv) == 'LinearAttentionConv(16, 8, heads=2, num_features=256)'
    assert repr(LinearAttentionConv(16, 8, num_features=4, kernel='relu')) == \
        "LinearAttentionConv(16, 8, heads=1, num_features=4, kernel='relu')"


def test_bad_input():
    data = Batch.from_data_list([GRAPHS['path'], GRAPHS['star']])
    x, batch = data.x, data.batch
    conv = LinearAttentionConv(NUM_FEATURES, 4, num_features=8)
    with pytest.raises(ValueError, match=r"'num_features' \(0\) must be"):
        LinearAttentionConv(NUM_FEATURES, 4, num_features=0)
    with pytest.raises(ValueError, match=r"unknown 'kernel' \('gelu'\).*"
                       r"'softmax', 'relu'"):
        LinearAttentionConv(NUM_FEATURES, 4, kernel='gelu')
    with pytest.raises(ValueError, match=r"'redraw_interval' \(0\)"):
        LinearAttentionConv(NUM_FEATURES, 4, redraw_interval=0)
    with pytest.raises(ValueError, match=r"'heads' \(0\) must be"):
        LinearAttentionConv(NUM_FEATURES, 4, heads=0)
    with pytest.raises(ValueError, match='without bipartite'):
        LinearAttentionConv((NUM_FEATURES, NUM_FEATURES), 4)
    with pytest.raises(ValueError, match='without bipartite'):
        conv((x, x), batch)
    with pytest.raises(ValueError, match="'x' has 5 features.*in_channels=5"):
        conv(x[:, :5], batch)
    with pytest.raises(ValueError, match="'batch' has 11 entries but 'x' has "
                       "12 nodes"):
        conv(x, batch[:-1])
    with pytest.raises(ValueError, match=r"sorted.*batch\[7\] = 0 follows 1"
                       r".*argsort"):
        conv(x, batch.flip(0))
    with pytest.raises(ValueError, match=r"batch\[0\] = -1"):
        conv(x, batch - 1)
    with pytest.raises(ValueError, match='1-D integer tensor'):
        conv(x, batch.float())
    with pytest.raises(ValueError, match='graph 1 but num_graphs=1; pass '
                       'num_graphs=2'):
        conv(x, batch, num_graphs=1)
    with pytest.raises(ValueError, match="'num_graphs' \\(2\\) was given "
                       "without 'batch'"):
        conv(x, num_graphs=2)
    with pytest.raises(ValueError, match="needs the edges.*'edge_index'"):
        conv(x, batch, return_attention_weights=True)
    with pytest.raises(ValueError, match=r'edge 0 \(4 -> 5\) joins graph 0 '
                       'to graph 1'):
        conv(x, batch, torch.tensor([[4], [5]]))
    with pytest.raises(ValueError, match='source index 12 but there are 12'):
        conv(x, batch, torch.tensor([[12], [0]]))
