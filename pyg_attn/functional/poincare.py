r"""Poincaré-ball math of curvature :math:`-c` (:math:`c > 0`): the ball
:math:`\mathbb{D}^n_c = \{x \in \mathbb{R}^n : c\|x\|^2 < 1\}` with the
metric :math:`\lambda_x^2 \langle\cdot,\cdot\rangle`,
:math:`\lambda_x = 2 / (1 - c\|x\|^2)` (`"Hyperbolic Neural Networks"
<https://arxiv.org/abs/1805.09112>`_, Ganea et al., 2018).

Every function takes the curvature as the keyword ``c`` (a positive float or
a 0-dim tensor, learnable or not) and works on the last dimension.  The
numerical guards live here, chosen by dtype, never in callers:

* norms are clamped below by :func:`min_norm` before they divide;
* :math:`\tanh^{-1}` arguments are clamped below 1 by one unit in the last
  place, so it stays finite;
* :func:`project` pulls points back inside the ball by :func:`ball_margin`
  (``4e-3`` for float32, ``1e-5`` for float64, as in geoopt and HGCN).

The functions have no data-dependent Python branches (geoopt's scripted ones
do, which breaks ``torch.compile(fullgraph=True)``), and they are written in
forms that stay accurate near the boundary: distances use
:math:`\sinh^{-1}` of a Euclidean ratio, not :math:`\tanh^{-1}` of a norm
close to 1, and the gyromidpoint's halving is the closed form
:math:`\tfrac12 \otimes_c y = y / (1 + \sqrt{1 - c\|y\|^2})`.

As :math:`c \to 0` every operation tends to its Euclidean counterpart:
:math:`\oplus_c \to +`, :math:`\exp_0, \log_0 \to` identity,
:math:`d_c(x, y) \to 2\|x - y\|` (the metric is :math:`4\times` the Euclidean
one at the origin) and the gyromidpoint to the weighted mean.

Letter legend: E edges, H heads, C channels, N nodes.
"""
import math
from typing import Optional, Union

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from pyg_attn.functional.recompute import recomputed
from pyg_attn.functional.sparse import _chunks, gather_scatter

Curvature = Union[float, Tensor]

_BALL_MARGIN = {
    torch.float64: 1e-5,
    torch.float32: 4e-3,
    torch.float16: 1e-2,
    torch.bfloat16: 1e-2,
}


def min_norm(dtype: torch.dtype) -> float:
    """The smallest norm a function divides by (1e-15; float16's tiniest
    normal number for float16)."""
    return max(1e-15, torch.finfo(dtype).tiny)


def ball_margin(dtype: torch.dtype) -> float:
    r"""Relative distance from the boundary :func:`project` keeps points
    at: :math:`\sqrt{c}\|x\| \le 1 - \text{margin}`."""
    return _BALL_MARGIN.get(dtype, 1e-5)


def _norm(x: Tensor, keepdim: bool = True) -> Tensor:
    return torch.linalg.vector_norm(x, dim=-1, keepdim=keepdim)


def _sqrt_c(c: Curvature, like: Tensor):
    if isinstance(c, Tensor):
        return c.to(like.dtype).sqrt()
    return c**0.5


def _artanh(z: Tensor) -> Tensor:
    """:math:`\\tanh^{-1}` with the argument kept one ulp below 1."""
    one = 1.0 - torch.finfo(z.dtype).eps
    return torch.atanh(z.clamp(min=-one, max=one))


def lambda_x(x: Tensor, *, c: Curvature, keepdim: bool = False) -> Tensor:
    r"""Conformal factor :math:`\lambda^c_x = 2 / (1 - c\|x\|^2)`."""
    sqrt_c = _sqrt_c(c, x)
    x2 = (sqrt_c * x).pow(2).sum(dim=-1, keepdim=keepdim)
    return 2 / (1 - x2).clamp_min(min_norm(x.dtype))


def project(x: Tensor, *, c: Curvature, eps: Optional[float] = None) -> Tensor:
    r"""Pulls points with :math:`\sqrt{c}\|x\| > 1 - \epsilon` radially back
    to :math:`\sqrt{c}\|x\| = 1 - \epsilon`; others are unchanged.

    Args:
        x (Tensor): points ``[..., C]``.
        c (float or Tensor): curvature magnitude.
        eps (float, optional): margin; :func:`ball_margin` of ``x``'s dtype
            if not given.
    """
    eps = ball_margin(x.dtype) if eps is None else eps
    max_norm = (1 - eps) / _sqrt_c(c, x)
    norm = _norm(x).clamp_min(min_norm(x.dtype))
    return x * (max_norm / norm).clamp(max=1)


def clip_tangent(u: Tensor, *, c: Curvature,
                 eps: Optional[float] = None) -> Tensor:
    r"""``logmap0(project(expmap0(u)))`` computed without the round trip:
    shortens tangent vectors longer than :math:`\tanh^{-1}(1 - \epsilon) /
    \sqrt{c}` to that length, leaves the rest exactly as they are (the
    round trip through the ball loses about :math:`10^{-4}` of relative
    precision in float32 once :math:`\sqrt{c}\|u\| > 3`)."""
    eps = ball_margin(u.dtype) if eps is None else eps
    max_norm = math.atanh(1 - eps) / _sqrt_c(c, u)
    norm = _norm(u).clamp_min(min_norm(u.dtype))
    return u * (max_norm / norm).clamp(max=1)


def mobius_add(x: Tensor, y: Tensor, *, c: Curvature) -> Tensor:
    r"""Möbius addition

    .. math::
        x \oplus_c y = \frac{(1 + 2c\langle x, y\rangle + c\|y\|^2)\, x
        + (1 - c\|x\|^2)\, y}{1 + 2c\langle x, y\rangle + c^2\|x\|^2\|y\|^2}

    Not commutative nor associative; left cancellation holds:
    :math:`(-x) \oplus_c (x \oplus_c y) = y`.
    """
    c = c.to(x.dtype) if isinstance(c, Tensor) else c
    x2 = x.pow(2).sum(dim=-1, keepdim=True)
    y2 = y.pow(2).sum(dim=-1, keepdim=True)
    xy = (x * y).sum(dim=-1, keepdim=True)
    num = (1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y
    denom = 1 + 2 * c * xy + c**2 * x2 * y2
    return num / denom.clamp_min(min_norm(x.dtype))


def expmap0(u: Tensor, *, c: Curvature) -> Tensor:
    r"""Exponential map at the origin, :math:`\exp^c_0(u) =
    \tanh(\sqrt{c}\|u\|)\, u / (\sqrt{c}\|u\|)`."""
    sqrt_c = _sqrt_c(c, u)
    norm = sqrt_c * _norm(u).clamp_min(min_norm(u.dtype))
    return torch.tanh(norm) * u / norm


def logmap0(y: Tensor, *, c: Curvature) -> Tensor:
    r"""Logarithmic map at the origin, :math:`\log^c_0(y) =
    \tanh^{-1}(\sqrt{c}\|y\|)\, y / (\sqrt{c}\|y\|)`, the inverse of
    :func:`expmap0`: a point on the ball to a Euclidean (tangent) vector."""
    sqrt_c = _sqrt_c(c, y)
    norm = sqrt_c * _norm(y).clamp_min(min_norm(y.dtype))
    return _artanh(norm) * y / norm


def expmap(x: Tensor, u: Tensor, *, c: Curvature) -> Tensor:
    r"""Exponential map at :math:`x`,

    .. math::
        \exp^c_x(u) = x \oplus_c \left(\tanh\left(\frac{\sqrt{c}
        \lambda^c_x \|u\|}{2}\right) \frac{u}{\sqrt{c}\|u\|}\right)
    """
    sqrt_c = _sqrt_c(c, u)
    norm = sqrt_c * _norm(u).clamp_min(min_norm(u.dtype))
    lam = lambda_x(x, c=c, keepdim=True)
    return mobius_add(x, torch.tanh(lam * norm / 2) * u / norm, c=c)


def dist(x: Tensor, y: Tensor, *, c: Curvature,
         keepdim: bool = False) -> Tensor:
    r"""Geodesic distance

    .. math::
        d_c(x, y) = \frac{2}{\sqrt{c}} \tanh^{-1}\!\left(\sqrt{c}\,
        \|(-x) \oplus_c y\|\right) = \frac{2}{\sqrt{c}} \sinh^{-1}\!\left(
        \frac{\sqrt{c}\,\|x - y\|}{\sqrt{(1 - c\|x\|^2)(1 - c\|y\|^2)}}
        \right),

    computed by the second form, which needs no clamp near the boundary and
    has the zero subgradient at :math:`x = y`."""
    sqrt_c = _sqrt_c(c, x)
    tiny = min_norm(x.dtype)
    a = 1 - (sqrt_c * x).pow(2).sum(dim=-1, keepdim=keepdim)
    b = 1 - (sqrt_c * y).pow(2).sum(dim=-1, keepdim=keepdim)
    r = _norm(x - y, keepdim=keepdim)
    return _dist_from(r, a, b, sqrt_c, tiny)


def _dist_from(r: Tensor, a: Tensor, b: Tensor, sqrt_c, tiny: float) -> Tensor:
    """The :func:`dist` formula from the Euclidean distance ``r`` and the
    factors ``a = 1 - c|x|^2``, ``b = 1 - c|y|^2``."""
    denom = (a.clamp_min(tiny) * b.clamp_min(tiny)).sqrt()
    return 2 / sqrt_c * torch.asinh(sqrt_c * r / denom)


def expmap0_add(u: Tensor, y: Optional[Tensor], *, c: Curvature) -> Tensor:
    r""":func:`project` of :math:`\exp^c_0(u) \oplus_c y` (just
    :math:`\exp^c_0(u)` when ``y`` is ``None``), computed as
    :math:`A u + B y` with per-row scalars :math:`A, B` found from
    :math:`\|u\|^2`, :math:`\langle u, y\rangle` and :math:`\|y\|^2`
    alone: two reductions and one combination over the channels, where the
    three-step composition makes a dozen passes (the layers apply it to
    every node, head and projection).

    Args:
        u (Tensor): tangent vectors at the origin ``[..., C]``.
        y (Tensor, optional): points on the ball broadcasting against
            ``u`` (a Möbius bias ``[H, C]``, say).
    """
    sqrt_c = _sqrt_c(c, u)
    tiny = min_norm(u.dtype)
    norm = sqrt_c * _norm(u).clamp_min(tiny)  # [..., 1]
    tanh = torch.tanh(norm)
    scale = tanh / norm  # exp0(u) = scale * u
    if y is None:
        coef_u, coef_y, qq = scale, None, tanh.pow(2)
    else:
        x2 = tanh.pow(2)  # c |exp0(u)|^2
        xy = sqrt_c * scale * (u * y).sum(dim=-1, keepdim=True)  # sqrt(c) <x, y>
        y2 = (sqrt_c * y).pow(2).sum(dim=-1, keepdim=True)  # c |y|^2
        alpha = 1 + 2 * sqrt_c * xy + y2
        beta = 1 - x2
        denom = (1 + 2 * sqrt_c * xy + x2 * y2).clamp_min(tiny)
        coef_u, coef_y = alpha * scale / denom, beta / denom
        # c |alpha x + beta y|^2 / denom^2
        qq = (alpha.pow(2) * x2 + 2 * alpha * beta * sqrt_c * xy +
              beta.pow(2) * y2) / denom.pow(2)
    max_norm = 1 - ball_margin(u.dtype)  # sqrt(c) |.| after projection
    shrink = (max_norm / qq.clamp_min(tiny**2).sqrt()).clamp(max=1)
    out = (shrink * coef_u) * u
    return out if y is None else out + (shrink * coef_y) * y


def logmap(x: Tensor, y: Tensor, *, c: Curvature) -> Tensor:
    r"""Logarithmic map at :math:`x`, the inverse of :func:`expmap`,

    .. math::
        \log^c_x(y) = \frac{2}{\sqrt{c}\lambda^c_x}
        \tanh^{-1}(\sqrt{c}\|w\|) \frac{w}{\|w\|} =
        \frac{d_c(x, y)}{\lambda^c_x} \frac{w}{\|w\|},
        \qquad w = (-x) \oplus_c y,

    computed by the second form (:func:`dist` stays accurate where
    :math:`\sqrt{c}\|w\|` rounds to 1)."""
    w = mobius_add(-x, y, c=c)
    w_norm = _norm(w).clamp_min(min_norm(w.dtype))
    lam = lambda_x(x, c=c, keepdim=True)
    return dist(x, y, c=c, keepdim=True) / lam * w / w_norm


def mobius_scalar_mul(r: Union[float, Tensor], x: Tensor, *,
                      c: Curvature) -> Tensor:
    r"""Möbius scalar multiplication :math:`r \otimes_c x =
    \tanh(r \tanh^{-1}(\sqrt{c}\|x\|))\, x / (\sqrt{c}\|x\|)`; equal to
    :math:`\exp^c_0(r \log^c_0(x))`.  ``r`` broadcasts against
    ``x[..., :1]``."""
    sqrt_c = _sqrt_c(c, x)
    norm = sqrt_c * _norm(x).clamp_min(min_norm(x.dtype))
    return torch.tanh(r * _artanh(norm)) * x / norm


def mobius_matvec(m: Tensor, x: Tensor, *, c: Curvature) -> Tensor:
    r"""Möbius matrix–vector product

    .. math::
        M \otimes_c x = \exp^c_0(M \log^c_0(x)) =
        \tanh\left(\frac{\|Mx\|}{\|x\|}\tanh^{-1}(\sqrt{c}\|x\|)\right)
        \frac{Mx}{\sqrt{c}\|Mx\|},

    zero where :math:`Mx = 0`.

    Args:
        m (Tensor): ``[out, in]``.
        x (Tensor): points ``[..., in]``.

    Returns:
        ``[..., out]``.
    """
    return expmap0(logmap0(x, c=c) @ m.transpose(-1, -2), c=c)


def _halve(y: Tensor, c: Curvature) -> Tensor:
    r""":math:`\tfrac12 \otimes_c y = y / (1 + \sqrt{1 - c\|y\|^2})` (the
    Klein-to-Poincaré map), for :math:`\sqrt{c}\|y\| \le 1`."""
    sqrt_c = _sqrt_c(c, y)
    y2 = (sqrt_c * y).pow(2).sum(dim=-1, keepdim=True)
    return y / (1 + (1 - y2).clamp_min(min_norm(y.dtype)).sqrt())


def scatter_gyromidpoint(x: Tensor, weights: Tensor, index: Tensor,
                         num_nodes: int, *, c: Curvature,
                         src: Optional[Tensor] = None) -> Tensor:
    r"""Weighted Möbius gyromidpoint of each destination's incoming points,

    .. math::
        m_i = \frac12 \otimes_c \left( \frac{\sum_{e: d_e = i} w_e
        \lambda^c_{x_e} x_e}{\sum_{e: d_e = i} w_e (\lambda^c_{x_e} - 1)}
        \right),

    by two scatter sums, :math:`O(E)` time and memory (never an
    :math:`N \times N` mask).  With nonnegative weights the bracket is a
    convex combination in the Klein model (:math:`\lambda_x x = \gamma k`,
    :math:`\lambda_x - 1 = \gamma` for the Klein point :math:`k` and its
    Lorentz factor :math:`\gamma`), so it lies inside the ball and the
    result does not depend on the order of the edges — unlike a sequence of
    Möbius additions.  Only the relative weights of a destination matter; a
    destination without edges gets the origin (zeros).  As :math:`c \to 0`
    it is the weighted mean :math:`\sum_e w_e x_e / \sum_e w_e`.

    Args:
        x (Tensor): points, edge-aligned ``[E, ..., C]``, or node-level
            ``[N_src, ..., C]`` with ``src`` given (then no per-edge copy is
            kept for backward).
        weights (Tensor): nonnegative weights ``[E, ...]`` (e.g. ``[E, H]``
            attention weights for ``[·, H, C]`` points).
        index (LongTensor): destination of each edge ``[E]``.
        num_nodes (int): number of destinations.
        c (float or Tensor): curvature magnitude.
        src (LongTensor, optional): the point row of each edge ``[E]``.

    Returns:
        ``[num_nodes, ..., C]`` in ``x``'s dtype.
    """
    lam = lambda_x(x, c=c, keepdim=True)  # [·, ..., 1]
    both = torch.cat([lam * x, lam - 1], dim=-1)  # [·, ..., C + 1]
    lead = tuple(both.shape[1:-1])
    heads = math.prod(lead)
    both3 = both.reshape(both.size(0), heads, both.size(-1))  # [·, H, C + 1]
    w = weights.reshape(weights.size(0), heads).to(both.dtype)  # [E, H]
    sums = gather_scatter(w, both3, src, index, num_nodes)  # [N, H, C + 1]
    sums = sums.reshape((num_nodes, ) + lead + (both.size(-1), ))
    num, den = sums[..., :-1], sums[..., -1:]
    return _halve(num / den.clamp_min(min_norm(x.dtype)), c)


def _edge_distance(a: Tensor, b: Tensor, index_a: Tensor,
                   index_b: Tensor) -> Tensor:
    return EdgeDistance.apply(a, b, index_a, index_b)


class EdgeDistance(torch.autograd.Function):
    """Per-edge Euclidean distance ``|a[i_e] - b[j_e]|`` ``[E, H]`` from
    node tensors ``[N, H, C]``, in edge chunks, saving only the node tensors
    and the ``[E, H]`` result for backward (the exact difference, unlike
    :math:`\\|a\\|^2 + \\|b\\|^2 - 2\\langle a, b\\rangle`, whose cancellation
    ruins the gradient of nearly equal points)."""
    @staticmethod
    def forward(ctx, a, b, index_a, index_b):
        num_edges = index_a.numel()
        out = a.new_empty((num_edges, a.size(1)))
        for start, end in _chunks(num_edges, a.size(1) * a.size(2)):
            diff = a.index_select(0, index_a[start:end]) - b.index_select(
                0, index_b[start:end])  # [e, H, C]
            out[start:end] = _norm(diff, keepdim=False)
        ctx.save_for_backward(a, b, index_a, index_b, out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        a, b, index_a, index_b, r = ctx.saved_tensors
        coef = grad / r.clamp_min(min_norm(r.dtype))  # [E, H]
        grad_a = torch.zeros_like(a)
        grad_b = torch.zeros_like(b)
        for start, end in _chunks(index_a.numel(), a.size(1) * a.size(2)):
            diff = a.index_select(0, index_a[start:end]) - b.index_select(
                0, index_b[start:end])  # [e, H, C]
            msg = diff * coef[start:end].unsqueeze(-1)
            grad_a.index_add_(0, index_a[start:end], msg)
            grad_b.index_add_(0, index_b[start:end], msg, alpha=-1)
        return grad_a, grad_b, None, None


def edge_dist(x: Tensor, y: Tensor, index_x: Tensor, index_y: Tensor, *,
              c: Curvature) -> Tensor:
    r"""Per-edge geodesic distance :math:`d_c(x_{i_e}, y_{j_e})` (the
    :func:`dist` formula) from node-level points, without keeping an
    ``[E, H, C]`` tensor for backward.

    Args:
        x (Tensor): ``[N_x, H, C]`` points.
        y (Tensor): ``[N_y, H, C]`` points.
        index_x, index_y (LongTensor): rows of each edge ``[E]``.

    Returns:
        ``[E, H]`` distances.
    """
    r = _edge_distance(x, y, index_x, index_y)  # [E, H]
    # the rest is elementwise on [E, H] and [N, H]: run again in backward
    # rather than keeping its temporaries
    return recomputed(_dist_from_gap, r, x, y, index_x, index_y, c)


def _dist_from_gap(r: Tensor, x: Tensor, y: Tensor, index_x: Tensor,
                   index_y: Tensor, c: Curvature) -> Tensor:
    """:func:`edge_dist` from the Euclidean gaps ``r`` ``[E, H]``."""
    sqrt_c = _sqrt_c(c, x)
    tiny = min_norm(x.dtype)
    # sqrt(c) / sqrt(1 - c|x|^2) per node, so an edge needs one product
    inv_x = sqrt_c * (1 - (sqrt_c * x).pow(2).sum(dim=-1)).clamp_min(
        tiny).rsqrt()  # [N_x, H]
    inv_y = (1 - (sqrt_c * y).pow(2).sum(dim=-1)).clamp_min(
        tiny).rsqrt()  # [N_y, H]
    z = r * inv_x.index_select(0, index_x) * inv_y.index_select(0, index_y)
    return 2 / sqrt_c * torch.asinh(z)  # [E, H]
