r"""The numerator of kernelised attention per graph of a batch, in chunks of
nodes.

.. math::
    \mathbf{n}_i = \phi(\mathbf{q}_i)^\top \mathbf{S}_{g(i)}, \qquad
    \mathbf{S}_g = \sum_{l \in g} \phi(\mathbf{k}_l)\, \mathbf{v}_l^\top

per head.  Written with autograd over whole tensors, both the outer products
:math:`\phi(\mathbf{k}_l) \mathbf{v}_l^\top` and the gathered
:math:`\mathbf{S}_{g(i)}` are ``[N, H, m, C]`` tensors, and the second is kept
for backward.  Here they exist one chunk of nodes at a time, and backward
keeps only the inputs and the ``[G, H, m, C]`` per-graph sums:

.. math::
    \partial \phi(\mathbf{q}_i) = \mathbf{S}_{g(i)} \partial \mathbf{n}_i,
    \quad \partial \mathbf{S}_g = \sum_{i \in g} \phi(\mathbf{q}_i)
    \partial \mathbf{n}_i^\top, \quad
    \partial \phi(\mathbf{k}_l) = \partial \mathbf{S}_{g(l)} \mathbf{v}_l,
    \quad \partial \mathbf{v}_l = \partial \mathbf{S}_{g(l)}^\top
    \phi(\mathbf{k}_l).

In eager mode a sorted ``batch`` makes each graph a contiguous block of
rows, so the sums are two matmuls per graph on views
(:func:`_segment_kernel_attention`), with autograd keeping the same
inputs and per-graph sums; this is 20-50x faster than the chunked gather
on CPU.  Under :func:`torch.compile` the number of nodes per graph is not
known at trace time, so the chunked path runs there.

For one graph, :func:`fused_kernel_attention` goes further: it takes
queries, keys and values rather than features, makes the features one chunk
of nodes at a time (forward, and again in backward) and returns the
normalised output, so the ``[N, H, m]`` features are never stored.

Letter legend: N nodes, G graphs, H heads, m features, C channels.
"""
import math
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from pyg_attn.functional.softmax import stat_dtype
from pyg_attn.functional.random_features import RELU_KERNEL_EPS
from pyg_attn.functional.sparse import _chunks


def _outer_sum(a: Tensor, b: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """:math:`\\sum_{l \\in g} a_l b_l^\\top` ``[G, H, m, C]``."""
    heads, m, channels = a.size(1), a.size(2), b.size(2)
    out = a.new_zeros((num_graphs, heads, m, channels))
    for start, end in _chunks(a.size(0), heads * m * channels):
        outer = a[start:end].unsqueeze(-1) * b[start:end].unsqueeze(-2)
        out.index_add_(0, batch[start:end], outer)  # [c, H, m, C] at a time
    return out


def _per_node(matrices: Tensor, vectors: Tensor, batch: Tensor,
              transpose: bool) -> Tensor:
    """:math:`M_{g(i)} x_i` (or :math:`M_{g(i)}^\\top x_i`) for each node."""
    rows = matrices.size(3 if transpose else 2)
    out = vectors.new_empty(vectors.shape[:2] + (rows, ))
    row_size = matrices.size(1) * matrices.size(2) * matrices.size(3)
    for start, end in _chunks(vectors.size(0), row_size):
        mats = matrices.index_select(0, batch[start:end])  # [c, H, m, C]
        if transpose:
            mats = mats.transpose(-1, -2)
        out[start:end] = torch.matmul(
            mats, vectors[start:end].unsqueeze(-1)).squeeze(-1)
    return out


class _GraphKernelAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, phi_q, phi_k, value, batch, num_graphs):
        kv = _outer_sum(phi_k, value, batch, num_graphs)  # [G, H, m, C]
        ctx.save_for_backward(phi_q, phi_k, value, batch, kv)
        ctx.num_graphs = num_graphs
        return _per_node(kv, phi_q, batch, transpose=True)  # [N, H, C]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        phi_q, phi_k, value, batch, kv = ctx.saved_tensors
        grad_q = grad_k = grad_v = None
        if ctx.needs_input_grad[0]:
            grad_q = _per_node(kv, grad, batch, transpose=False)  # [N, H, m]
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_kv = _outer_sum(phi_q, grad, batch, ctx.num_graphs)
            if ctx.needs_input_grad[1]:
                grad_k = _per_node(grad_kv, value, batch, transpose=False)
            if ctx.needs_input_grad[2]:
                grad_v = _per_node(grad_kv, phi_k, batch, transpose=True)
        return grad_q, grad_k, grad_v, None, None


def graph_kernel_attention(phi_q: Tensor, phi_k: Tensor, value: Tensor,
                           batch: Tensor, num_graphs: int) -> Tensor:
    r"""Per-graph kernel attention numerator
    :math:`\phi(\mathbf{q}_i)^\top \sum_{l \in g(i)} \phi(\mathbf{k}_l)
    \mathbf{v}_l^\top`.

    Args:
        phi_q (Tensor): query features ``[N, H, m]``.
        phi_k (Tensor): key features ``[N, H, m]``.
        value (Tensor): values ``[N, H, C]``.
        batch (LongTensor): graph of each node ``[N]``.
        num_graphs (int): number of graphs G.

    ``batch`` must be sorted (as PyG's :class:`~torch_geometric.data.Batch`
    makes it; :class:`~pyg_attn.nn.LinearAttentionConv` checks this).

    Returns:
        ``[N, H, C]``.  Memory beyond the inputs: the ``[G, H, m, C]`` sums
        and one chunk of nodes' ``[c, H, m, C]`` temporaries.
    """
    if torch.compiler.is_compiling():
        return _GraphKernelAttention.apply(phi_q, phi_k, value, batch,
                                           num_graphs)
    return _segment_kernel_attention(phi_q, phi_k, value, batch, num_graphs)


def _segment_kernel_attention(phi_q: Tensor, phi_k: Tensor, value: Tensor,
                              batch: Tensor, num_graphs: int) -> Tensor:
    """:func:`graph_kernel_attention` for a sorted ``batch``, one pair of
    matmuls per graph on contiguous views (reads the counts per graph, so not
    for tracing)."""
    counts = torch.bincount(batch, minlength=num_graphs).tolist()
    outs = [value.new_zeros(value.size(1), 0, value.size(2))]
    for q, k, v in zip(phi_q.split(counts), phi_k.split(counts),
                       value.split(counts)):
        kv = torch.matmul(k.permute(1, 2, 0), v.transpose(0, 1))  # [H, m, C]
        outs.append(torch.matmul(q.transpose(0, 1), kv))  # [H, n, C]
    return torch.cat(outs, dim=1).transpose(0, 1)  # [N, H, C]


# rows per chunk of the fused path: each [H, c, m] temporary holds about this
# many elements, so a chunk's working set stays in cache (see
# benchmarks/linear_attention.py for the effect on the scaling in N)
FUSED_CHUNK_ELEMENTS = 2**17


def _fused_chunks(num_rows: int, row_size: int, chunk_rows: Optional[int]):
    return _chunks(num_rows, row_size, FUSED_CHUNK_ELEMENTS, chunk_rows)


def _heads_first(x: Tensor, start: int, end: int, dtype) -> Tensor:
    """Rows ``start:end`` of ``[N, H, ·]`` as ``[H, c, ·]`` in ``dtype``."""
    return x[start:end].transpose(0, 1).to(dtype)


class _FusedKernelAttention(torch.autograd.Function):
    """Outputs ``[N, H, C]``; ``keep`` ``[N, H]`` scales the keys' features
    in the numerator (key dropout) and is not differentiated."""

    @staticmethod
    def forward(ctx, query, key, value, w, keep, kernel, chunk_rows):
        dtype = stat_dtype(query.dtype)
        w = w.to(dtype)
        H, m, C = w.shape
        kv, z, key_max = _fused_key_sums(key, value, w, keep, kernel,
                                         chunk_rows)
        out = query.new_empty(query.shape, dtype=dtype)  # [N, H, C]
        for start, end in _fused_chunks(query.size(0), H * max(m, C),
                                        chunk_rows):
            phi_q, _ = _features(_heads_first(query, start, end, dtype), w,
                                 kernel, None)  # [H, c, m]
            num, den = _numerator_denominator(phi_q, kv, z)
            out[start:end] = (num / den).transpose(0, 1)
        ctx.save_for_backward(query, key, value, w, keep, kv, z, key_max)
        ctx.kernel, ctx.chunk_rows = kernel, chunk_rows
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        query, key, value, w, keep, kv, z, key_max = ctx.saved_tensors
        kernel, chunk_rows = ctx.kernel, ctx.chunk_rows
        dtype, (H, m, C) = w.dtype, w.shape
        row_size = H * max(m, C)
        grad_q = torch.empty_like(query)
        grad_kv = torch.zeros_like(kv)  # [H, m, C]
        grad_z = torch.zeros_like(z)  # [H, m]
        for start, end in _fused_chunks(query.size(0), row_size, chunk_rows):
            q = _heads_first(query, start, end, dtype)  # [H, c, C]
            phi_q, proj = _features(q, w, kernel, None)  # [H, c, m]
            num, den = _numerator_denominator(phi_q, kv, z)
            g = _heads_first(grad, start, end, dtype) / den  # d num
            g_den = -(g * num).sum(-1, keepdim=True) / den  # [H, c, 1]
            grad_kv.baddbmm_(phi_q.transpose(1, 2), g)
            grad_z.add_((phi_q * g_den).sum(1))
            g_phi = torch.matmul(g, kv.transpose(1, 2)) + g_den * \
                z.unsqueeze(1)  # [H, c, m]
            grad_q[start:end] = _features_backward(
                g_phi, phi_q, proj, q, w, kernel).transpose(0, 1)
        grad_k = torch.empty_like(key)
        grad_v = torch.empty_like(value)
        for start, end in _fused_chunks(key.size(0), row_size, chunk_rows):
            k = _heads_first(key, start, end, dtype)
            v = _heads_first(value, start, end, dtype)
            phi_k, proj = _features(k, w, kernel, key_max)
            g_phi = torch.matmul(v, grad_kv.transpose(1, 2))  # [H, c, m]
            if keep is not None:
                keep_k = _heads_first(keep, start, end, dtype).unsqueeze(-1)
                phi_kv, g_phi = phi_k * keep_k, g_phi * keep_k
            else:
                phi_kv = phi_k
            grad_v[start:end] = torch.matmul(phi_kv, grad_kv).transpose(0, 1)
            g_phi = g_phi + grad_z.unsqueeze(1)
            grad_k[start:end] = _features_backward(
                g_phi, phi_k, proj, k, w, kernel).transpose(0, 1)
        return grad_q, grad_k, grad_v, None, None, None, None


def _features(x: Tensor, w: Tensor, kernel: str,
              key_max: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
    """Features ``[H, c, m]`` of ``x`` ``[H, c, C]`` and the projection they
    came from: as :func:`~pyg_attn.functional.softmax_kernel_features`
    (queries stabilised per row, keys by ``key_max`` ``[H, 1, 1]``) or
    :func:`~pyg_attn.functional.relu_kernel_features`."""
    proj = torch.matmul(x, w.transpose(1, 2))  # [H, c, m]
    if kernel == 'relu':
        return proj.relu() + RELU_KERNEL_EPS, proj
    log_sqrt_m = 0.5 * math.log(w.size(1))
    if key_max is None:  # query: the row's own max, all terms detached
        shift = proj.amax(dim=-1, keepdim=True) + log_sqrt_m
    else:
        shift = 0.5 * x.pow(2).sum(-1, keepdim=True) + log_sqrt_m + key_max
    return (proj - shift).exp_(), proj


def _features_backward(g_phi: Tensor, phi: Tensor, proj: Tensor, x: Tensor,
                       w: Tensor, kernel: str) -> Tensor:
    r"""``d x`` ``[H, c, C]`` from ``d phi``: for softmax features
    :math:`\partial \phi_r / \partial \mathbf{x} = \phi_r (\mathbf{w}_r -
    \mathbf{x})` (the stabiliser is detached), for ReLU features
    :math:`[\mathbf{w}_r^\top \mathbf{x} > 0]\, \mathbf{w}_r`."""
    if kernel == 'relu':
        return torch.matmul(g_phi * (proj > 0), w)
    a = g_phi * phi  # [H, c, m]
    return torch.matmul(a, w) - x * a.sum(-1, keepdim=True)


def _numerator_denominator(phi_q: Tensor, kv: Tensor,
                           z: Tensor) -> Tuple[Tensor, Tensor]:
    num = torch.matmul(phi_q, kv)  # [H, c, C]
    den = torch.matmul(phi_q, z.unsqueeze(-1))  # [H, c, 1]
    return num, den.clamp_min(torch.finfo(den.dtype).tiny)


def _fused_key_sums(key: Tensor, value: Tensor, w: Tensor,
                    keep: Optional[Tensor], kernel: str,
                    chunk_rows: Optional[int]):
    """:math:`\\mathbf{S} = \\sum_l \\phi(\\mathbf{k}_l) \\mathbf{v}_l^\\top`
    ``[H, m, C]`` (keys scaled by ``keep``), :math:`\\mathbf{z} = \\sum_l
    \\phi(\\mathbf{k}_l)` ``[H, m]`` and the keys' stabiliser ``[H, 1, 1]``
    (a first pass over the keys; zeros for ReLU features)."""
    dtype, (H, m, C) = w.dtype, w.shape
    row_size = H * max(m, C)
    key_max = w.new_zeros(H, 1, 1)
    if kernel != 'relu':
        key_max.fill_(float('-inf'))
        for start, end in _fused_chunks(key.size(0), row_size, chunk_rows):
            k = _heads_first(key, start, end, dtype)
            proj = torch.matmul(k, w.transpose(1, 2))  # [H, c, m]
            row_max = proj.amax(-1) - 0.5 * k.pow(2).sum(-1)  # [H, c]
            key_max = torch.maximum(key_max, row_max.amax(-1).view(H, 1, 1))
    kv = w.new_zeros(H, m, C)
    z = w.new_zeros(H, m)
    for start, end in _fused_chunks(key.size(0), row_size, chunk_rows):
        phi_k, _ = _features(_heads_first(key, start, end, dtype), w, kernel,
                             key_max)  # [H, c, m]
        z.add_(phi_k.sum(1))
        if keep is not None:
            phi_k = phi_k * _heads_first(keep, start, end, dtype).unsqueeze(-1)
        kv.baddbmm_(phi_k.transpose(1, 2),
                    _heads_first(value, start, end, dtype))
    return kv, z, key_max


def fused_kernel_attention(query: Tensor, key: Tensor, value: Tensor,
                           w: Tensor, kernel: str = 'softmax',
                           keep: Optional[Tensor] = None,
                           chunk_rows: Optional[int] = None) -> Tensor:
    r"""Normalised kernel attention over one graph, features made on the fly:

    .. math::
        \mathbf{o}_i = \frac{\phi(\mathbf{q}_i)^\top \mathbf{S}}
        {\phi(\mathbf{q}_i)^\top \mathbf{z}}, \qquad
        \mathbf{S} = \sum_l \kappa_l \phi(\mathbf{k}_l) \mathbf{v}_l^\top,
        \quad \mathbf{z} = \sum_l \phi(\mathbf{k}_l)

    per head, with :math:`\phi` the positive softmax features of
    :func:`~pyg_attn.functional.softmax_kernel_features` (stabilised as
    there) or the ReLU features of
    :func:`~pyg_attn.functional.relu_kernel_features`, and :math:`\kappa_l`
    the key dropout ``keep``.  Equal to composing those functions with
    whole-tensor matmuls, but the ``[N, H, m]`` features never exist: nodes
    go through in chunks of a few thousand rows, forward and backward (which
    recomputes each chunk's features), so the working set stays in cache
    and memory beyond the inputs is the ``[H, m, C]`` sums.  This is what
    makes time linear in N on CPU (every whole-tensor pass over
    ``[N, H, m]`` goes to main memory and page-faults in fresh pages).

    Args:
        query (Tensor): queries ``[N, H, C]``, already scaled.
        key (Tensor): keys ``[N, H, C]``, already scaled.
        value (Tensor): values ``[N, H, C]``.
        w (Tensor): random projections ``[H, m, C]`` (not differentiated).
        kernel (str, optional): ``'softmax'`` or ``'relu'``.
        keep (Tensor, optional): key dropout scale ``[N, H]`` (not
            differentiated).
        chunk_rows (int, optional): rows per chunk; by default about
            :obj:`FUSED_CHUNK_ELEMENTS` elements per ``[H, c, m]`` chunk.

    Returns:
        ``[N, H, C]`` in float32 for float16/bfloat16 input, else in the
        input dtype.
    """
    return _FusedKernelAttention.apply(query, key, value, w.detach(), keep,
                                       kernel, chunk_rows)
