r"""Exact attention over edges with an online softmax, in chunks of edges.

For each destination :math:`i` with incoming edges :math:`e = (j \to i)`,

.. math::
    \mathbf{o}_i = \sum_{e} \frac{\exp(s_e)}{\sum_{e'} \exp(s_{e'})}
    \mathbf{m}_e,

where the score :math:`s_e` ``[H]`` and the message :math:`\mathbf{m}_e`
``[H, C]`` of an edge come from two functions of a chunk of edges.  Chunks
arrive one after another; each destination keeps a running maximum
:math:`\mu_i`, a running sum :math:`\ell_i = \sum_e \exp(s_e - \mu_i)` and an
accumulator, and when a chunk raises :math:`\mu_i` the old sum and accumulator
are rescaled by :math:`\exp(\mu_{old} - \mu_{new})` (Milakov & Gimelshein 2018;
FlashAttention, Dao et al. 2022).  Memory is
:math:`O(N H C + \text{chunk} \cdot H C)`, never :math:`O(E H C)`.  A chunk
updates only the rows of the destinations it touches, so time is
:math:`O(E H C)` in all, not :math:`O(N H C)` per chunk.

Backward saves only the inputs, the output and the per-destination log-sum-exp
:math:`L_i = \mu_i + \log \ell_i`, and recomputes each chunk's scores and
messages: with :math:`p_e = \exp(s_e - L_i)` and
:math:`D_i = \langle \partial \mathbf{o}_i, \mathbf{o}_i \rangle`,

.. math::
    \partial \mathbf{m}_e = p_e \, \partial \mathbf{o}_i, \qquad
    \partial s_e = p_e \left(\langle \partial \mathbf{o}_i, \mathbf{m}_e
    \rangle - D_i\right),

pulled back through the score and message functions by autograd, chunk by
chunk, with respect to the chunk's own rows of the inputs (``gather``) where
they are fewer than the input's rows; their gradients are added into the
inputs' by index.  Statistics are kept in float32 for float16/bfloat16 inputs.
"""
import collections.abc
import math
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from pyg_attn.functional.softmax import edge_softmax, stat_dtype
from pyg_attn.functional.sparse import (_ranges, _rows, check_chunk_size,
                                       chunk_rows)

ChunkFn = Callable[[Sequence[Tensor], int, int], Tensor]
Gather = Optional[Sequence[Union[Tensor, str, None]]]

#: ``gather`` entry of a tensor with one row per edge: a chunk reads its rows
#: ``start:end``.
EDGES = 'edges'


def _keep(shape, p: float, seed: int, chunk: int, device) -> Tensor:
    """Dropout keep-mask scaled by 1/(1-p), replayable from (seed, chunk)."""
    gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + chunk)
    keep = torch.rand(shape, generator=gen, device=device) >= p
    return keep.to(torch.float32) / (1.0 - p)


def _check_gather(gather: Gather, tensors: Sequence[Tensor]) -> list:
    if gather is None:
        return [None] * len(tensors)
    gather = list(gather)
    if len(gather) != len(tensors):
        raise ValueError(f"'gather' has {len(gather)} entries for "
                         f"{len(tensors)} tensors; give one per tensor")
    for i, g in enumerate(gather):
        if not (g is None or g is EDGES or isinstance(g, Tensor)):
            raise ValueError(f"'gather[{i}]' ({g!r}) must be an index "
                             "tensor, EDGES or None")
    return gather


def _chunk_size(chunk_size: Optional[int], tensors: Sequence[Tensor],
                gather: list) -> int:
    """``chunk_size``, checked, or by default as many edges as keep each of
    a chunk's views (the gathered and edge rows) within
    :data:`pyg_attn.functional.sparse.CHUNK_ELEMENTS` values."""
    check_chunk_size(chunk_size)
    if chunk_size is not None:
        return chunk_size
    # a list, not max(generator, default=...), which torch.compile rejects
    rows = [math.prod(t.shape[1:]) for t, g in zip(tensors, gather)
            if g is not None]
    return chunk_rows(max(rows + [1]))


def _chunk_view(tensor: Tensor, gather, start: int, end: int) -> Tensor:
    """What a chunk's functions see of ``tensor``: its gathered rows
    ``[c, ...]``, its edge rows ``start:end``, or all of it."""
    if gather is None:
        return tensor
    return _rows(tensor, None if gather is EDGES else gather, start, end)


class _ChunkViews(collections.abc.Sequence):
    """A chunk's views of ``tensors`` (:func:`_chunk_view`), made on each
    access and not kept: a function holds only the rows it reads, for as long
    as it reads them."""
    def __init__(self, tensors, gather, start: int, end: int):
        self.tensors, self.gather = tensors, gather
        self.start, self.end = start, end

    def __len__(self) -> int:
        return len(self.tensors)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        return _chunk_view(self.tensors[i], self.gather[i], self.start,
                           self.end)


def _accumulate(total: Tensor, grad: Tensor, gather, start: int,
                end: int) -> None:
    """Adds a chunk's gradient of a view (see :func:`_chunk_view`) into the
    gradient of the whole tensor, touching only the chunk's rows."""
    if gather is None:
        total.add_(grad)
    elif gather is EDGES:
        total[start:end].add_(grad)
    else:
        total.index_add_(0, gather[start:end], grad)


def _backward_leaf(tensor: Tensor, gather, start: int, end: int,
                   need: bool) -> Tuple[Tensor, object, object]:
    """A chunk's leaf for backward, how the chunk's view is made from it
    (see :func:`_chunk_view`) and how its gradient adds into the tensor's
    (see :func:`_accumulate`).  A gathered tensor's leaf is the chunk's rows
    when they are fewer than the tensor's, so autograd returns a gradient of
    chunk size and not of node size; otherwise it is the whole tensor."""
    tensor = tensor.detach()
    if gather is None or (gather is not EDGES and
                          end - start >= tensor.size(0)):
        return tensor.requires_grad_(need), gather, None
    leaf = _chunk_view(tensor, gather, start, end).requires_grad_(need)
    return leaf, None, gather


def _pull_back(tensors, gather, needs, num_edges: int, chunk_size: int,
               forward, grads_of) -> list:
    """Gradients of ``tensors`` (:obj:`None` where ``needs`` says no) of a
    function recomputed chunk by chunk: ``forward(views, start, end)``
    returns a chunk's outputs (a tuple) from its views, and
    ``grads_of(outputs, k, start, end)`` (run without grad) the gradients
    of those outputs for chunk ``k``.  Each chunk is differentiated with
    respect to its own rows (:func:`_backward_leaf`) and its gradients are
    added into the tensors' (:func:`_accumulate`)."""
    grads = [torch.zeros_like(t) if n else None
             for t, n in zip(tensors, needs)]
    wanted = [i for i, n in enumerate(needs) if n]
    for k, (start, end) in enumerate(_ranges(num_edges, chunk_size)):
        with torch.enable_grad():
            leaves, view_gather, spans = zip(*[
                _backward_leaf(t, g, start, end, n)
                for t, g, n in zip(tensors, gather, needs)])
            outputs = forward(_ChunkViews(leaves, view_gather, start, end),
                              start, end)
        if not any(o.requires_grad for o in outputs):
            continue
        with torch.no_grad():
            output_grads = grads_of(outputs, k, start, end)
        pairs = [(o, g.to(o.dtype)) for o, g in zip(outputs, output_grads)
                 if o.requires_grad]
        chunk_grads = torch.autograd.grad(
            [o for o, _ in pairs], [leaves[i] for i in wanted],
            [g for _, g in pairs], allow_unused=True)
        for i, grad in zip(wanted, chunk_grads):
            if grad is not None:
                _accumulate(grads[i], grad, spans[i], start, end)
    return grads


def _forward(score_fn, message_fn, tensors, gather, dst, num_dst, chunk_size,
             dropout, seed):
    device = dst.device
    views = _ChunkViews(tensors, gather, 0, 0)
    heads, channels = message_fn(views, 0, 0).shape[1:]
    dtype = stat_dtype(tensors[0].dtype)
    lse_max = torch.full((num_dst, heads), float('-inf'), dtype=dtype,
                         device=device)
    lse_sum = torch.zeros((num_dst, heads), dtype=dtype, device=device)
    out = torch.zeros((num_dst, heads, channels), dtype=dtype, device=device)
    for k, (start, end) in enumerate(_ranges(dst.numel(), chunk_size)):
        index = dst[start:end]
        views = _ChunkViews(tensors, gather, start, end)
        score = score_fn(views, start, end).to(dtype)  # [c, H]
        message = message_fn(views, start, end)  # [c, H, C]
        # Only the destinations this chunk touches change: the update works
        # on their rows, so a chunk costs O(c) and not O(N).  The first chunk
        # meets the initial statistics and needs no rescaling.
        if k == 0:
            rows, local = None, index
        else:
            rows, local = torch.unique(index, return_inverse=True)  # [u], [c]
        old_max = lse_max if rows is None else lse_max.index_select(0, rows)
        idx = local.view(-1, 1).expand_as(score)
        new_max = old_max.scatter_reduce(0, idx, score, reduce='amax')
        p = (score - new_max.index_select(0, local)).exp()  # [c, H]
        sums = torch.zeros_like(new_max).scatter_add_(0, idx, p)  # [u, H]
        if dropout > 0:
            p = p * _keep(p.shape, dropout, seed, k, device)
        weighted = message.to(dtype) * p.unsqueeze(-1)  # [c, H, C]
        acc = out.new_zeros((new_max.size(0), heads, channels)).index_add_(
            0, local, weighted)  # [u, H, C]
        if rows is None:
            lse_max, lse_sum, out = new_max, sums, acc
            continue
        # exp(old - new), 0 where a row has seen no edge yet (-inf - -inf)
        rescale = torch.where(torch.isinf(new_max), 0.0,
                              old_max - new_max).exp()  # [u, H]
        lse_sum.index_copy_(0, rows, lse_sum.index_select(0, rows) * rescale +
                            sums)
        out.index_copy_(0, rows, out.index_select(0, rows) *
                        rescale.unsqueeze(-1) + acc)
        lse_max.index_copy_(0, rows, new_max)
    has_edges = lse_sum > 0
    out = out / torch.where(has_edges, lse_sum, 1.0).unsqueeze(-1)
    lse = torch.where(has_edges, lse_max + lse_sum.log(), float('-inf'))
    return out, lse


class _OnlineSoftmaxAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fns, gather, dst, num_dst, chunk_size, dropout, seed,
                *tensors):
        score_fn, message_fn = fns
        out, lse = _forward(score_fn, message_fn, tensors, gather, dst,
                            num_dst, chunk_size, dropout, seed)
        ctx.fns, ctx.gather, ctx.chunk_size, ctx.dropout, ctx.seed = (
            fns, gather, chunk_size, dropout, seed)
        ctx.save_for_backward(dst, out, lse, *tensors)
        return out.to(tensors[0].dtype), lse

    @staticmethod
    def backward(ctx, grad_out, grad_lse):
        dst, out, lse, *tensors = ctx.saved_tensors
        score_fn, message_fn = ctx.fns
        needs = ctx.needs_input_grad[7:]
        grad_out = grad_out.to(out.dtype)
        delta = (grad_out * out).sum(-1)  # [N, H]

        def forward(views, start: int, end: int):
            return (score_fn(views, start, end),  # [c, H]
                    message_fn(views, start, end))  # [c, H, C]

        def grads_of(outputs, k: int, start: int, end: int):
            score, message = outputs
            index = dst[start:end]
            p = (score.to(lse.dtype) - lse.index_select(0, index)).exp()
            g = grad_out.index_select(0, index)  # [c, H, C]
            dp = (g * message.to(g.dtype)).sum(-1)  # [c, H]
            weights = p
            if ctx.dropout > 0:
                keep = _keep(p.shape, ctx.dropout, ctx.seed, k, dst.device)
                dp, weights = dp * keep, p * keep
            grad_score = p * (dp - delta.index_select(0, index))
            return grad_score, weights.unsqueeze(-1) * g

        grads = _pull_back(tensors, ctx.gather, needs, dst.numel(),
                           ctx.chunk_size, forward, grads_of)
        return (None, None, None, None, None, None, None, *grads)


def online_softmax_attention(
    score_fn: ChunkFn,
    message_fn: ChunkFn,
    tensors: Sequence[Tensor],
    dst: Tensor,
    num_dst: int,
    chunk_size: Optional[int] = None,
    dropout: float = 0.0,
    training: bool = False,
    gather: Gather = None,
) -> Tuple[Tensor, Tensor]:
    r"""Softmax attention over each destination's incoming edges, in chunks.

    Args:
        score_fn (callable): ``score_fn(views, start, end)`` returns the
            logits ``[end - start, H]`` of edges ``start:end``; it must be
            differentiable in ``views``, the chunk's views of ``tensors``
            (see ``gather``).
        message_fn (callable): ``message_fn(views, start, end)`` returns
            the messages ``[end - start, H, C]`` of edges ``start:end``.
        tensors (sequence of Tensor): everything both functions read that may
            need a gradient (projected nodes, edge features, weights).  The
            first one's dtype is the output's.
        dst (LongTensor): destination of each edge ``[E]``.
        num_dst (int): number of destinations.
        chunk_size (int, optional): edges per chunk; by default as many as
            keep each gathered or edge view of a chunk within
            :data:`pyg_attn.functional.sparse.CHUNK_ELEMENTS` values.
            (default: :obj:`None`)
        dropout (float, optional): dropout on the attention weights, applied
            after normalisation as in :func:`torch.nn.functional.dropout`;
            the mask is replayed in backward from a seed. (default: ``0``)
        training (bool, optional): apply dropout. (default: :obj:`False`)
        gather (sequence, optional): how a chunk sees each tensor, one entry
            per tensor: an index ``[E]`` (the chunk sees the rows
            ``tensor[index[start:end]]``, e.g. ``dst`` for queries),
            :obj:`EDGES` (a tensor with one row per edge: the chunk sees
            ``tensor[start:end]``) or :obj:`None` (the whole tensor, e.g. a
            weight).  Gathered and edge tensors cost O(chunk) per chunk in
            backward; a whole tensor costs its size per chunk, so pass large
            node tensors by index. (default: :obj:`None`, all whole)

    Raises:
        ValueError: ``gather`` without one entry per tensor, or with an
            entry that is not an index, :obj:`EDGES` or :obj:`None`;
            ``chunk_size < 1``.

    Returns:
        ``(out, lse)``: ``out`` ``[num_dst, H, C]`` (zeros where there is no
        edge) and the log-sum-exp of the logits ``[num_dst, H]`` (float32 for
        half inputs; :math:`-\infty` where there is no edge).  Under
        ``torch.compile`` the whole edge set is one chunk with plain autograd
        (the compiler fuses it); the result is the same.
    """
    gather = _check_gather(gather, tensors)
    chunk_size = _chunk_size(chunk_size, tensors, gather)
    p = dropout if training else 0.0
    if torch.compiler.is_compiling():
        return _single_chunk(score_fn, message_fn, tensors, gather, dst,
                             num_dst, p)
    seed = int(torch.randint(0, 2**31 - 1, (1,))) if p > 0 else 0
    return _OnlineSoftmaxAttention.apply((score_fn, message_fn), gather, dst,
                                         num_dst, chunk_size, p, seed,
                                         *tensors)


def _single_chunk(score_fn, message_fn, tensors, gather, dst, num_dst,
                  dropout):
    num_edges = dst.numel()
    views = [_chunk_view(t, g, 0, num_edges) for t, g in zip(tensors, gather)]
    score = score_fn(views, 0, num_edges)  # [E, H]
    message = message_fn(views, 0, num_edges)  # [E, H, C]
    alpha = edge_softmax(score, dst, num_dst)  # [E, H]
    weights = torch.nn.functional.dropout(alpha, dropout, True)
    out = message.new_zeros((num_dst, ) + tuple(message.shape[1:]),
                            dtype=alpha.dtype).index_add_(
                                0, dst, weights.unsqueeze(-1) * message)
    lse = logsumexp_by_destination(score, dst, num_dst)
    return out.to(tensors[0].dtype), lse


def logsumexp_by_destination(score: Tensor, dst: Tensor,
                             num_dst: int) -> Tensor:
    """:math:`L_i = \\log \\sum_{e: d_e = i} \\exp(s_e)` ``[N, H]``
    (float32 for half scores, :math:`-\\infty` without edges)."""
    s = score.to(stat_dtype(score.dtype))
    idx = dst.view(-1, 1).expand_as(s)
    m = s.new_full((num_dst, s.size(1)), float('-inf')).scatter_reduce(
        0, idx, s.detach(), reduce='amax')
    m_safe = m.clamp(min=torch.finfo(s.dtype).min)
    total = torch.zeros_like(m).scatter_add(
        0, idx, (s - m_safe.index_select(0, dst)).exp())
    return torch.where(total > 0, m_safe + total.log(), float('-inf'))


def attention_weights(score_fn: ChunkFn, tensors: Sequence[Tensor],
                      lse: Tensor, dst: Tensor,
                      chunk_size: Optional[int] = None,
                      gather: Gather = None) -> Tensor:
    """The weights :math:`\\exp(s_e - L_{d_e})` ``[E, H]`` from the saved
    log-sum-exp, chunk by chunk (no gradient); ``chunk_size`` and ``gather``
    as in :func:`online_softmax_attention`."""
    gather = _check_gather(gather, tensors)
    chunk_size = _chunk_size(chunk_size, tensors, gather)

    def score(start, end):
        return score_fn(_ChunkViews(tensors, gather, start, end), start,
                        end).to(lse.dtype)

    with torch.no_grad():
        parts = [(score(start, end) -
                  lse.index_select(0, dst[start:end])).exp()
                 for start, end in _ranges(dst.numel(), chunk_size)]
    return torch.cat(parts) if parts else lse.new_zeros((0, lse.size(1)))
