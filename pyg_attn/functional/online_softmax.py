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
:math:`O(N H C + \text{chunk} \cdot H C)`, never :math:`O(E H C)`.

Backward saves only the inputs, the output and the per-destination log-sum-exp
:math:`L_i = \mu_i + \log \ell_i`, and recomputes each chunk's scores and
messages: with :math:`p_e = \exp(s_e - L_i)` and
:math:`D_i = \langle \partial \mathbf{o}_i, \mathbf{o}_i \rangle`,

.. math::
    \partial \mathbf{m}_e = p_e \, \partial \mathbf{o}_i, \qquad
    \partial s_e = p_e \left(\langle \partial \mathbf{o}_i, \mathbf{m}_e
    \rangle - D_i\right),

pulled back through the score and message functions by autograd, chunk by
chunk.  Statistics are kept in float32 for float16/bfloat16 inputs.
"""
from typing import Callable, Sequence, Tuple

import torch
from torch import Tensor

from pyg_attn.functional.softmax import edge_softmax, stat_dtype

ChunkFn = Callable[[Sequence[Tensor], int, int], Tensor]


def _chunks(num_edges: int, chunk_size: int):
    for start in range(0, num_edges, chunk_size):
        yield start, min(start + chunk_size, num_edges)


def _keep(shape, p: float, seed: int, chunk: int, device) -> Tensor:
    """Dropout keep-mask scaled by 1/(1-p), replayable from (seed, chunk)."""
    gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + chunk)
    keep = torch.rand(shape, generator=gen, device=device) >= p
    return keep.to(torch.float32) / (1.0 - p)


def _forward(score_fn, message_fn, tensors, dst, num_dst, chunk_size,
             dropout, seed):
    device = dst.device
    heads, channels = message_fn(tensors, 0, 0).shape[1:]
    dtype = stat_dtype(tensors[0].dtype)
    lse_max = torch.full((num_dst, heads), float('-inf'), dtype=dtype,
                         device=device)
    lse_sum = torch.zeros((num_dst, heads), dtype=dtype, device=device)
    out = torch.zeros((num_dst, heads, channels), dtype=dtype, device=device)
    for k, (start, end) in enumerate(_chunks(dst.numel(), chunk_size)):
        index = dst[start:end]
        score = score_fn(tensors, start, end).to(dtype)  # [c, H]
        message = message_fn(tensors, start, end)  # [c, H, C]
        idx = index.view(-1, 1).expand_as(score)
        new_max = lse_max.scatter_reduce(0, idx, score, reduce='amax')
        # exp(old - new), 1 where a row has seen no edge yet (-inf - -inf)
        rescale = torch.where(torch.isinf(new_max), 0.0,
                              lse_max - new_max).exp()  # [N, H]
        p = (score - new_max.index_select(0, index)).exp()  # [c, H]
        lse_sum = lse_sum * rescale + torch.zeros_like(lse_sum).scatter_add_(
            0, idx, p)
        if dropout > 0:
            p = p * _keep(p.shape, dropout, seed, k, device)
        weighted = message.to(dtype) * p.unsqueeze(-1)  # [c, H, C]
        out = out * rescale.unsqueeze(-1) + torch.zeros_like(out).index_add_(
            0, index, weighted)
        lse_max = new_max
    has_edges = lse_sum > 0
    out = out / torch.where(has_edges, lse_sum, 1.0).unsqueeze(-1)
    lse = torch.where(has_edges, lse_max + lse_sum.log(), float('-inf'))
    return out, lse


class _OnlineSoftmaxAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fns, dst, num_dst, chunk_size, dropout, seed, *tensors):
        score_fn, message_fn = fns
        out, lse = _forward(score_fn, message_fn, tensors, dst, num_dst,
                            chunk_size, dropout, seed)
        ctx.fns, ctx.chunk_size, ctx.dropout, ctx.seed = (fns, chunk_size,
                                                          dropout, seed)
        ctx.save_for_backward(dst, out, lse, *tensors)
        return out.to(tensors[0].dtype), lse

    @staticmethod
    def backward(ctx, grad_out, grad_lse):
        dst, out, lse, *tensors = ctx.saved_tensors
        score_fn, message_fn = ctx.fns
        needs = ctx.needs_input_grad[6:]
        leaves = [t.detach().requires_grad_(n) for t, n in zip(tensors, needs)]
        wanted = [t for t in leaves if t.requires_grad]
        grads = [torch.zeros_like(t) for t in wanted]
        grad_out = grad_out.to(out.dtype)
        delta = (grad_out * out).sum(-1)  # [N, H]
        for k, (start, end) in enumerate(_chunks(dst.numel(),
                                                 ctx.chunk_size)):
            index = dst[start:end]
            with torch.enable_grad():
                score = score_fn(leaves, start, end)  # [c, H]
                message = message_fn(leaves, start, end)  # [c, H, C]
            with torch.no_grad():
                p = (score.to(lse.dtype) - lse.index_select(0, index)).exp()
                g = grad_out.index_select(0, index)  # [c, H, C]
                dp = (g * message.to(g.dtype)).sum(-1)  # [c, H]
                weights = p
                if ctx.dropout > 0:
                    keep = _keep(p.shape, ctx.dropout, ctx.seed, k,
                                 dst.device)
                    dp, weights = dp * keep, p * keep
                grad_score = p * (dp - delta.index_select(0, index))
                grad_message = weights.unsqueeze(-1) * g
            pairs = [(o, g.to(o.dtype)) for o, g in ((score, grad_score),
                                                     (message, grad_message))
                     if o.requires_grad]
            if not pairs:
                continue
            chunk_grads = torch.autograd.grad(
                [o for o, _ in pairs], wanted, [g for _, g in pairs],
                allow_unused=True)
            for acc, grad in zip(grads, chunk_grads):
                if grad is not None:
                    acc.add_(grad)
        it = iter(grads)
        tensor_grads = [next(it) if n else None for n in needs]
        return (None, None, None, None, None, None, *tensor_grads)


def online_softmax_attention(
    score_fn: ChunkFn,
    message_fn: ChunkFn,
    tensors: Sequence[Tensor],
    dst: Tensor,
    num_dst: int,
    chunk_size: int = 65536,
    dropout: float = 0.0,
    training: bool = False,
) -> Tuple[Tensor, Tensor]:
    r"""Softmax attention over each destination's incoming edges, in chunks.

    Args:
        score_fn (callable): ``score_fn(tensors, start, end)`` returns the
            logits ``[end - start, H]`` of edges ``start:end``; it must be
            differentiable in ``tensors``.
        message_fn (callable): ``message_fn(tensors, start, end)`` returns
            the messages ``[end - start, H, C]`` of edges ``start:end``.
        tensors (sequence of Tensor): everything both functions read that may
            need a gradient (projected nodes, edge features, weights).  The
            first one's dtype is the output's.
        dst (LongTensor): destination of each edge ``[E]``.
        num_dst (int): number of destinations.
        chunk_size (int, optional): edges per chunk. (default: :obj:`65536`)
        dropout (float, optional): dropout on the attention weights, applied
            after normalisation as in :func:`torch.nn.functional.dropout`;
            the mask is replayed in backward from a seed. (default: ``0``)
        training (bool, optional): apply dropout. (default: :obj:`False`)

    Returns:
        ``(out, lse)``: ``out`` ``[num_dst, H, C]`` (zeros where there is no
        edge) and the log-sum-exp of the logits ``[num_dst, H]`` (float32 for
        half inputs; :math:`-\infty` where there is no edge).  Under
        ``torch.compile`` the whole edge set is one chunk with plain autograd
        (the compiler fuses it); the result is the same.
    """
    assert chunk_size >= 1
    p = dropout if training else 0.0
    if torch.compiler.is_compiling():
        return _single_chunk(score_fn, message_fn, tensors, dst, num_dst, p)
    seed = int(torch.randint(0, 2**31 - 1, (1,))) if p > 0 else 0
    return _OnlineSoftmaxAttention.apply((score_fn, message_fn), dst, num_dst,
                                         chunk_size, p, seed, *tensors)


def _single_chunk(score_fn, message_fn, tensors, dst, num_dst, dropout):
    num_edges = dst.numel()
    score = score_fn(tensors, 0, num_edges)  # [E, H]
    message = message_fn(tensors, 0, num_edges)  # [E, H, C]
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
                      chunk_size: int = 65536) -> Tensor:
    """The weights :math:`\\exp(s_e - L_{d_e})` ``[E, H]`` from the saved
    log-sum-exp, chunk by chunk (no gradient)."""
    with torch.no_grad():
        parts = [(score_fn(tensors, start, end).to(lse.dtype) -
                  lse.index_select(0, dst[start:end])).exp()
                 for start, end in _chunks(dst.numel(), chunk_size)]
    return torch.cat(parts) if parts else lse.new_zeros((0, lse.size(1)))
