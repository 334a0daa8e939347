r"""A function of each edge, computed in chunks of edges and recomputed in
backward, so that no per-edge ``[E, H, C]`` tensor is ever kept.

:func:`edge_map` evaluates ``fn`` on one chunk of edges at a time and either
concatenates its rows (``[E, ...]``, e.g. ``[E, H]`` logits) or sums them
into their destinations (``[N, ...]``, e.g. weighted messages).  Backward
keeps only the inputs and calls ``fn`` again, chunk by chunk, with respect to
the chunk's own rows of each input (``gather``, as in
:func:`pyg_attn.functional.online_softmax.online_softmax_attention`), so a
mechanism whose per-edge term cannot be split into node-sized factors (a key
turned by each edge's own rotation, say) still costs
:math:`O(N H C + \text{chunk} \cdot H C)` memory: the price is a second
evaluation of ``fn`` in backward.

:func:`recomputed` is the same trade for a chain of node- or edge-sized
elementwise steps (:func:`torch.utils.checkpoint.checkpoint`): only its
inputs are kept, and the chain runs again in backward.
"""
from typing import Optional, Sequence

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from pyg_attn.functional.online_softmax import (ChunkFn, Gather, _check_gather,
                                                _chunk_size, _chunk_view,
                                                _ChunkViews, _pull_back)
from pyg_attn.functional.softmax import stat_dtype
from pyg_attn.functional.sparse import _ranges


def _sum_rows(rows: Tensor, dst: Tensor, num_dst: int) -> Tensor:
    """``[num_dst, ...]`` sums of ``rows`` by destination, in float32 for
    half rows."""
    size = (num_dst, ) + tuple(rows.shape[1:])
    return rows.new_zeros(size, dtype=stat_dtype(rows.dtype)).index_add_(
        0, dst, rows.to(stat_dtype(rows.dtype)))


class _EdgeMap(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fn, gather, dst, num_dst, num_edges, chunk_size,
                *tensors):
        parts, out, rows = [], None, None
        for start, end in _ranges(num_edges, chunk_size):
            rows = fn(_ChunkViews(tensors, gather, start, end), start, end)
            if dst is None:
                parts.append(rows)
            elif out is None:
                out = _sum_rows(rows, dst[start:end], num_dst)
            else:
                out.index_add_(0, dst[start:end], rows.to(out.dtype))
        if rows is None:  # no edges: one empty call for the shape and dtype
            rows = fn(_ChunkViews(tensors, gather, 0, 0), 0, 0)
            parts = [rows]
            out = None if dst is None else _sum_rows(rows, dst, num_dst)
        ctx.fn, ctx.gather, ctx.num_edges, ctx.chunk_size = (
            fn, gather, num_edges, chunk_size)
        ctx.save_for_backward(dst, *tensors)
        return torch.cat(parts) if dst is None else out.to(rows.dtype)

    @staticmethod
    def backward(ctx, grad):
        dst, *tensors = ctx.saved_tensors
        fn = ctx.fn

        def grads_of(outputs, k: int, start: int, end: int):
            if dst is None:
                return (grad[start:end], )
            return (grad.index_select(0, dst[start:end]), )

        grads = _pull_back(tensors, ctx.gather, ctx.needs_input_grad[6:],
                           ctx.num_edges, ctx.chunk_size,
                           lambda views, start, end: (fn(views, start, end), ),
                           grads_of)
        return (None, None, None, None, None, None, *grads)


def edge_map(fn: ChunkFn, tensors: Sequence[Tensor], num_edges: int,
             gather: Gather = None, dst: Optional[Tensor] = None,
             num_dst: Optional[int] = None,
             chunk_size: Optional[int] = None) -> Tensor:
    r"""``fn`` of every edge, in chunks, recomputed in backward.

    Args:
        fn (callable): ``fn(views, start, end)`` returns the rows
            ``[end - start, ...]`` of edges ``start:end``; it must be
            differentiable in ``views``, the chunk's views of ``tensors``
            (see ``gather``), and read nothing else that needs a gradient.
        tensors (sequence of Tensor): everything ``fn`` reads that may need a
            gradient (projected nodes, edge tensors, weights).
        num_edges (int): number of edges :math:`E`.
        gather (sequence, optional): how a chunk sees each tensor, as in
            :func:`pyg_attn.functional.online_softmax.online_softmax_attention`:
            an index ``[E]``, :obj:`EDGES` or :obj:`None` (the whole
            tensor). (default: :obj:`None`, all whole)
        dst (LongTensor, optional): destination of each edge ``[E]``; given,
            the rows are summed into their destinations. (default:
            :obj:`None`, the rows themselves)
        num_dst (int, optional): number of destinations, with ``dst``.
        chunk_size (int, optional): edges per chunk; by default as many as
            keep each gathered or edge view of a chunk within
            :data:`pyg_attn.functional.sparse.CHUNK_ELEMENTS` values.
            (default: :obj:`None`)

    Returns:
        ``[E, ...]`` rows, or with ``dst`` their ``[num_dst, ...]`` sums
        (zeros where no edge arrives; summed in float32 for half rows, and
        returned in the rows' dtype).  Backward keeps only ``tensors`` and
        evaluates ``fn`` once more per chunk.  Under ``torch.compile`` the
        edges form one chunk with plain autograd (the compiler fuses it).

    Raises:
        ValueError: ``gather`` without one entry per tensor, or with an
            entry that is not an index, :obj:`EDGES` or :obj:`None`;
            ``dst`` without ``num_dst``; ``chunk_size < 1``.
    """
    gather = _check_gather(gather, tensors)
    if dst is not None and num_dst is None:
        raise ValueError("edge_map with 'dst' needs 'num_dst', the number of "
                         "destinations to sum the rows into")
    chunk_size = _chunk_size(chunk_size, tensors, gather)
    if torch.compiler.is_compiling():
        views = [_chunk_view(t, g, 0, num_edges)
                 for t, g in zip(tensors, gather)]
        rows = fn(views, 0, num_edges)
        if dst is None:
            return rows
        return _sum_rows(rows, dst, num_dst).to(rows.dtype)
    return _EdgeMap.apply(fn, gather, dst, num_dst, num_edges, chunk_size,
                          *tensors)


def recomputed(fn, *args):
    """``fn(*args)``, keeping only ``args`` (and the parameters ``fn``
    reads) for backward, where ``fn`` runs again
    (:func:`torch.utils.checkpoint.checkpoint`): for a chain of cheap
    elementwise steps whose temporaries plain autograd would keep.  Plain
    autograd without gradients and under ``torch.compile``, which fuses the
    chain."""
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)
