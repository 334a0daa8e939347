r"""Fused gather–reduce primitives for attention over edges.

Both primitives keep only their (node-sized) inputs for backward, never a
per-edge ``[E, H, C]`` tensor, and work through the edges in chunks so that a
per-edge temporary is at most :data:`CHUNK_ELEMENTS` values:

* :func:`gather_dot` (SDDMM): :math:`s_{e,h} = \langle a_{i_e,h},
  b_{j_e,h} \rangle`, the per-edge dot product of gathered rows.
* :func:`gather_scatter` (SpMM): :math:`o_{i,h} = \sum_{e: d_e = i}
  w_{e,h}\, v_{j_e,h}`, the weighted sum of gathered rows into destinations.

Each one's backward is the other's computation: for :func:`gather_scatter`,
:math:`\partial w_{e,h} = \langle g_{d_e,h}, v_{j_e,h} \rangle` and
:math:`\partial v_{j,h} = \sum_{e: j_e = j} w_{e,h} g_{d_e,h}`, sharing one
gather of :math:`g`.  Under ``torch.compile`` the chunk loop is not taken (the
compiler fuses the gather, product and scatter itself).

Letter legend: E edges, H heads, C channels, N nodes.  An index of ``None``
means the operand is already edge-aligned (``[E, ·, C]``).  A head dimension of
size 1 broadcasts over H.  Sums over edges accumulate in float32 for
float16/bfloat16 inputs.
"""
from typing import Iterator, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from pyg_attn.functional.softmax import stat_dtype

#: Values in one per-edge temporary: 4 MiB in float32.  Keep it well under
#: 32 MiB: glibc serves larger blocks by a fresh mmap each time, and paying
#: their page faults on every chunk made a forward+backward of
#: DotProductAttentionConv at 500,000 edges twice as slow at 1 << 24 (64 MiB).
CHUNK_ELEMENTS = 1 << 20


def chunk_rows(row_size: int, elements: Optional[int] = None) -> int:
    """How many rows of ``row_size`` values fit in ``elements``
    (:data:`CHUNK_ELEMENTS`, read at each call), at least one: the edges per
    chunk of a layer whose per-edge temporaries are ``[c, H, C]`` is
    ``chunk_rows(H * C)``."""
    return max(1, (elements or CHUNK_ELEMENTS) // max(row_size, 1))


def check_chunk_size(chunk_size: Optional[int]) -> None:
    """Raises a :class:`ValueError` unless ``chunk_size`` (edges per chunk)
    is an integer of at least one or :obj:`None` (the default rule,
    :func:`chunk_rows`)."""
    if chunk_size is not None and (not isinstance(chunk_size, int) or
                                   chunk_size < 1):
        raise ValueError(f"'chunk_size' ({chunk_size}) must be an integer "
                         ">= 1 (edges per chunk), or None for the default")


def _chunks(num_rows: int, row_size: int, elements: Optional[int] = None,
            rows: Optional[int] = None) -> Iterator[Tuple[int, int]]:
    """Row ranges of ``rows`` rows each, by default as many rows of
    ``row_size`` values as fit in ``elements`` (:func:`chunk_rows`)."""
    if torch.compiler.is_compiling():
        yield 0, num_rows
        return
    yield from _ranges(num_rows, rows or chunk_rows(row_size, elements))


def _ranges(num_rows: int, step: int) -> Iterator[Tuple[int, int]]:
    """``(start, end)`` of consecutive ranges of ``step`` rows."""
    for start in range(0, num_rows, step):
        yield start, min(start + step, num_rows)


def _rows(x: Tensor, index: Optional[Tensor], start: int, end: int) -> Tensor:
    if index is None:
        return x[start:end]
    return x.index_select(0, index[start:end])


def _scale(rows: Tensor, w: Tensor, fresh: bool) -> Tensor:
    """``rows * w[..., None]``, in place where ``rows`` is a fresh gather of
    the result's shape and dtype."""
    w = w.unsqueeze(-1)
    dtype = torch.promote_types(rows.dtype, w.dtype)
    if fresh and rows.dtype == dtype and rows.size(1) == w.size(1):
        return rows.mul_(w)
    return rows.to(dtype) * w


def _gather_dot(a: Tensor, b: Tensor, index_a: Optional[Tensor],
                index_b: Optional[Tensor], num_edges: int) -> Tensor:
    heads = max(a.size(1), b.size(1))
    out = a.new_empty((num_edges, heads),
                      dtype=torch.promote_types(a.dtype, b.dtype))
    for start, end in _chunks(num_edges, heads * a.size(-1)):
        out[start:end] = torch.linalg.vecdot(_rows(a, index_a, start, end),
                                             _rows(b, index_b, start, end))
    return out


def _gather_scatter(w: Tensor, v: Tensor, index_v: Optional[Tensor],
                    index_out: Optional[Tensor], num_out: int) -> Tensor:
    """Also serves backward, where ``index_out`` may be ``None`` (an
    edge-aligned result, ``[E, ·, C]``)."""
    num_edges = w.size(0)
    heads = max(w.size(1), v.size(1))
    if index_out is None:
        out = v.new_empty((num_edges, heads, v.size(-1)))
        for start, end in _chunks(num_edges, heads * v.size(-1)):
            out[start:end] = _scale(_rows(v, index_v, start, end),
                                    w[start:end], index_v is not None)
        return out
    acc = v.new_zeros((num_out, heads, v.size(-1)), dtype=stat_dtype(v.dtype))
    for start, end in _chunks(num_edges, heads * v.size(-1)):
        msg = _scale(_rows(v, index_v, start, end), w[start:end],
                     index_v is not None)  # [e, H, C]
        acc.index_add_(0, index_out[start:end], msg.to(acc.dtype))
    return acc.to(v.dtype)


def _reduce_heads(grad: Tensor, like: Tensor) -> Tensor:
    """Undoes head broadcasting: ``[.., H, C] -> [.., 1, C]``."""
    if like.size(1) == 1 and grad.size(1) != 1:
        grad = grad.sum(dim=1, keepdim=True)
    return grad.to(like.dtype)


class GatherDot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, index_a, index_b, num_edges):
        ctx.save_for_backward(a, b, index_a, index_b)
        return _gather_dot(a, b, index_a, index_b, num_edges)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        a, b, index_a, index_b = ctx.saved_tensors
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = _reduce_heads(
                _gather_scatter(grad, b, index_b, index_a, a.size(0)), a)
        if ctx.needs_input_grad[1]:
            grad_b = _reduce_heads(
                _gather_scatter(grad, a, index_a, index_b, b.size(0)), b)
        return grad_a, grad_b, None, None, None


class GatherScatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, v, index_v, index_out, num_out):
        ctx.save_for_backward(w, v, index_v, index_out)
        return _gather_scatter(w, v, index_v, index_out, num_out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        w, v, index_v, index_out = ctx.saved_tensors
        need_w, need_v = ctx.needs_input_grad[:2]
        num_edges, heads = w.size(0), max(w.size(1), v.size(1))
        grad_w = w.new_empty(w.shape) if need_w else None
        acc = v.new_zeros((v.size(0), heads, v.size(-1)),
                          dtype=stat_dtype(v.dtype)) if need_v else None
        edge_grads = []
        for start, end in _chunks(num_edges, heads * v.size(-1)):
            g = grad.index_select(0, index_out[start:end])  # [e, H, C]
            if need_w:
                grad_w[start:end] = torch.linalg.vecdot(
                    g, _rows(v, index_v, start, end))
            if need_v:
                msg = _scale(g, w[start:end], True).to(acc.dtype)
                if index_v is None:
                    edge_grads.append(msg)
                else:
                    acc.index_add_(0, index_v[start:end], msg)
        grad_v = None
        if need_v:
            if index_v is not None:
                grad_v = _reduce_heads(acc, v)
            else:  # edge-aligned; no chunk at all when there are no edges
                grad_v = _reduce_heads(
                    torch.cat(edge_grads) if edge_grads else acc[:0], v)
        return grad_w, grad_v, None, None, None


def gather_dot(a: Tensor, b: Tensor, index_a: Optional[Tensor],
               index_b: Optional[Tensor]) -> Tensor:
    r"""Per-edge dot products :math:`s_{e,h} = \langle a_{i_e,h},
    b_{j_e,h} \rangle` (SDDMM).

    Args:
        a (Tensor): ``[N_a, H, C]`` (or ``[E, H, C]`` with ``index_a=None``).
        b (Tensor): ``[N_b, H or 1, C]`` (or edge-aligned with
            ``index_b=None``).
        index_a, index_b (LongTensor, optional): row of each edge ``[E]``;
            at least one must be given.

    Returns:
        ``[E, H]`` logits.  Backward saves only ``a`` and ``b``.
    """
    index = index_a if index_a is not None else index_b
    assert index is not None, 'gather_dot needs at least one index'
    return GatherDot.apply(a, b, index_a, index_b, index.numel())


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
