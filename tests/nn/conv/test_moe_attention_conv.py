import pytest
import torch
from torch_geometric.nn import GATConv, GCNConv, SAGEConv

from pyg_attn.nn import (DotProductAttentionConv, EdgeGATConv,
                         EuclideanWrapper, FlashAttentionConv,
                         LinearAttentionConv, MoEAttentionConv)
from pyg_attn.nn.conv.moe_attention_conv import cv_squared, prob_in_top_k
from pyg_attn.testing import (EDGE_DIM, NUM_FEATURES, assert_batch_independent,
                              assert_bipartite, assert_close,
                              assert_compile_matches_eager,
                              assert_edge_permutation_invariant,
                              assert_finite_gradients,
                              assert_node_permutation_equivariant,
                              assert_output_shape, assert_reset_parameters,
                              bipartite_graph, layer_inputs, random_graph,
                              small_graphs)

GRAPHS = small_graphs()
OUT = 8  # every expert returns 8 channels


def _experts(in_channels=NUM_FEATURES, edge_dim=EDGE_DIM):
    """Five experts of output width 8: ours with edge features (sparse
    dispatch), PyG's GATConv with self-loops (sparse) and GCNConv (no
    bipartite input: run on the whole graph)."""
    return [
        DotProductAttentionConv(in_channels, 4, heads=2, edge_dim=edge_dim),
        EdgeGATConv(in_channels, 4, heads=2, edge_dim=edge_dim),
        FlashAttentionConv(in_channels, OUT, heads=3, concat=False,
                           edge_dim=edge_dim, chunk_size=5),
        GATConv(in_channels, 4, heads=2),
        GCNConv(in_channels, OUT),
    ]


def _moe(top_k=2, experts=None, **kwargs):
    experts = _experts() if experts is None else experts
    return MoEAttentionConv(experts, NUM_FEATURES, top_k=top_k, **kwargs)


def _expert_outputs(conv, data):
    """Each expert alone on the whole graph, ``[N, X, C]``."""
    outs = []
    for expert in conv.experts:
        outs.append(expert(data.x, data.edge_index,
                           **layer_inputs(expert, data)))
    return torch.stack(outs, dim=1)


def _double(data):
    data = data.clone()
    data.x, data.edge_attr = data.x.double(), data.edge_attr.double()
    return data


def test_dispatch_modes_and_tensors_from_signatures():
    conv = _moe()
    assert conv.sparse_dispatch == [True, True, True, True, False]
    assert conv.expert_keys == [('edge_attr', )] * 3 + [(), ()]
    linear = LinearAttentionConv(NUM_FEATURES, OUT)
    conv = _moe(experts=[linear, SAGEConv(NUM_FEATURES, OUT)])
    assert conv.sparse_dispatch == [False, True]  # takes batch; bipartite
    assert conv.expert_keys == [('batch', ), ()]


@pytest.mark.parametrize('dense', [False, True], ids=['sparse', 'dense'])
def test_all_experts_equal_gates_give_the_mean(dense):
    data = _double(GRAPHS['random_N23_E101'])
    conv = _moe(top_k=5, noisy_gating=False, dense=dense).double().eval()
    torch.nn.init.zeros_(conv.router.weight)  # equal logits: gates 1/5
    out, _, counts = conv(data.x, data.edge_index, data.edge_attr,
                          return_aux=True)
    assert_close(out, _expert_outputs(conv, data).mean(dim=1))
    assert counts.tolist() == [data.num_nodes] * 5


@pytest.mark.parametrize('top_k', [1, 2, 3])
@pytest.mark.parametrize('graph', ['self_loops', 'zero_in_degree',
                                   'multi_edge', 'random_N23_E101'])
def test_routed_node_gets_expert_output_on_whole_graph(graph, top_k):
    """Exactly (float64) sum_{e in top-k} g_ie * expert_e(whole graph)_i;
    with top_k=1 the node's own expert's output."""
    data = _double(GRAPHS[graph])
    conv = _moe(top_k=top_k).double().eval()
    out = conv(data.x, data.edge_index, data.edge_attr)
    logits = conv.router(data.x)  # [N, X]
    top, index = logits.topk(top_k, dim=-1)
    gates = torch.zeros_like(logits).scatter(1, index, top.softmax(-1))
    expected = (gates.unsqueeze(-1) * _expert_outputs(conv, data)).sum(1)
    assert_close(out, expected)
    if top_k == 1:
        rows = torch.arange(data.num_nodes)
        assert_close(out, _expert_outputs(conv, data)[rows, index[:, 0]])
    if data.num_nodes > 20:  # really mixes experts
        assert len(set(index[:, 0].tolist())) > 2


def test_experts_see_only_routed_nodes_and_edges():
    data = random_graph(40, 300)
    conv = _moe(top_k=2).eval()
    seen = {}

    def record(i):
        def hook(module, args, kwargs):
            (x_src, x_dst), edge_index = args[0], kwargs['edge_index']
            edge_attr = kwargs.get('edge_attr', edge_index.t())
            seen[i] = (x_src.size(0), x_dst.size(0), edge_index.size(1),
                       edge_attr.size(0))
        return hook

    for i, expert in enumerate(conv.experts[:4]):
        expert.register_forward_pre_hook(record(i), with_kwargs=True)
    _, _, counts = conv(data.x, data.edge_index, data.edge_attr,
                        return_aux=True)
    index = conv.router(data.x).topk(2, dim=-1).indices
    for i in range(4):
        routed = (index == i).any(-1)
        edges = int(routed[data.edge_index[1]].sum())
        assert seen[i] == (40, int(routed.sum()), edges, edges)
        assert seen[i][1] == counts[i] < 40 and edges < 300


@pytest.mark.parametrize('bipartite', [False, True],
                         ids=['square', 'bipartite'])
def test_sparse_equals_dense_outputs_and_gradients(bipartite):
    """In training (noisy gating, the same noise draw) sparse and dense
    dispatch give the same output, aux loss and gradients."""
    if bipartite:
        x, edge_index, edge_attr = bipartite_graph(num_src=13, num_dst=9,
                                                   num_edges=60)
        experts = _experts()[:4]
    else:
        data = GRAPHS['random_N23_E101']
        x, edge_index, edge_attr = data.x, data.edge_index, data.edge_attr
        experts = _experts()
    conv = _moe(top_k=2, experts=experts).double().train()
    x = (tuple(t.double() for t in x) if bipartite else x.double())
    edge_attr = edge_attr.double()
    results = []
    for dense in (False, True):
        conv.dense = dense
        torch.manual_seed(1)
        out, aux, counts = conv(x, edge_index, edge_attr, return_aux=True)
        params = list(conv.parameters())
        grads = torch.autograd.grad((out * out.detach().cos()).sum() + aux,
                                    params, allow_unused=True)
        results.append((out, aux, counts, grads))
    (out, aux, counts, grads), (out_d, aux_d, counts_d, grads_d) = results
    assert_close(out, out_d)
    assert_close(aux, aux_d)
    assert torch.equal(counts, counts_d)
    for name, g, g_d in zip(dict(conv.named_parameters()), grads, grads_d):
        assert (g is None) == (g_d is None), name
        if g is not None:
            assert_close(g, g_d, name)


def test_gradient_reaches_router_and_noise():
    data = random_graph(30, 120)
    conv = _moe(top_k=2).train()
    out = conv(data.x, data.edge_index, data.edge_attr)
    out.pow(2).sum().backward()
    assert conv.router.weight.grad.abs().sum() > 0
    conv.zero_grad()
    conv(data.x, data.edge_index, data.edge_attr)
    conv.aux_loss.backward()
    assert conv.router.weight.grad.abs().sum() > 0
    assert conv.router_noise.weight.grad.abs().sum() > 0


def _two_expert_moe(direction, noisy=False):
    conv = MoEAttentionConv([DotProductAttentionConv(2, 3) for _ in range(2)],
                            2, top_k=1, noisy_gating=noisy, aux_loss_coef=0.5)
    with torch.no_grad():
        conv.router.weight.copy_(torch.tensor(direction))
    return conv


def test_aux_loss_minimal_for_uniform_routing():
    # half the nodes have feature +1, half -1: routing by the sign of x_0 is
    # uniform, routing by a constant feature sends everybody to expert 0
    n = 200
    x = torch.stack([torch.ones(n), torch.ones(n)], dim=1)
    x[::2, 0] = -1
    edge_index = torch.randint(0, n, (2, 600))
    uniform = _two_expert_moe([[4.0, 0.0], [-4.0, 0.0]]).eval()
    skewed = _two_expert_moe([[0.0, 4.0], [0.0, -4.0]]).eval()
    _, aux_uniform, counts = uniform(x, edge_index, return_aux=True)
    _, aux_skewed, counts_skewed = skewed(x, edge_index, return_aux=True)
    assert counts.tolist() == [100, 100] and counts_skewed.tolist() == [200, 0]
    assert aux_uniform == 0
    # importance = load = [200, 0]: CV^2 = var / mean^2 = 20000 / 10000 each
    assert aux_skewed.item() == pytest.approx(0.5 * (2 + 2))
    for conv in (uniform, skewed):  # training: noisy gates, smooth load
        conv.router_noise = torch.nn.Linear(2, 2, bias=False)
        torch.nn.init.zeros_(conv.router_noise.weight)
        conv.noisy_gating = True
    uniform, skewed = uniform.train(), skewed.train()
    uniform.top_k = skewed.top_k = 1
    torch.manual_seed(0)
    uniform(x, edge_index)
    skewed(x, edge_index)
    assert 0 <= uniform.aux_loss < 0.01 < 1.5 < skewed.aux_loss


def test_aux_loss_zero_when_all_experts_chosen():
    data = random_graph(20, 60)
    conv = _moe(top_k=5, noisy_gating=False).eval()
    torch.nn.init.zeros_(conv.router.weight)
    conv(data.x, data.edge_index, data.edge_attr)
    assert 0 <= conv.aux_loss < 1e-12  # rounding of equal sums
    assert conv.expert_counts.tolist() == [20] * 5


def test_cv_squared():
    assert cv_squared(torch.tensor([3.0, 3.0, 3.0])) == 0
    t = torch.tensor([1.0, 2.0, 6.0])
    assert cv_squared(t).item() == pytest.approx(t.var().item() / 9)
    assert cv_squared(torch.tensor([5.0])) == 0


@pytest.mark.parametrize('k', [1, 2])
def test_prob_in_top_k_matches_monte_carlo(k):
    """Averaged over the others' noise, the smooth estimate is the
    probability of being in the top k (4000 draws: binomial sd <= 0.008)."""
    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(3, 4, generator=gen).repeat(4000, 1)  # [3M, 4]
    noise_std = (torch.rand(3, 4, generator=gen) + 0.3).repeat(4000, 1)
    noisy = clean + torch.randn(clean.shape, generator=gen) * noise_std
    top_values, top_index = noisy.topk(k + 1, dim=-1)
    estimate = prob_in_top_k(clean, noisy, noise_std, top_values, k)
    chosen = torch.zeros_like(noisy).scatter(1, top_index[:, :k], 1.0)
    estimate = estimate.view(4000, 3, 4).mean(0)
    frequency = chosen.view(4000, 3, 4).mean(0)
    torch.testing.assert_close(estimate, frequency, rtol=0, atol=0.03)
    torch.testing.assert_close(estimate.sum(-1), torch.full((3, ), float(k)),
                               rtol=0, atol=0.03)


@pytest.mark.parametrize('graph', list(GRAPHS))
def test_pyg_native_properties(graph):
    data = GRAPHS[graph]
    conv = _moe(top_k=2)
    assert_output_shape(conv, data, OUT)
    assert_edge_permutation_invariant(conv, data)
    assert_node_permutation_equivariant(conv, data)
    assert_finite_gradients(conv, data)


def test_batch_independent():
    conv = _moe(top_k=2)
    assert_batch_independent(conv, GRAPHS['path'], GRAPHS['random_N11_E37'])


def test_batch_reaches_experts_that_take_it():
    """LinearAttentionConv attends over each graph of the batch: it runs on
    the whole batch (not dispatched) and gets ``batch``."""
    experts = [LinearAttentionConv(NUM_FEATURES, OUT, num_features=16),
               DotProductAttentionConv(NUM_FEATURES, OUT)]
    conv = _moe(top_k=1, experts=experts, noisy_gating=False)
    assert_batch_independent(conv, GRAPHS['path'], GRAPHS['random_N11_E37'])
    data = GRAPHS['random_N23_E101']
    out = conv(data.x, data.edge_index)
    conv.dense = True
    assert_close(out, conv(data.x, data.edge_index))


def test_bipartite():
    x, edge_index, edge_attr = bipartite_graph(num_src=9, num_dst=5,
                                               num_edges=30)
    conv = _moe(top_k=2, experts=_experts()[:4])
    assert_bipartite(conv, x, edge_index, OUT, edge_attr=edge_attr)
    with pytest.raises(ValueError, match=r'at least as many source nodes.*'
                       r'got 5 < 9; use dense=True'):
        conv((x[1], x[0]), edge_index.flip(0), edge_attr)


def test_euclidean_wrapper():
    """A wrapped expert is dispatched (its inner signature is read) and gets
    exactly output_map(expert(input_map(x)))."""
    data = _double(GRAPHS['random_N23_E101'])
    inner = EdgeGATConv(NUM_FEATURES, 4, heads=2, edge_dim=EDGE_DIM)
    wrapped = EuclideanWrapper(inner, input_map=torch.tanh,
                               output_map=torch.sinh)
    conv = _moe(top_k=1, experts=[wrapped, _experts()[0]]).double().eval()
    assert conv.sparse_dispatch == [True, True]
    assert conv.expert_keys[0] == ('edge_attr', )
    out = conv(data.x, data.edge_index, data.edge_attr)
    routed = conv.router(data.x).argmax(-1) == 0
    expected = torch.sinh(inner(torch.tanh(data.x), data.edge_index,
                                data.edge_attr))
    assert 0 < int(routed.sum()) < data.num_nodes
    assert_close(out[routed], expected[routed])
    assert repr(wrapped).startswith('EuclideanWrapper(EdgeGATConv(6, 4')
    assert_reset_parameters(wrapped)


def test_poincare_expert_euclidean_in_and_out():
    """A hyperbolic expert (Euclidean input mapped in by the layer itself,
    its point on the ball mapped out by logmap0 at its learnable curvature)
    is dispatched like the others; gradients reach the curvature."""
    from pyg_attn.functional import logmap0
    from pyg_attn.nn.conv.poincare_attention_conv import PoincareAttentionConv
    data = _double(GRAPHS['random_N23_E101'])
    poincare = PoincareAttentionConv(NUM_FEATURES, 4, heads=2,
                                     edge_dim=EDGE_DIM, learn_c=True)
    wrapped = EuclideanWrapper(poincare,
                               output_map=lambda y: logmap0(y, c=poincare.c))
    conv = _moe(top_k=1, experts=[wrapped, _experts()[0]]).double().eval()
    assert conv.sparse_dispatch == [True, True]
    out = conv(data.x, data.edge_index, data.edge_attr)
    routed = conv.router(data.x).argmax(-1) == 0
    expected = logmap0(poincare(data.x, data.edge_index, data.edge_attr),
                       c=poincare.c)
    assert 0 < int(routed.sum()) < data.num_nodes
    assert_close(out[routed], expected[routed])
    conv.dense = True
    assert_close(conv(data.x, data.edge_index, data.edge_attr), out)
    conv(data.x, data.edge_index, data.edge_attr).sum().backward()
    assert poincare.raw_c.grad is not None and poincare.raw_c.grad != 0


def test_compile_dense_fullgraph():
    conv = _moe(top_k=2, experts=_experts()[:2], dense=True)
    assert_compile_matches_eager(conv, random_graph(13, 40))


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason='inductor miscompiles '
                   'DotProductAttentionConv without edge_attr when its output '
                   'is multiplied by a function of x under autograd (also '
                   'outside MoE: lin(x)[:, :1] * conv(x, edge_index))')
def test_compile_dense_fullgraph_dot_product_without_edge_features():
    experts = [DotProductAttentionConv(NUM_FEATURES, 4, heads=2)
               for _ in range(2)]
    conv = _moe(top_k=1, experts=experts, dense=True)
    assert_compile_matches_eager(conv, random_graph(13, 40))


@pytest.mark.parametrize('backend', [
    'aot_eager',
    pytest.param('inductor', marks=pytest.mark.slow),
])
def test_compile_sparse_with_graph_breaks(backend):
    """Sparse dispatch breaks the graph at ``nonzero``: compiled without
    ``fullgraph`` it gives the eager output and gradients."""
    data = random_graph(13, 40)
    conv = _moe(top_k=2, experts=_experts()[:2]).eval()
    torch._dynamo.reset()
    compiled = torch.compile(conv, backend=backend)
    x, x_c = data.x.clone().requires_grad_(), data.x.clone().requires_grad_()
    eager = conv(x, data.edge_index, data.edge_attr)
    out = compiled(x_c, data.edge_index, data.edge_attr)
    assert_close(out, eager)
    grad = torch.randn_like(eager)
    eager.backward(grad)
    out.backward(grad)
    assert_close(x_c.grad, x.grad)
    torch._dynamo.reset()
    with pytest.raises(Exception, match='nonzero|[Dd]ata.dependent'):
        torch.compile(conv, fullgraph=True, backend=backend)(
            data.x, data.edge_index, data.edge_attr)
    torch._dynamo.reset()


def test_half_precision_gates_in_float32():
    data = random_graph(15, 60)
    conv = _moe(top_k=2, experts=_experts()[:2]).eval()
    expected = conv(data.x, data.edge_index, data.edge_attr)
    conv = conv.to(torch.bfloat16)
    out = conv(data.x.bfloat16(), data.edge_index, data.edge_attr.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=5e-2, atol=5e-2)


def test_reset_parameters_and_repr():
    conv = _moe(top_k=2)
    assert_reset_parameters(conv)  # router and every expert redrawn
    assert (conv.router_noise.weight == 0).all()
    assert repr(conv) == 'MoEAttentionConv(6, 8, num_experts=5, top_k=2)'
    assert _moe(noisy_gating=False).router_noise is None


def test_bad_input():
    with pytest.raises(ValueError, match="'experts' is empty"):
        MoEAttentionConv([], NUM_FEATURES)
    for top_k in (0, 6):
        with pytest.raises(ValueError, match=rf"'top_k' \({top_k}\) must be "
                           r"an integer in 1\.\.5"):
            _moe(top_k=top_k)
    with pytest.raises(ValueError, match=r'different output sizes \(0: 8, '
                       r'1: 12\)'):
        MoEAttentionConv([DotProductAttentionConv(6, 4, heads=2),
                          EdgeGATConv(6, 4, heads=3)], 6, top_k=1)
    with pytest.raises(ValueError, match=r"different output sizes "
                       r"\(out_channels: 5, 0: 8\)"):
        MoEAttentionConv([GCNConv(6, 8)], 6, top_k=1, out_channels=5)
    with pytest.raises(ValueError, match='expert 1 .* is not a torch'):
        MoEAttentionConv([GCNConv(6, 8), torch.relu], 6, top_k=1)
    with pytest.raises(ValueError, match=r"'aux_loss_coef' \(-1\.0\)"):
        _moe(aux_loss_coef=-1.0)
    with pytest.raises(ValueError, match="pass out_channels="):
        MoEAttentionConv([torch.nn.Identity()], 6, top_k=1)

    data = GRAPHS['path']
    conv = _moe()
    with pytest.raises(ValueError, match=r"'edge_attr' has 3 rows but "
                       r"'edge_index' has 8 edges"):
        conv(data.x, data.edge_index, data.edge_attr[:3])
    with pytest.raises(ValueError, match="'x_src' has 5 features"):
        conv(data.x[:, :5], data.edge_index)

    class Wide(torch.nn.Module):  # claims 8 channels, returns 9
        out_channels = 8

        def forward(self, x, edge_index):
            return x.new_zeros(x.size(0), 9)

    conv = MoEAttentionConv([Wide(), GCNConv(6, 8)], 6, top_k=2,
                            dense=True)
    with pytest.raises(ValueError, match=r'expert 0 \(Wide\) returned shape '
                       r'\(5, 9\), expected \(5, 8\)'):
        conv(data.x, data.edge_index)
