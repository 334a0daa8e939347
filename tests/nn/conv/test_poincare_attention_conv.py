import pytest
import torch

from pyg_attn.functional import expmap0, logmap0, project
from pyg_attn.functional.poincare import ball_margin
from pyg_attn.nn import PoincareAttentionConv
from pyg_attn.testing import (EDGE_DIM, NUM_FEATURES, assert_batch_independent,
                              assert_bipartite, assert_close,
                              assert_compile_matches_eager,
                              assert_edge_permutation_invariant,
                              assert_local_attention_properties,
                              assert_reset_parameters, bipartite_graph,
                              random_graph, reference_softmax, small_graphs)

GRAPHS = small_graphs()


def _conv(**kwargs):
    kwargs = dict(dict(heads=2, edge_dim=EDGE_DIM, tau=0.7), **kwargs)
    return PoincareAttentionConv(NUM_FEATURES, 4, **kwargs)


def _randomize_biases(conv, scale=0.3):
    with torch.no_grad():
        conv.bias.normal_(0, scale)
    return conv


def euclidean_reference(conv, x, edge_index, edge_attr=None):
    """The layer's c -> 0 limit with its own weights: linear maps plus bias,
    logits ``-2 |q_i - k_j| / tau`` (+ edge term), the weighted mean of the
    values; one destination at a time."""
    H, C = conv.heads, conv.out_channels
    src, dst = edge_index
    bias = conv.bias if conv.bias is not None else torch.zeros(3, H, C)
    q = (x @ conv.lin_query.weight.T).view(-1, H, C) + bias[0]
    k = (x @ conv.lin_key.weight.T).view(-1, H, C) + bias[1]
    v = (x @ conv.lin_value.weight.T).view(-1, H, C) + bias[2]
    logits = -2 * (q[dst] - k[src]).norm(dim=-1) / conv.tau  # [E, H]
    if edge_attr is not None:
        logits = logits + edge_attr @ conv.lin_edge.weight.T
    alpha = reference_softmax(logits, dst, x.size(0)).to(x.dtype)  # [E, H]
    out = torch.zeros(x.size(0), H, C, dtype=x.dtype).index_add_(
        0, dst, alpha.unsqueeze(-1) * v[src])  # [N, H, C]
    return out.reshape(-1, H * C) if conv.concat else out.mean(dim=1)


def gyromidpoint_reference(conv, x, edge_index, edge_attr):
    """The layer at c = 1, float64, one destination at a time: geoopt's
    distance and weighted midpoint (the per-node oracle of the Poincaré
    tests), heads combined in the tangent space."""
    gmath = pytest.importorskip('geoopt').manifolds.stereographic.math
    k = torch.tensor(-1.0, dtype=torch.float64)
    H, C = conv.heads, conv.out_channels
    src, dst = edge_index
    x = project(gmath.expmap0(x, k=k), c=1.0)

    def ball(lin, b):
        w = lin.weight.view(H, C, -1)  # one Möbius matvec per head's ball
        p = torch.stack([gmath.mobius_matvec(w[h], x, k=k)
                         for h in range(H)], dim=1)  # [N, H, C]
        return project(gmath.mobius_add(p, gmath.expmap0(b, k=k), k=k),
                       c=1.0)

    q = ball(conv.lin_query, conv.bias[0])
    key = ball(conv.lin_key, conv.bias[1])
    v = ball(conv.lin_value, conv.bias[2])
    logits = -gmath.dist(q[dst], key[src], k=k) / conv.tau
    logits = logits + edge_attr @ conv.lin_edge.weight.T
    out = torch.zeros(x.size(0), H, C, dtype=x.dtype)
    for i in range(x.size(0)):
        mask = dst == i
        if mask.any():
            alpha = torch.softmax(logits[mask], dim=0)  # [E_i, H]
            for h in range(H):
                out[i, h] = gmath.weighted_midpoint(v[src[mask], h],
                                                    alpha[:, h], k=k,
                                                    reducedim=[0])
    tangent = gmath.logmap0(out, k=k).reshape(-1, H * C)
    return project(gmath.expmap0(tangent, k=k), c=1.0)


def _scaled(data, dtype):
    """``data`` in ``dtype``; float32 features halved.  Float32 Poincaré
    coordinates resolve a point at hyperbolic radius r only to about
    ``ulp * e^r``: comparing two float32 evaluations at 1e-5 needs the
    points within r of about 4 of the origin (the full-size features put
    some at the margin, r = 6.2, where two summation orders differ by 3e-5;
    their float64 checks below are at 1e-9)."""
    data = data.clone()
    data.x = data.x.to(dtype) * (0.5 if dtype == torch.float32 else 1.0)
    data.edge_attr = data.edge_attr.to(dtype)
    return data


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32],
                         ids=['float64', 'float32'])
@pytest.mark.parametrize('graph', list(GRAPHS))
def test_pyg_native_properties(graph, dtype):
    conv = _randomize_biases(_conv(learn_c=True)).to(dtype)
    assert_local_attention_properties(conv, _scaled(GRAPHS[graph], dtype), 8)


@pytest.mark.parametrize('graph', ['multi_edge', 'random_N23_E101'])
def test_edge_permutation_invariant_near_boundary(graph):
    """Points close to the boundary, where a sequence of Möbius additions
    depends most on the order of the edges."""
    data = GRAPHS[graph].clone()
    data.x = data.x * 10  # expmap0 puts every node at the margin
    conv = _randomize_biases(_conv(heads=3, input_on_ball=False), 2.0)
    assert_edge_permutation_invariant(conv, data, seed=1)
    assert_edge_permutation_invariant(conv, data, seed=2)


def test_matches_geoopt_loop_reference():
    data = GRAPHS['random_N11_E37']
    conv = _randomize_biases(_conv(heads=2, c=1.0)).double()
    x, edge_attr = data.x.double() * 0.5, data.edge_attr.double()
    out = conv(x, data.edge_index, edge_attr)
    expected = gyromidpoint_reference(conv, x, data.edge_index, edge_attr)
    torch.testing.assert_close(out, expected, rtol=1e-7, atol=1e-7)


def test_gradients_match_geoopt_loop_reference():
    """The recomputed segments (the Möbius maps, the distance's tail) give
    the gradients of the plain reference, for the input and every parameter
    the reference reads."""
    data = GRAPHS['random_N11_E37']
    conv = _randomize_biases(_conv(heads=2, c=1.0)).double()
    x = (data.x.double() * 0.5).requires_grad_()
    edge_attr = data.edge_attr.double()
    out = conv(x, data.edge_index, edge_attr)
    expected = gyromidpoint_reference(conv, x, data.edge_index, edge_attr)
    names = ['lin_query.weight', 'lin_key.weight', 'lin_value.weight',
             'bias', 'lin_edge.weight', 'raw_tau']
    params = dict(conv.named_parameters())
    inputs = [x] + [params[n] for n in names]
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, inputs, grad)
    theirs = torch.autograd.grad(expected, inputs, grad)
    for name, a, b in zip(['x'] + names, ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7, msg=name)


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('config', [dict(), dict(concat=False),
                                    dict(edge_dim=None, bias=False)],
                         ids=['concat', 'mean', 'plain'])
def test_euclidean_limit(config, dtype):
    data = GRAPHS['random_N23_E101']
    conv = _conv(c=1e-6, heads=3, **config).to(dtype)
    if conv.bias is not None:
        _randomize_biases(conv)
    edge_attr = data.edge_attr.to(dtype) if conv.edge_dim else None
    x = data.x.to(dtype)
    out = conv(x, data.edge_index, edge_attr)
    expected = euclidean_reference(conv, x, data.edge_index, edge_attr)
    torch.testing.assert_close(out, expected, rtol=1e-3, atol=1e-3)
    # the limit is not trivially met: at c = 1 the layer is far from it
    conv.raw_c.fill_(0.5413)  # softplus -> 1
    far = conv(x, data.edge_index, edge_attr)
    assert (far - expected).abs().max() > 0.1


def test_bipartite():
    x, edge_index, edge_attr = bipartite_graph(num_features=(5, 6))
    conv = _randomize_biases(PoincareAttentionConv((5, 6), 4, heads=2,
                                                   edge_dim=EDGE_DIM))
    out = assert_bipartite(conv, x, edge_index, 8, edge_attr=edge_attr)
    assert (out[0] == 0).all()  # destination 0 has no incoming edge
    ball = PoincareAttentionConv((5, 6), 4, input_on_ball=True)
    on_ball = tuple(project(expmap0(t, c=1.0), c=1.0) for t in x)
    assert_bipartite(ball, on_ball, edge_index, 4)
    lazy = PoincareAttentionConv((-1, -1), 4, heads=2)
    assert lazy(x, edge_index).shape == (4, 8)
    assert lazy.lin_query.weight.shape == (8, 6)


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32],
                         ids=['float64', 'float32'])
def test_batch_independent(dtype):
    conv = _randomize_biases(_conv()).to(dtype)
    assert_batch_independent(conv, _scaled(GRAPHS['path'], dtype),
                             _scaled(GRAPHS['random_N11_E37'], dtype))


def test_attention_weights_and_zero_in_degree():
    data = GRAPHS['zero_in_degree']  # nodes 0 and 4 have no incoming edge
    conv = _randomize_biases(_conv())
    out, (edge_index, alpha) = conv(data.x, data.edge_index, data.edge_attr,
                                    return_attention_weights=True)
    assert edge_index is data.edge_index and alpha.shape == (6, 2)
    assert (out[[0, 4]] == 0).all() and (out[1:4].abs().sum(-1) > 0).all()
    assert (out.norm(dim=-1) < 1).all()


def test_output_on_ball_and_euclidean_output():
    data = GRAPHS['random_N23_E101']
    conv = _randomize_biases(_conv(c=2.0))
    out = conv(data.x, data.edge_index, data.edge_attr)
    assert (out.norm(dim=-1) <= (1 - ball_margin(out.dtype)) / 2**0.5 *
            (1 + 1e-6)).all()
    conv.euclidean_output = True
    tangent = conv(data.x, data.edge_index, data.edge_attr)
    assert_close(tangent, logmap0(out, c=conv.c))
    # stacking: a ball output feeds a layer with input_on_ball=True
    nxt = PoincareAttentionConv(8, 3, c=2.0, input_on_ball=True)
    assert torch.isfinite(nxt(out, data.edge_index)).all()


@pytest.mark.parametrize('input_on_ball', [True, False])
def test_float32_near_boundary_finite(input_on_ball):
    c = 1.7
    data = random_graph(40, 200, seed=3)
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(40, NUM_FEATURES, generator=gen)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    if input_on_ball:  # norms log-uniform in [1e-15, the boundary margin]
        gap = torch.logspace(0, torch.log10(torch.tensor(
            ball_margin(torch.float32))).item(), 40)
        norms = (1 - gap) / c**0.5
        norms[:3] = torch.tensor([0.0, 1e-15, 1e-8])
    else:  # huge Euclidean features saturate expmap0
        norms = torch.logspace(-15, 4, 40)
    x = (direction * norms.unsqueeze(-1)).requires_grad_()
    conv = _randomize_biases(_conv(c=c, learn_c=True,
                                   input_on_ball=input_on_ball), 3.0)
    out = conv(x, data.edge_index, data.edge_attr)
    assert torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    assert torch.isfinite(x.grad).all()
    for name, param in conv.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), \
            name


def test_learnable_curvature_and_temperature():
    data = GRAPHS['random_N23_E101']
    conv = _conv(c=0.5, learn_c=True, tau=2.0)
    assert torch.allclose(conv.c, torch.tensor(0.5))
    assert torch.allclose(conv.tau, torch.tensor([2.0, 2.0]))
    conv(data.x, data.edge_index, data.edge_attr).sum().backward()
    assert conv.raw_c.grad.abs() > 0 and (conv.raw_tau.grad.abs() > 0).all()
    fixed = _conv(c=0.5, learn_tau=False)
    assert [n for n, _ in fixed.named_parameters()
            if n.startswith('raw')] == []
    assert {'raw_c', 'raw_tau'} <= set(fixed.state_dict())


def test_float64_compute_dtype():
    data = GRAPHS['random_N23_E101']
    conv = _randomize_biases(_conv(compute_dtype=torch.float64))
    out = conv(data.x, data.edge_index, data.edge_attr)
    assert out.dtype == torch.float32
    reference = _conv().double()
    reference.load_state_dict(conv.state_dict())
    expected = reference(data.x.double(), data.edge_index,
                         data.edge_attr.double())
    torch.testing.assert_close(out, expected.float(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_inputs_computed_in_float32(dtype):
    data = GRAPHS['random_N23_E101']
    conv = _randomize_biases(_conv())
    expected = conv(data.x, data.edge_index, data.edge_attr)
    x = data.x.to(dtype).requires_grad_()
    out, (_, alpha) = conv.to(dtype)(x, data.edge_index,
                                     data.edge_attr.to(dtype),
                                     return_attention_weights=True)
    assert out.dtype == dtype and alpha.dtype == torch.float32
    tol = 1e-2 if dtype == torch.float16 else 5e-2
    torch.testing.assert_close(out.float(), expected, rtol=tol, atol=tol)
    out.float().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_compile_matches_eager():
    conv = _randomize_biases(_conv(learn_c=True))
    assert_compile_matches_eager(conv,
                                 _scaled(random_graph(13, 40), torch.float32))


def test_reset_parameters_and_repr():
    conv = _conv(c=0.5, learn_c=True)
    with torch.no_grad():
        conv.raw_c.add_(1.0)
    assert_reset_parameters(conv)
    assert torch.allclose(conv.c, torch.tensor(0.5))
    assert repr(conv) == 'PoincareAttentionConv(6, 4, heads=2, c=0.5)'


def test_bad_input():
    data = GRAPHS['path']
    x, edge_index, edge_attr = data.x, data.edge_index, data.edge_attr
    for c in (0.0, -1.0, float('nan')):
        with pytest.raises(ValueError, match=rf"'c' \({c}\) must be a finite"):
            _conv(c=c)
    with pytest.raises(ValueError, match=r"'tau' \(0\) must be .* > 0"):
        _conv(tau=0)
    with pytest.raises(ValueError, match="'compute_dtype'"):
        _conv(compute_dtype=torch.float16)
    conv = _conv(c=4.0, input_on_ball=True)  # radius 1/2
    bad = project(x, c=4.0)
    bad[1] = bad[1] / bad[1].norm() * 2.0
    bad[3] = bad[3] / bad[3].norm() * 0.50001
    with pytest.raises(ValueError, match=r"2 of the 5 rows of 'x_src' lie "
                       r"outside .* c=4 .*1/sqrt\(c\) = 0\.5.*largest norm "
                       r"is 2\).*input_on_ball=False"):
        conv(bad, edge_index, edge_attr)
    assert torch.isfinite(conv(project(x, c=4.0), edge_index,
                               edge_attr)).all()
    with pytest.raises(ValueError, match="'x_dst'"):
        PoincareAttentionConv(6, 4, input_on_ball=True)(
            (project(x, c=1.0), x * 10), edge_index)
    with pytest.raises(ValueError, match='no .edge_attr. was given'):
        conv(project(x, c=4.0), edge_index)
    with pytest.raises(ValueError, match='destination index -1'):
        conv(x, torch.tensor([[0], [-1]]), edge_attr[:1])
    with pytest.raises(ValueError, match=r"'heads' \(0\) must be"):
        _conv(heads=0)
