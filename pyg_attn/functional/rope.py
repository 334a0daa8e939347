r"""Rotary position embeddings (`RoFormer <https://arxiv.org/abs/2104.09864>`_)
with graph positions: a distance, hop count, HNSW layer or edge weight.

A vector :math:`\mathbf{x} \in \mathbb{R}^d` (``d`` even) is cut into
:math:`d/2` consecutive pairs :math:`(x_{2k}, x_{2k+1})`, and pair :math:`k` is
rotated by the angle :math:`\theta_k = p\, \omega_k`:

.. math::
    R(\boldsymbol{\theta}) \mathbf{x} = \big(\ldots,\;
    x_{2k} \cos\theta_k - x_{2k+1} \sin\theta_k,\;
    x_{2k} \sin\theta_k + x_{2k+1} \cos\theta_k,\; \ldots\big),
    \qquad \omega_k = b^{-2k/d},\quad k = 0, \ldots, d/2 - 1,

with base :math:`b` (10000 in RoFormer).  The identities the layers rely on:
a rotation keeps norms, :math:`\lVert R(\boldsymbol{\theta}) \mathbf{x}
\rVert = \lVert \mathbf{x} \rVert`; rotations compose,
:math:`R(\boldsymbol{\theta}) R(\boldsymbol{\phi}) =
R(\boldsymbol{\theta} + \boldsymbol{\phi})`; and so a score between a query
rotated by position :math:`p_i` and a key rotated by :math:`p_j` depends on
:math:`p_j - p_i` only:
:math:`(R(p_i \boldsymbol{\omega}) \mathbf{q})^\top R(p_j \boldsymbol{\omega})
\mathbf{k} = \mathbf{q}^\top R((p_j - p_i) \boldsymbol{\omega}) \mathbf{k}`.

A position may have :math:`P` components (for example graph distance, HNSW
layer and link distance).  The :math:`d/2` pairs are then split into
:math:`P` consecutive groups of near-equal size :math:`m_g` (the first
:math:`d/2 \bmod P` groups one pair larger), and group :math:`g` rotates by
component :math:`g` with its own full spectrum
:math:`\omega_k = b^{-2k/(2 m_g)}`, :math:`k = 0, \ldots, m_g - 1` (the
axial RoPE of 2-D vision transformers).  With :math:`P = 1` this is the
formula above.

Angles and rotations are computed in float32 for float16/bfloat16 inputs
(the cosine of a large angle loses all precision in float16) and the result
is cast back.

Letter legend: d rotated channels, P position components, ``*`` any leading
dimensions (edges, nodes, heads).
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from pyg_attn.functional.softmax import stat_dtype


def rope_frequencies(dim: int, num_components: int = 1, base: float = 10000.0,
                     dtype: torch.dtype = torch.float32,
                     device: Optional[torch.device] = None
                     ) -> Tuple[Tensor, Tensor]:
    r"""The frequency :math:`\omega_k` of each of the ``dim / 2`` pairs and
    the position component that drives it.

    For one component, :math:`\omega_k = b^{-2k/d}`; for :math:`P`
    components the pairs form :math:`P` consecutive groups of near-equal
    size :math:`m_g`, each with :math:`\omega_k = b^{-k/m_g}`,
    :math:`k = 0, \ldots, m_g - 1`.

    Args:
        dim (int): rotated channels :math:`d`, even and ``>= 2``.
        num_components (int, optional): position components :math:`P`,
            ``1 <= P <= d / 2``. (default: :obj:`1`)
        base (float, optional): the base :math:`b > 0`.
            (default: :obj:`10000.`)
        dtype, device: of the frequencies.

    Returns:
        ``(freqs, component)``: ``[d/2]`` frequencies and the ``[d/2]`` long
        index of each pair's component.

    Raises:
        ValueError: odd or non-positive ``dim``, ``num_components`` outside
            ``[1, dim / 2]``, ``base <= 0``.
    """
    if not isinstance(dim, int) or dim < 2 or dim % 2:
        raise ValueError(f"rotary 'dim' ({dim}) must be an even integer >= 2: "
                         "channels rotate in pairs")
    half = dim // 2
    if not isinstance(num_components, int) or not 1 <= num_components <= half:
        raise ValueError(f"'num_components' ({num_components}) must lie in "
                         f"[1, dim / 2 = {half}]: each position component "
                         "needs at least one pair of channels")
    if not base > 0:
        raise ValueError(f"rotary 'base' ({base}) must be > 0")
    sizes = [half // num_components + (g < half % num_components)
             for g in range(num_components)]
    # Python floats (double precision) and lists: exact in float64, and
    # constants under torch.compile
    freqs = [float(base)**(-k / m) for m in sizes for k in range(m)]
    component = [g for g, m in enumerate(sizes) for _ in range(m)]
    return (torch.tensor(freqs, dtype=dtype, device=device),
            torch.tensor(component, dtype=torch.long, device=device))


def rope_angles(pos: Tensor, freqs: Tensor,
                component: Optional[Tensor] = None) -> Tensor:
    r"""Rotation angles :math:`\theta_k = p_{c(k)}\, \omega_k`.

    Args:
        pos (Tensor): positions ``[*]`` (one component) or ``[*, P]``; any
            real or integer dtype.
        freqs (Tensor): ``[d/2]`` frequencies from :func:`rope_frequencies`.
        component (LongTensor, optional): ``[d/2]`` component of each pair;
            required when ``pos`` has a component dimension.

    Returns:
        ``[*, d/2]`` angles in ``freqs``' dtype (at least float32).
    """
    dtype = torch.promote_types(stat_dtype(freqs.dtype), torch.float32)
    if component is None:
        return pos.to(dtype).unsqueeze(-1) * freqs.to(dtype)  # [*, d/2]
    return pos.to(dtype).index_select(-1, component) * freqs.to(dtype)


def rope_rotate(x: Tensor, angles: Tensor) -> Tensor:
    r"""Rotates each consecutive pair :math:`(x_{2k}, x_{2k+1})` of the last
    dimension by :math:`\theta_k`:
    :math:`(x_{2k} \cos\theta_k - x_{2k+1} \sin\theta_k,\;
    x_{2k} \sin\theta_k + x_{2k+1} \cos\theta_k)`.  With fewer angles
    than pairs only the first ``2 * angles.size(-1)`` channels turn and the
    rest pass unchanged (partial rotary embeddings, as in GPT-J).

    Args:
        x (Tensor): ``[*, d]``.
        angles (Tensor): ``[*, r/2]`` with ``r <= d``, broadcast against
            ``x``'s leading dimensions (e.g. ``[E, 1, r/2]`` for
            ``[E, H, d]``).

    Returns:
        ``[*, d]`` in ``x``'s dtype (computed in at least float32 for
        float16/bfloat16).
    """
    rot = 2 * angles.size(-1)
    assert rot <= x.size(-1), (x.shape, angles.shape)
    dtype = torch.promote_types(stat_dtype(x.dtype), angles.dtype)
    # pair (a, b) as the complex number a + ib, turned by exp(i theta): one
    # complex product, and in backward one more (3x faster than the real
    # form's four products, stack and selects, forward and backward)
    pairs = x[..., :rot].to(dtype).unflatten(-1, (-1, 2)).contiguous()
    angles = angles.to(dtype)
    turn = torch.polar(torch.ones_like(angles), angles)  # [*, r/2] complex
    out = torch.view_as_real(torch.view_as_complex(pairs) * turn)
    out = out.flatten(-2).to(x.dtype)  # [*, r]
    if rot == x.size(-1):
        return out
    rest = x[..., rot:].expand(out.shape[:-1] + (x.size(-1) - rot, ))
    return torch.cat([out, rest], dim=-1)  # [*, d]
