import math

import pytest
import torch

from pyg_attn.functional import (clip_tangent, dist, edge_dist, expmap,
                                 expmap0, expmap0_add, lambda_x, logmap,
                                 logmap0, mobius_add, mobius_matvec,
                                 mobius_scalar_mul, project,
                                 scatter_gyromidpoint)
from pyg_attn.functional.poincare import ball_margin

geoopt = pytest.importorskip('geoopt')
gmath = geoopt.manifolds.stereographic.math

CURVATURES = [0.3, 1.0, 2.5]
DIM = 5


def _points(n, c, max_gap=1e-5, dtype=torch.float64, seed=0):
    """``n`` points with ``1 - sqrt(c)|x|`` log-uniform from 1 (the origin)
    down to ``max_gap`` (near the boundary), plus the origin itself."""
    gen = torch.Generator().manual_seed(seed)
    direction = torch.randn(n, DIM, generator=gen, dtype=torch.float64)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    gap = torch.logspace(0, math.log10(max_gap), n, dtype=torch.float64)
    gap = gap[torch.randperm(n, generator=gen)]
    x = direction * ((1 - gap) / c**0.5).unsqueeze(-1)
    x[0] = 0
    return x.to(dtype)


def _tangent(n, seed=1, dtype=torch.float64):
    """Tangent vectors with log-uniform norms from 1e-15 to 8."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(n, DIM, generator=gen, dtype=torch.float64)
    norms = torch.logspace(-15, math.log10(8), n, dtype=torch.float64)
    return (u / u.norm(dim=-1, keepdim=True) * norms.unsqueeze(-1)).to(dtype)


def _close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6)


def _k(c):
    return torch.tensor(-c, dtype=torch.float64)


def _unclamped(x, y, c):
    """Pairs where geoopt's artanh clamp (1 - 1e-7) is inactive: beyond it
    geoopt's own distance is wrong (it saturates near 16 / sqrt(c))."""
    w = gmath.mobius_add(-x, y, k=_k(c))
    return c**0.5 * w.norm(dim=-1) < 1 - 1e-7


@pytest.mark.parametrize('c', CURVATURES)
def test_matches_geoopt(c):
    k = _k(c)
    x, y = _points(200, c, seed=0), _points(200, c, seed=1)
    u = _tangent(200)
    _close(mobius_add(x, y, c=c), gmath.mobius_add(x, y, k=k))
    _close(lambda_x(x, c=c), gmath.lambda_x(x, k=k))
    _close(expmap0(u, c=c), gmath.expmap0(u, k=k))
    _close(logmap0(x, c=c), gmath.logmap0(x, k=k))
    small = u * 0.1  # keep exp_x(u) away from geoopt's clamps
    _close(expmap(x, small, c=c), gmath.expmap(x, small, k=k))
    r = torch.linspace(-3, 3, 200, dtype=torch.float64).unsqueeze(-1)
    _close(mobius_scalar_mul(r, x, c=c), gmath.mobius_scalar_mul(r, x, k=k))
    m = torch.randn(7, DIM, dtype=torch.float64)
    m[3] = 0  # a zero row
    _close(mobius_matvec(m, x, c=c), gmath.mobius_matvec(m, x, k=k))
    zero = torch.zeros(3, DIM, dtype=torch.float64)
    _close(mobius_matvec(zero, x[:4], c=c), torch.zeros(4, 3,
                                                        dtype=x.dtype))
    _close(project(x * 1.1, c=c), gmath.project(x * 1.1, k=k))

    ok = _unclamped(x, y, c)
    assert ok.sum() > 100  # most pairs
    _close(dist(x, y, c=c)[ok], gmath.dist(x, y, k=k)[ok])
    _close(logmap(x, y, c=c)[ok], gmath.logmap(x, y, k=k)[ok])


@pytest.mark.parametrize('c', CURVATURES)
def test_dist_near_boundary_matches_high_precision(c):
    """Where geoopt saturates, the distance still matches an mpmath
    evaluation of the arcosh form at 50 digits."""
    mpmath = pytest.importorskip('mpmath')
    mpmath.mp.dps = 50
    x, y = _points(200, c, seed=0), _points(200, c, seed=1)
    far = ~_unclamped(x, y, c)
    assert far.sum() > 5
    ours = dist(x, y, c=c)[far]
    for d, a, b in zip(ours, x[far], y[far]):
        xa = [mpmath.mpf(float(v)) for v in a]
        yb = [mpmath.mpf(float(v)) for v in b]
        sq = sum((p - q)**2 for p, q in zip(xa, yb))
        na, nb = sum(p * p for p in xa), sum(q * q for q in yb)
        arg = 1 + 2 * c * sq / ((1 - c * na) * (1 - c * nb))
        expected = float(mpmath.acosh(arg) / mpmath.sqrt(c))
        assert abs(float(d) - expected) <= 1e-6 * max(1.0, expected)
    # a logmap between near-boundary points keeps its length d_c / lambda_x
    lam = lambda_x(x, c=c)
    length = logmap(x, y, c=c).norm(dim=-1)
    _close(length[far] * lam[far], ours)


@pytest.mark.parametrize('c', CURVATURES)
def test_identities(c):
    x, y = _points(200, c, seed=0), _points(200, c, seed=1)
    u = _tangent(200)
    z = mobius_add(x, y, c=c)
    # where x + y lies within 1e-7 of the boundary, float64 cannot resolve
    # it well enough to cancel back to y (geoopt has the same error there)
    resolved = 1 - c**0.5 * z.norm(dim=-1) > 1e-7
    assert resolved.sum() > 150
    _close(mobius_add(-x, z, c=c)[resolved], y[resolved])
    inside = u.norm(dim=-1) < 6  # tanh(sqrt(c) |u|) still resolvable
    _close(logmap0(expmap0(u, c=c), c=c)[inside], u[inside])
    _close(expmap0(logmap0(x, c=c), c=c), x)
    assert (dist(x, x, c=c) == 0).all()
    _close(dist(x, y, c=c), dist(y, x, c=c))
    _close(dist(torch.zeros_like(x), x, c=c),
           2 * logmap0(x, c=c).norm(dim=-1))
    near = dist(x, y, c=c) < 20
    _close(expmap(x, logmap(x, y, c=c), c=c)[near], y[near])
    _close(mobius_matvec(torch.eye(DIM, dtype=x.dtype), x, c=c), x)
    _close(mobius_scalar_mul(2.0, x[:50], c=c),
           mobius_add(x[:50], x[:50], c=c))


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_project(dtype):
    c = 2.0
    x = _points(100, c, dtype=dtype) * 1.5
    p = project(x, c=c)
    max_norm = (1 - ball_margin(dtype)) / c**0.5
    assert (p.norm(dim=-1) <= max_norm * (1 + 1e-6)).all()
    inside = x.norm(dim=-1) <= max_norm
    assert torch.equal(p[inside], x[inside])


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_fused_helpers_match_their_compositions(dtype):
    c = 1.3
    u = _tangent(300, dtype=dtype).view(100, 3, DIM)  # past the margin too
    y = _points(3, c, max_gap=0.05, dtype=dtype, seed=4)  # a bias [H, C]
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(
        rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        expmap0_add(u, y, c=c),
        project(mobius_add(expmap0(u, c=c), y, c=c), c=c), **tol)
    torch.testing.assert_close(expmap0_add(u, None, c=c),
                               project(expmap0(u, c=c), c=c), **tol)
    if dtype == torch.float64:  # the round trip is exact enough here only
        torch.testing.assert_close(
            clip_tangent(u, c=c),
            logmap0(project(expmap0(u, c=c), c=c), c=c), **tol)
    short = u.norm(dim=-1) < 2
    assert torch.equal(clip_tangent(u, c=c)[short], u[short])


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_finite_gradients(dtype):
    """Log-uniform norms from 1e-15 up to the boundary margin, every
    function, float32 and float64."""
    c = torch.tensor(1.5, dtype=dtype, requires_grad=True)
    n = 300
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(2, n, DIM, generator=gen, dtype=dtype)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    radius = 1 - ball_margin(dtype)
    norms = torch.logspace(-15, math.log10(radius), n, dtype=dtype)
    x0 = direction[0] * norms.unsqueeze(-1) / 1.5**0.5
    y0 = direction[1] * norms.flip(0).unsqueeze(-1) / 1.5**0.5
    x0[:3] = 0  # the origin too
    x = x0.clone().requires_grad_()
    y = y0.clone().requires_grad_()
    m = torch.randn(4, DIM, dtype=dtype, requires_grad=True)
    index = torch.randint(0, 20, (n, ), generator=gen)
    weights = torch.rand(n, generator=gen, dtype=dtype)
    outputs = {
        'mobius_add': mobius_add(x, y, c=c),
        'mobius_scalar_mul': mobius_scalar_mul(0.7, x, c=c),
        'mobius_matvec': mobius_matvec(m, x, c=c),
        'expmap0': expmap0(x, c=c),
        'logmap0': logmap0(x, c=c),
        'expmap': expmap(x, y, c=c),
        'logmap': logmap(x, y, c=c),
        'dist': dist(x, y, c=c),
        'dist_self': dist(x, x, c=c),
        'lambda_x': lambda_x(x, c=c),
        'project': project(x * 2, c=c),
        'gyromidpoint': scatter_gyromidpoint(x, weights, index, 20, c=c),
        'expmap0_add': expmap0_add(x * 1e3, y[:1], c=c),
        'clip_tangent': clip_tangent(x * 1e3, c=c),
        'edge_dist': edge_dist(x.unsqueeze(1), y.unsqueeze(1), index,
                               index.flip(0), c=c),
    }
    for name, out in outputs.items():
        assert torch.isfinite(out).all(), name
        grads = torch.autograd.grad(out.sum(), [x, y, c, m],
                                    allow_unused=True)
        for g in grads:
            assert g is None or torch.isfinite(g).all(), name


def test_dist_grad_of_equal_points_is_zero():
    x = _points(10, 1.0).requires_grad_()
    dist(x, x.detach(), c=1.0).sum().backward()
    assert (x.grad == 0).all()


def _graph(num_src, num_dst, num_edges, seed=0):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, num_src, (num_edges, ), generator=gen)
    dst = torch.randint(1, num_dst, (num_edges, ), generator=gen)  # 0 empty
    return src, dst, torch.rand(num_edges, 3, generator=gen,
                                dtype=torch.float64)


@pytest.mark.parametrize('c', CURVATURES)
def test_gyromidpoint_matches_geoopt(c):
    num_src, num_dst = 30, 9
    x = torch.stack([_points(num_src, c, seed=s) for s in (0, 5, 6)],
                    dim=1)  # [N, H, C]
    src, dst, w = _graph(num_src, num_dst, 80)
    out = scatter_gyromidpoint(x, w, dst, num_dst, c=c, src=src)
    edge_aligned = scatter_gyromidpoint(x[src], w, dst, num_dst, c=c)
    _close(out, edge_aligned)
    assert out.shape == (num_dst, 3, DIM)
    assert (out[0] == 0).all()  # no incoming edges -> origin
    for i in range(1, num_dst):
        mask = dst == i
        for h in range(3):
            expected = gmath.weighted_midpoint(x[src[mask], h],
                                               w[mask, h], k=_k(c),
                                               reducedim=[0])
            _close(out[i, h], expected)


def test_gyromidpoint_order_invariant_and_euclidean_limit():
    src, dst, w = _graph(30, 9, 80)
    x = _points(30, 1.0).unsqueeze(1)  # [N, 1, C]
    w = w[:, :1]
    out = scatter_gyromidpoint(x, w, dst, 9, c=1.0, src=src)
    perm = torch.randperm(80)
    permuted = scatter_gyromidpoint(x, w[perm], dst[perm], 9, c=1.0,
                                    src=src[perm])
    torch.testing.assert_close(permuted, out, rtol=1e-12, atol=1e-12)
    # c -> 0: the weighted mean
    y = torch.randn(30, 1, DIM, dtype=torch.float64)
    out = scatter_gyromidpoint(y, w, dst, 9, c=1e-10, src=src)
    num = torch.zeros(9, 1, DIM, dtype=y.dtype).index_add_(
        0, dst, w.unsqueeze(-1) * y[src])
    den = torch.zeros(9, 1, 1, dtype=y.dtype).index_add_(0, dst,
                                                         w.unsqueeze(-1))
    torch.testing.assert_close(out[1:], (num / den)[1:], rtol=1e-7,
                               atol=1e-7)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_edge_dist_matches_dist(dtype):
    c = 0.7
    x = _points(40, c, dtype=dtype, max_gap=ball_margin(dtype)).view(20, 2,
                                                                     DIM)
    y = _points(30, c, dtype=dtype, seed=3,
                max_gap=ball_margin(dtype)).view(15, 2, DIM)
    src, dst, _ = _graph(15, 20, 60)
    src[:3] = dst[:3] = 4  # some equal points: zero distance and gradient
    y = y.clone()
    y[4] = x[4]
    xs, ys = x.clone().requires_grad_(), y.clone().requires_grad_()
    cs = torch.tensor(c, dtype=dtype, requires_grad=True)
    out = edge_dist(xs, ys, dst, src, c=cs)
    xe, ye = x.clone().requires_grad_(), y.clone().requires_grad_()
    ce = torch.tensor(c, dtype=dtype, requires_grad=True)
    expected = dist(xe[dst], ye[src], c=ce)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(
        rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out, expected, **tol)
    assert (out[:3] == 0).all()
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(xs.grad, xe.grad, **tol)
    torch.testing.assert_close(ys.grad, ye.grad, **tol)
    torch.testing.assert_close(cs.grad, ce.grad, **tol)


def test_compile_fullgraph():
    """The functions the layer does not call trace with zero graph breaks
    (dynamo only: the layer's test runs the rest through inductor)."""
    c = torch.tensor(0.8)
    x = _points(12, 0.8, dtype=torch.float32, max_gap=0.1)
    y = _points(12, 0.8, dtype=torch.float32, max_gap=0.1, seed=1)
    m = torch.randn(3, DIM)

    def f(x, y, c):
        z = expmap(x, logmap(x, y, c=c), c=c)
        return (dist(x, z, c=c), mobius_scalar_mul(0.5, z, c=c),
                mobius_matvec(m, z, c=c))

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend='eager')
    for a, b in zip(compiled(x, y, c), f(x, y, c)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    torch._dynamo.reset()
