r"""Exact k-nearest-neighbour edges and per-edge distances, computed in tiles.

Two distances, both true distances (not squared):

* ``'l2'``: :math:`d(a, b) = \lVert a - b \rVert_2`;
* ``'cosine'``: :math:`d(a, b) = 1 - \frac{\langle a, b \rangle}
  {\lVert a \rVert \lVert b \rVert}` in :math:`[0, 2]`; a zero vector has
  cosine 0 with everything (distance 1).

:func:`knn` never holds an ``[N, N]`` matrix: it walks the queries in blocks
of ``block_size`` rows and, for each block, the candidates of the same graphs
in blocks of ``block_size`` columns, merging a running top-k.  Candidates are
ranked by :math:`\lVert a\rVert^2 + \lVert b\rVert^2 - 2\langle a, b\rangle`
(one matrix product per tile); the k chosen are then re-measured directly as
:math:`\lVert a - b\rVert` and re-sorted, so the returned distances carry no
cancellation error.  Inputs are computed in float32 (float64 stays float64).
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

METRICS = ('l2', 'cosine')
BLOCK_SIZE = 1024
_EDGE_CHUNK = 1 << 22  # values in one per-edge temporary of edge_distance


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"'metric' ({metric!r}) must be one of {METRICS}")


def metric_vectors(x: Tensor, metric: str) -> Tensor:
    """``x`` as the metric compares it: float32 (float64 stays float64),
    with unit rows for ``'cosine'``; a ``ValueError`` unless ``x`` is 2-D
    floating point."""
    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else None
        raise ValueError(f"'x' must be 2-D [num_nodes, channels], got shape "
                         f"{shape}")
    if not x.is_floating_point():
        raise ValueError(f"'x' must be a floating-point tensor, got "
                         f"{x.dtype}; use x.float()")
    check_metric(metric)
    z = x.to(torch.promote_types(x.dtype, torch.float32))
    return F.normalize(z, dim=-1) if metric == 'cosine' else z


def _distance(a: Tensor, b: Tensor, metric: str) -> Tensor:
    """Row-wise distance of prepared vectors (last dimension reduced)."""
    if metric == 'cosine':
        return 1 - (a * b).sum(-1)
    return (a - b).norm(dim=-1)


def edge_distance(x: Tensor, edge_index: Tensor,
                  metric: str = 'l2') -> Tensor:
    r"""The distance between the two ends of every edge,
    :math:`d(x_{\mathrm{src}(e)}, x_{\mathrm{dst}(e)})`, computed in chunks
    of edges.

    Args:
        x (Tensor): node vectors ``[N, F]`` (floating point).
        edge_index (LongTensor): ``[2, E]``.
        metric (str): ``'l2'`` or ``'cosine'`` (see the module docstring).

    Returns:
        Distances ``[E]`` in float32 (float64 for float64 ``x``),
        differentiable with respect to ``x``.
    """
    z = metric_vectors(x, metric)
    step = max(1, _EDGE_CHUNK // max(z.size(1), 1))
    chunks = [
        _distance(z[edge_index[0, s:s + step]], z[edge_index[1, s:s + step]],
                  metric) for s in range(0, edge_index.size(1), step)
    ]
    return torch.cat(chunks) if chunks else z.new_empty(0)


def knn(x: Tensor, k: int, batch: Optional[Tensor] = None,
        metric: str = 'l2', loop: bool = False,
        block_size: int = BLOCK_SIZE) -> Tuple[Tensor, Tensor]:
    r"""Exact k nearest neighbours of every node within its own graph, as
    edges from each neighbour to its query node.

    For each node :math:`i` of graph :math:`g`, the edges :math:`j \to i` to
    the :math:`k` nodes :math:`j \ne i` of :math:`g` (:math:`j = i` allowed
    with ``loop=True``) of least :math:`d(x_i, x_j)`.  Exact, the same set
    as a brute force :obj:`torch.cdist(...).topk`, up to exact ties (and, in
    float32, distances equal to rounding) at the k-th place.  Memory is
    :math:`O(\text{block\_size}^2 + N k)`, never :math:`O(N^2)`.

    Args:
        x (Tensor): node vectors ``[N, F]`` (floating point).
        k (int): neighbours per node.
        batch (LongTensor, optional): graph of each node ``[N]``; no edge
            joins two graphs.  Need not be sorted.  (default: :obj:`None`,
            one graph)
        metric (str): ``'l2'`` (Euclidean) or ``'cosine'`` (:math:`1 -
            \cos`). (default: ``'l2'``)
        loop (bool): count a node as its own neighbour (at distance 0).
            (default: :obj:`False`)
        block_size (int): rows and columns of one distance tile.
            (default: ``1024``)

    Returns:
        ``(edge_index, distance)``: ``edge_index`` ``[2, E]`` with row 0 the
        neighbour (source) and row 1 the query node (target), grouped by
        target in node order and, within a target, by ascending distance;
        ``distance`` ``[E]`` the true distance of each edge (float32, or
        float64 for float64 ``x``; differentiable with respect to ``x``, the
        choice of neighbours is not).  ``E = N * k`` when every graph has at
        least ``k + 1`` nodes (``k`` with ``loop=True``); a node of a
        smaller graph gets all the others of its graph, fewer than ``k``
        (a lone node without ``loop`` gets none).

    Raises:
        ValueError: for a ``k`` or ``block_size`` below 1, an unknown
            ``metric``, an ``x`` that is not 2-D floating point, or a
            ``batch`` that is not ``[N]``.

    Example:
        >>> x = torch.randn(100, 8)
        >>> edge_index, dist = knn(x, k=4)
        >>> edge_index.shape, dist.shape
        (torch.Size([2, 400]), torch.Size([400]))
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"'k' ({k}) must be an integer >= 1")
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"'block_size' ({block_size}) must be an integer "
                         ">= 1")
    z = metric_vectors(x.detach(), metric)
    num_nodes = z.size(0)
    if batch is None:
        batch = torch.zeros(num_nodes, dtype=torch.long, device=z.device)
    elif batch.dim() != 1 or batch.numel() != num_nodes:
        raise ValueError(f"'batch' has shape {tuple(batch.shape)} but 'x' has "
                         f"{num_nodes} nodes; pass one graph index per node")
    # work in graph order, so each graph's nodes are one contiguous range
    perm = torch.argsort(batch, stable=True)
    z, batch = z[perm], batch[perm]
    counts = torch.bincount(batch) if num_nodes else batch.new_zeros(1)
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    start, end = ptr[batch], ptr[batch + 1]  # [N] each node's graph range
    sq = (z * z).sum(-1)  # [N]

    nbr = torch.full((num_nodes, k), -1, dtype=torch.long, device=z.device)
    dist = z.new_full((num_nodes, k), float('inf'))
    for q0 in range(0, num_nodes, block_size):
        q1 = min(q0 + block_size, num_nodes)
        rows = torch.arange(q0, q1, device=z.device)
        best_d = z.new_full((q1 - q0, k), float('inf'))
        best_i = rows.new_full((q1 - q0, k), -1)
        for c0 in range(int(start[q0]), int(end[q1 - 1]), block_size):
            c1 = min(c0 + block_size, int(end[q1 - 1]))
            cols = torch.arange(c0, c1, device=z.device)
            if metric == 'cosine':
                d = 1 - z[q0:q1] @ z[c0:c1].t()  # [B, C]
            else:
                d = sq[q0:q1, None] + sq[None, c0:c1] - \
                    2 * z[q0:q1] @ z[c0:c1].t()  # [B, C]
            other = batch[q0:q1, None] != batch[None, c0:c1]  # [B, C]
            if not loop:
                other |= rows[:, None] == cols[None, :]
            d = d.masked_fill(other, float('inf'))
            cand_d = torch.cat([best_d, d], dim=1)  # [B, k + C]
            cand_i = torch.cat([best_i, cols.expand(q1 - q0, -1)], dim=1)
            best_d, pos = cand_d.topk(k, dim=1, largest=False)  # [B, k]
            best_i = cand_i.gather(1, pos)
        # re-measure the chosen directly and re-sort; unfilled slots stay inf
        filled = torch.isfinite(best_d)
        exact = _distance(z[q0:q1, None], z[best_i.clamp(min=0)], metric)
        exact = exact.masked_fill(~filled, float('inf'))  # [B, k]
        exact, order = exact.sort(dim=1, stable=True)
        nbr[q0:q1], dist[q0:q1] = best_i.gather(1, order), exact

    # back to the caller's node order
    valid = torch.arange(k, device=z.device) < \
        (end - start - (0 if loop else 1)).clamp(max=k)[:, None]  # [N, k]
    nbr_out = torch.full_like(nbr, -1)
    nbr_out[perm] = torch.where(valid, perm[nbr.clamp(min=0)], -1)
    dist_out = torch.empty_like(dist)
    dist_out[perm] = dist
    keep = (nbr_out >= 0).view(-1)
    target = torch.arange(num_nodes, device=z.device).repeat_interleave(k)
    edge_index = torch.stack([nbr_out.view(-1)[keep], target[keep]])
    if x.requires_grad and torch.is_grad_enabled():
        return edge_index, edge_distance(x, edge_index, metric)
    return edge_index, dist_out.view(-1)[keep]
