r"""Fused gather–reduce primitives for attention over edges.

Both primitives keep only their (node-sized) inputs for backward, never a
per-edge ``[E, H, C]`` tensor, and each one's backward is the other:

* :func:`gather_dot` (SDDMM): :math:`s_{e,h} = \langle a_{i_e,h},
  b_{j_e,h} \rangle`, the per-edge dot product of gathered rows.
* :func:`gather_scatter` (SpMM): :math:`o_{i,h} = \sum_{e: d_e = i}
  w_{e,h}\, v_{j_e,h}`, the weighted sum of gathered rows into destinations.

Letter legend: E edges, H heads, C channels, N nodes.  An index of ``None``
means the operand is already edge-aligned (``[E, ·, C]``).  A head dimension of
size 1 broadcasts over H.  Sums over edges accumulate in float32 for
float16/bfloat16 inputs.
"""
from typing import Optional

import torch
from torch import Tensor

from pyg_attn.functional.softmax import stat_dtype


def _take(x: Tensor, index: Optional[Tensor]) -> Tensor:
    return x if index is None else x.index_select(0, index)


def _reduce_to(grad: Tensor, like: Tensor) -> Tensor:
    # undo head broadcasting: [.., H, C] -> [.., 1, C]
    if like.size(1) == 1 and grad.size(1) != 1:
        grad = grad.sum(dim=1, keepdim=True)
    return grad


def _scatter_rows(src: Tensor, index: Optional[Tensor], num_rows: int,
                  dtype: torch.dtype) -> Tensor:
    if index is None:
        return src.to(dtype)
    acc = src.new_zeros((num_rows,) + tuple(src.shape[1:]),
                        dtype=stat_dtype(src.dtype))
    return acc.index_add_(0, index, src.to(acc.dtype)).to(dtype)


def _gather_dot(a: Tensor, b: Tensor, index_a: Optional[Tensor],
                index_b: Optional[Tensor]) -> Tensor:
    return torch.linalg.vecdot(_take(a, index_a), _take(b, index_b))


def _gather_scatter(w: Tensor, v: Tensor, index_v: Optional[Tensor],
                    index_out: Tensor, num_out: int) -> Tensor:
    msg = w.unsqueeze(-1) * _take(v, index_v)  # [E, H, C]
    return _scatter_rows(msg, index_out, num_out, v.dtype)


class GatherDot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, index_a, index_b):
        ctx.save_for_backward(a, b, index_a, index_b)
        return _gather_dot(a, b, index_a, index_b)

    @staticmethod
    def backward(ctx, grad):
        a, b, index_a, index_b = ctx.saved_tensors
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = _reduce_to(gather_scatter(grad, b, index_b, index_a,
                                               a.size(0)), a).to(a.dtype)
        if ctx.needs_input_grad[1]:
            grad_b = _reduce_to(gather_scatter(grad, a, index_a, index_b,
                                               b.size(0)), b).to(b.dtype)
        return grad_a, grad_b, None, None


class GatherScatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, v, index_v, index_out, num_out):
        ctx.save_for_backward(w, v, index_v, index_out)
        return _gather_scatter(w, v, index_v, index_out, num_out)

    @staticmethod
    def backward(ctx, grad):
        w, v, index_v, index_out = ctx.saved_tensors
        grad_w = grad_v = None
        if ctx.needs_input_grad[0]:
            grad_w = gather_dot(grad, v, index_out, index_v).to(w.dtype)
        if ctx.needs_input_grad[1]:
            grad_v = _reduce_to(gather_scatter(w, grad, index_out, index_v,
                                               v.size(0)), v).to(v.dtype)
        return grad_w, grad_v, None, None, None


def gather_dot(a: Tensor, b: Tensor, index_a: Optional[Tensor],
               index_b: Optional[Tensor]) -> Tensor:
    r"""Per-edge dot products :math:`s_{e,h} = \langle a_{i_e,h},
    b_{j_e,h} \rangle` (SDDMM).

    Args:
        a (Tensor): ``[N_a, H, C]`` (or ``[E, H, C]`` with ``index_a=None``).
        b (Tensor): ``[N_b, H or 1, C]`` (or edge-aligned with
            ``index_b=None``).
        index_a, index_b (LongTensor, optional): row of each edge ``[E]``.

    Returns:
        ``[E, H]`` logits.  Backward saves only ``a`` and ``b``.
    """
    return GatherDot.apply(a, b, index_a, index_b)


def gather_scatter(w: Tensor, v: Tensor, index_v: Optional[Tensor],
                   index_out: Tensor, num_out: int) -> Tensor:
    r"""Weighted aggregation :math:`o_{i,h} = \sum_{e: d_e = i} w_{e,h}\,
    v_{j_e,h}` (SpMM).

    Args:
        w (Tensor): edge weights ``[E, H]``.
        v (Tensor): values ``[N_v, H or 1, C]`` (or ``[E, H or 1, C]`` with
            ``index_v=None``).
        index_v (LongTensor, optional): value row of each edge ``[E]``.
        index_out (LongTensor): destination of each edge ``[E]``.
        num_out (int): number of destinations.

    Returns:
        ``[num_out, H, C]`` in ``v``'s dtype; destinations without edges get
        zeros.  ``w`` may be float32 for float16/bfloat16 ``v`` (weights from
        :func:`edge_softmax`): products and sums are then float32.
    """
    return GatherScatter.apply(w, v, index_v, index_out, num_out)
