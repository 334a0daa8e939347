r"""Latent neighbours: each node's :math:`k` most cosine-similar nodes of its
own graph.

.. math::
    \mathcal{L}(i) = \operatorname*{top-k}_{j \in \mathcal{V}_{g(i)}
    \setminus \{i\}} \frac{\mathbf{x}_i^\top \mathbf{x}_j}
    {\lVert\mathbf{x}_i\rVert \, \lVert\mathbf{x}_j\rVert}

The search is exact, in one of two ways per graph of the batch:

* up to ``threshold`` nodes, blockwise in torch: the similarities of a block
  of rows against the columns of their graphs, at most ``block_size`` values at
  a time (never an :math:`N \times N` matrix), then ``topk`` per row;
* above it, faiss' ``IndexFlatIP`` (exact inner product) on L2-normalised
  float32 vectors, the ``hnsw`` extra (``pip install pyg_attn[hnsw]``),
  imported only when a graph is that large.

Letter legend: N nodes, F features, k neighbours, B graphs.
"""
import math
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_THRESHOLD = 50_000
DEFAULT_BLOCK_SIZE = 1 << 22  # similarity values per block (16 MiB float32)
BACKENDS = ('auto', 'torch', 'faiss')


def _import_faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError(
            "latent_knn needs faiss for graphs above 'threshold' nodes (or "
            "backend='faiss'): install it with `pip install pyg_attn[hnsw]` "
            "(faiss-cpu), or raise 'threshold' to search them blockwise in "
            "torch") from error
    return faiss


def check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"'k' ({k}) must be an integer >= 1 (the number of "
                         "latent neighbours per node)")


def check_batch(batch: Optional[Tensor], num_nodes: int) -> None:
    if batch is None:
        return
    if batch.dim() != 1 or batch.numel() != num_nodes:
        raise ValueError(f"'batch' has shape {tuple(batch.shape)} but there "
                         f"are {num_nodes} nodes; pass one graph id per node")
    if batch.dtype not in (torch.long, torch.int):
        raise ValueError(f"'batch' must be an integer tensor, got "
                         f"{batch.dtype}; use batch.long()")


def row_blocks(ptr: List[int], threshold: int,
               block_size: int) -> Iterator[Tuple[int, int, int, int]]:
    r"""The blocks ``(row_start, row_end, col_start, col_end)`` of the
    blockwise search over graphs laid out contiguously at ``ptr`` (graph
    :math:`g` holds rows ``ptr[g]:ptr[g+1]``), skipping graphs of more than
    ``threshold`` nodes.

    Whole graphs small enough are packed together (a square block of at most
    ``block_size`` values, cross-graph pairs masked later); a graph of
    :math:`n` nodes with :math:`n^2 >` ``block_size`` is cut into blocks of
    :math:`\max(1, \lfloor \text{block\_size} / n \rfloor)` rows against its
    :math:`n` columns.  A block holds at most ``max(block_size, n)`` values.
    """
    width = max(1, math.isqrt(block_size))
    start = None  # first row of the pack being built
    for lo, hi in zip(ptr[:-1], ptr[1:]):
        n = hi - lo
        if n > width or n > threshold:
            if start is not None:
                yield start, lo, start, lo
                start = None
            if n > threshold:
                continue
            step = max(1, block_size // n)
            for r in range(lo, hi, step):
                yield r, min(r + step, hi), lo, hi
            continue
        if start is not None and hi - start > width:
            yield start, lo, start, lo
            start = None
        if start is None:
            start = lo
    if start is not None and ptr[-1] > start:
        yield start, ptr[-1], start, ptr[-1]


def _torch_blocks(xn: Tensor, batch: Tensor, ptr: List[int], k: int,
                  threshold: int, block_size: int, table: Tensor) -> None:
    """Fills ``table`` [N, k'] (sorted order) for graphs up to ``threshold``
    nodes."""
    width = table.size(1)
    for r0, r1, c0, c1 in row_blocks(ptr, threshold, block_size):
        sim = xn[r0:r1] @ xn[c0:c1].t()  # [b, c]
        if (r0, r1) == (c0, c1):  # a pack of whole graphs: mask across them
            sim.masked_fill_(batch[r0:r1, None] != batch[None, c0:c1],
                             float('-inf'))
        rows = torch.arange(r1 - r0, device=xn.device)
        sim[rows, rows + (r0 - c0)] = float('-inf')  # the node itself
        vals, idx = sim.topk(min(k, c1 - c0), dim=1)  # [b, k'']
        # -inf (other graph or self) sorts last; a row has <= k' valid values
        idx = torch.where(torch.isfinite(vals), idx + c0, -1)[:, :width]
        table[r0:r1, :idx.size(1)] = idx


def _faiss_graphs(xn: Tensor, ptr: List[int], k: int, threshold: int,
                  table: Tensor, everything: bool) -> None:
    """Fills ``table`` for graphs above ``threshold`` nodes (all graphs with
    ``everything``) with faiss' exact inner-product search."""
    faiss = None
    width = table.size(1)
    for lo, hi in zip(ptr[:-1], ptr[1:]):
        n = hi - lo
        if n < 2 or not (everything or n > threshold):
            continue
        faiss = faiss or _import_faiss()
        xg = xn[lo:hi].detach().to('cpu', torch.float32).contiguous().numpy()
        index = faiss.IndexFlatIP(xg.shape[1])
        index.add(xg)
        # one more than k, for the node itself (or, among exact duplicates,
        # a copy of it ranked above it: then the last one is dropped)
        _, found = index.search(xg, min(k + 1, n))
        found = torch.from_numpy(found).to(table.device)  # [n, k+1]
        own = torch.arange(n, device=table.device)[:, None]
        invalid = (found == own) | (found < 0)
        order = invalid.to(torch.int8).argsort(dim=1, stable=True)
        kept = found.gather(1, order)[:, :min(k, n - 1, width)]
        table[lo:hi, :kept.size(1)] = kept + lo


@torch.no_grad()
def latent_knn(
    x: Tensor,
    k: int,
    batch: Optional[Tensor] = None,
    threshold: int = DEFAULT_THRESHOLD,
    block_size: int = DEFAULT_BLOCK_SIZE,
    backend: str = 'auto',
) -> Tuple[Tensor, Tensor]:
    r"""The :math:`k` nearest neighbours of every node by cosine similarity,
    within its own graph of the batch, excluding the node itself.

    .. math::
        \mathcal{L}(i) = \operatorname*{top-k}_{j \in \mathcal{V}_{g(i)}
        \setminus \{i\}} \cos(\mathbf{x}_i, \mathbf{x}_j)

    Exact for every graph: blockwise matrix products and ``topk`` in torch
    for graphs of up to ``threshold`` nodes (a block holds at most
    ``block_size`` similarities, or one row of a larger graph), faiss'
    ``IndexFlatIP`` on L2-normalised float32 vectors above it.  Memory is
    :math:`O(\text{block\_size} + N (k + F))`; time
    :math:`O(\sum_g N_g^2 F)`.

    A node of a graph with :math:`n_g \le k` nodes gets all the other
    :math:`n_g - 1` nodes of its graph (a single-node graph: none), so the
    result has :math:`\sum_i \min(k, n_{g(i)} - 1)` edges.  Copies of a node
    (similarity 1) are neighbours like any other node; a zero vector has
    similarity 0 with everything.  Ties are broken arbitrarily.

    The selection is not differentiable (it runs under ``no_grad``) and reads
    the data (``tolist``, ``topk``), so under ``torch.compile`` it is a graph
    break.

    Args:
        x (Tensor): node features ``[N, F]``.
        k (int): neighbours per node, at least 1.
        batch (LongTensor, optional): graph of each node ``[N]``, in any
            order. (default: :obj:`None`, one graph)
        threshold (int, optional): graphs of more nodes are searched with
            faiss. (default: :obj:`50_000`)
        block_size (int, optional): similarity values computed at once by
            the torch search. (default: :obj:`2**22`, 16 MiB in float32)
        backend (str, optional): ``'auto'`` (by ``threshold``), ``'torch'``
            or ``'faiss'`` for every graph. (default: :obj:`'auto'`)

    Returns:
        ``(edge_index, similarity)``: ``edge_index`` ``[2, M]`` with row 0 the
        neighbour (source) and row 1 the node (target), grouped by target in
        node order and by decreasing similarity within a target; and the
        cosine similarity of each pair ``[M]`` (float32 for float16/bfloat16
        ``x``).

    Raises:
        ValueError: ``k < 1``; ``x`` not 2-D; ``batch`` of the wrong length
            or dtype; unknown ``backend``; ``threshold`` or ``block_size``
            below 1.
        ImportError: faiss is needed (a graph above ``threshold``, or
            ``backend='faiss'``) and not installed.

    Example::

        >>> x, batch = torch.randn(6, 4), torch.tensor([0, 0, 0, 1, 1, 1])
        >>> edge_index, sim = latent_knn(x, k=2, batch=batch)
        >>> edge_index.shape
        torch.Size([2, 12])
    """
    check_k(k)
    if x.dim() != 2:
        raise ValueError(f"'x' must be 2-D [num_nodes, channels], got shape "
                         f"{tuple(x.shape)}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown 'backend' ({backend!r}); use one of "
                         f"{', '.join(map(repr, BACKENDS))}")
    for name, value in (('threshold', threshold), ('block_size', block_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"'{name}' ({value}) must be an integer >= 1")
    num_nodes = x.size(0)
    check_batch(batch, num_nodes)
    device = x.device

    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    xn = F.normalize(x.detach().to(dtype), dim=-1)  # [N, F]
    if batch is None:
        perm = None
        sorted_batch = torch.zeros(num_nodes, dtype=torch.long, device=device)
    else:
        perm = torch.argsort(batch, stable=True)
        sorted_batch = batch[perm].long()
        xn = xn[perm]
    counts = torch.bincount(sorted_batch) if num_nodes else sorted_batch
    ptr = [0] + torch.cumsum(counts, 0).tolist()
    ptr = [p for i, p in enumerate(ptr) if i == 0 or p != ptr[i - 1]]

    width = min(k, max(num_nodes - 1, 0))
    table = torch.full((num_nodes, width), -1, dtype=torch.long,
                       device=device)  # [N, k'] in sorted order
    if backend != 'faiss':
        limit = num_nodes if backend == 'torch' else threshold
        _torch_blocks(xn, sorted_batch, ptr, k, limit, block_size, table)
    if backend != 'torch':
        _faiss_graphs(xn, ptr, k, threshold, table, backend == 'faiss')

    if perm is not None:  # back to the caller's node ids and order
        table = torch.where(table >= 0, perm[table.clamp(min=0)], -1)
        table = torch.empty_like(table).index_copy_(0, perm, table)
        xn = torch.empty_like(xn).index_copy_(0, perm, xn)
    valid = table >= 0  # [N, k']
    dst = torch.arange(num_nodes, device=device)[:, None].expand_as(table)
    edge_index = torch.stack([table[valid], dst[valid]])  # [2, M]
    # cosine of each pair, recomputed (so both searches give the same
    # values) in chunks of at most block_size gathered values
    similarity = xn.new_empty(edge_index.size(1))  # [M]
    step = max(1, block_size // max(xn.size(1), 1))
    for start in range(0, edge_index.size(1), step):
        src, dst = edge_index[:, start:start + step]
        similarity[start:start + step] = torch.linalg.vecdot(xn[src],
                                                             xn[dst])
    return edge_index, similarity
