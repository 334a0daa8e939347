r"""The links of an HNSW index over node vectors, as typed, weighted edges."""
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from pyg_attn.functional.knn import check_metric, edge_distance
from pyg_attn.functional.knn import knn as knn_edges
from pyg_attn.functional.knn import metric_vectors

FAISS_MISSING = ("HNSWGraph needs faiss; install it with "
                 "`pip install pyg_attn[hnsw]` (or `pip install faiss-cpu`)")
_BLOCK = 4096  # queries per block of the greedy hub descent


def import_faiss():
    """faiss, or an :class:`ImportError` naming the extra to install."""
    try:
        import faiss
    except ImportError as e:
        raise ImportError(FAISS_MISSING) from e
    return faiss


def build_hnsw_index(z: Tensor, m: int = 16, ef_construction: int = 40,
                     metric: str = 'l2', seed: int = 0):
    r"""A faiss ``IndexHNSWFlat`` over the rows of ``z`` (float32, unit rows
    for ``'cosine'``, which is indexed by inner product), its level
    generator seeded with ``seed``.  Run under one faiss thread, the same
    inputs give the same index."""
    faiss = import_faiss()
    kind = faiss.METRIC_INNER_PRODUCT if metric == 'cosine' else \
        faiss.METRIC_L2
    index = faiss.IndexHNSWFlat(z.size(1), m, kind)
    index.hnsw.efConstruction = ef_construction
    index.hnsw.rng = faiss.RandomGenerator(seed)
    if z.size(0) > 0:
        index.add(np.ascontiguousarray(z.detach().cpu().float().numpy()))
    return index


def _hnsw_arrays(index) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(node_level [N], offsets [N + 1], neighbors [S], cum [L + 1])`` of a
    faiss HNSW graph: node i's layer-l list is ``neighbors[offsets[i] +
    cum[l]:offsets[i] + cum[l + 1]]``, padded with -1."""
    faiss = import_faiss()
    hnsw = index.hnsw
    levels = faiss.vector_to_array(hnsw.levels).astype(np.int64)
    offsets = faiss.vector_to_array(hnsw.offsets).astype(np.int64)
    neighbors = faiss.vector_to_array(hnsw.neighbors).astype(np.int64)
    cum = faiss.vector_to_array(hnsw.cum_nneighbor_per_level).astype(np.int64)
    return (torch.from_numpy(levels) - 1, torch.from_numpy(offsets),
            torch.from_numpy(neighbors), torch.from_numpy(cum))


def hnsw_edges(index) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Every link of a faiss HNSW index as an edge, vectorised over the
    flat neighbour array (no loop over nodes).

    A link from node :math:`i` to :math:`j` in :math:`i`'s layer-:math:`l`
    list becomes the edge :math:`j \to i` (messages flow from the neighbour
    to the node whose list holds it) of type :math:`l`.

    Returns:
        ``(edge_index [2, E], edge_type [E], node_level [N])``, the edges
        grouped by target node, then by layer, in faiss's slot order.
    """
    node_level, offsets, neighbors, cum = _hnsw_arrays(index)
    num_nodes = node_level.numel()
    sizes = offsets[1:] - offsets[:-1]  # [N] slots of each node
    node = torch.repeat_interleave(torch.arange(num_nodes), sizes)  # [S]
    local = torch.arange(neighbors.numel()) - offsets[:-1][node]  # [S]
    layer = torch.searchsorted(cum, local, right=True) - 1  # [S]
    used = neighbors >= 0
    edge_index = torch.stack([neighbors[used], node[used]])
    return edge_index, layer[used], node_level


def _numpy(t: Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.numpy())


def faiss_edge_distance(z: Tensor, edge_index: Tensor,
                        metric: str) -> Tensor:
    r"""The distance of every edge as :func:`~pyg_attn.functional.
    edge_distance` defines it, by faiss's SIMD kernels (tens of times faster
    than torch's gathers on CPU).  ``z``: the indexed vectors ``[N, F]``
    (float32, unit rows for ``'cosine'``); returns float32 ``[E]``."""
    faiss = import_faiss()
    out = np.empty(edge_index.size(1), dtype=np.float32)
    if out.size:
        zn = _numpy(z.float())
        src, dst = _numpy(edge_index[0]), _numpy(edge_index[1])
        kernel = faiss.pairwise_indexed_inner_product if metric == \
            'cosine' else faiss.pairwise_indexed_L2sqr
        kernel(zn.shape[1], out.size, faiss.swig_ptr(zn),
               faiss.swig_ptr(src), faiss.swig_ptr(zn), faiss.swig_ptr(dst),
               faiss.swig_ptr(out))
    out = torch.from_numpy(out)
    return 1 - out if metric == 'cosine' else out.clamp(min=0).sqrt()


def hub_edges(index, z: Tensor, metric: str) -> Tuple[Tensor, Tensor]:
    r"""For every node :math:`v` and every layer :math:`l` above
    :math:`v`'s own top layer, the edge :math:`h_l(v) \to v` of type
    :math:`l`, where :math:`h_l(v)` is the layer-:math:`l` node at which
    HNSW's greedy descent toward :math:`x_v` (from the entry point, moving
    to the closest neighbour while it is closer, layer by layer) stops on
    layer :math:`l`: :math:`v`'s approximate nearest layer-:math:`l` node.

    Vectorised over blocks of queries, distances by faiss's kernels; ``z``
    is the indexed vectors ``[N, F]`` (unit rows for ``'cosine'``).

    Returns:
        ``(edge_index [2, E], edge_type [E])``.
    """
    node_level, offsets, neighbors, cum = _hnsw_arrays(index)
    num_nodes = node_level.numel()
    top = int(node_level.max()) if num_nodes else 0
    if top == 0:
        return torch.empty(2, 0, dtype=torch.long), torch.empty(
            0, dtype=torch.long)
    faiss = import_faiss()
    zn = _numpy(z.float())
    tables = {}  # layer -> [N, width] neighbour table, -1 where none
    for layer in range(1, top + 1):
        width = int(cum[layer + 1] - cum[layer])
        members = (node_level >= layer).nonzero().view(-1)
        slots = offsets[members, None] + cum[layer] + torch.arange(width)
        table = torch.full((num_nodes, width), -1, dtype=torch.long)
        table[members] = neighbors[slots]
        tables[layer] = table

    kernel = faiss.fvec_inner_products_by_idx if metric == 'cosine' else \
        faiss.fvec_L2sqr_by_idx

    def dist(query: Tensor, nodes: Tensor) -> Tensor:
        """[B], [B, W] -> [B, W]: -<q, c> (cosine) or |q - c|^2, the
        ranking faiss uses."""
        out = np.empty(tuple(nodes.shape), dtype=np.float32)
        q, ids = zn[query.numpy()], _numpy(nodes.clamp(min=0))
        kernel(faiss.swig_ptr(out), faiss.swig_ptr(q), faiss.swig_ptr(zn),
               faiss.swig_ptr(ids), zn.shape[1], *out.shape)
        d = torch.from_numpy(out)
        d = -d if metric == 'cosine' else d
        return d.masked_fill(nodes < 0, float('inf'))

    hubs = torch.empty(top, num_nodes, dtype=torch.long)  # [L, N]
    entry = int(index.hnsw.entry_point)
    for q0 in range(0, num_nodes, _BLOCK):
        query = torch.arange(q0, min(q0 + _BLOCK, num_nodes))  # [B]
        cur = torch.full_like(query, entry)
        d_cur = dist(query, cur[:, None])[:, 0]
        for layer in range(top, 0, -1):
            active = torch.arange(query.numel())
            while active.numel():
                nbr = tables[layer][cur[active]]  # [A, W]
                d = dist(query[active], nbr)
                d_min, arg = d.min(dim=1)  # [A]
                better = d_min < d_cur[active]
                active = active[better]
                cur[active] = nbr[better].gather(1, arg[better, None])[:, 0]
                d_cur[active] = d_min[better]
            hubs[layer - 1, q0:q0 + _BLOCK] = cur
    layers = torch.arange(1, top + 1)
    below = node_level[None, :] < layers[:, None]  # [L, N]
    target = torch.arange(num_nodes).expand(top, -1)
    edge_index = torch.stack([hubs[below], target[below]])
    return edge_index, layers[:, None].expand(-1, num_nodes)[below]


def to_undirected_typed(edge_index: Tensor, edge_type: Tensor,
                        num_nodes: int) -> Tuple[Tensor, Tensor]:
    """Adds the reverse of every edge with the same type and drops repeats
    of (type, source, target); sorted by type, target, source."""
    edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    edge_type = torch.cat([edge_type, edge_type])
    key = (edge_type * num_nodes + edge_index[1]) * num_nodes + edge_index[0]
    key = torch.unique(key)
    src = key % num_nodes
    dst = (key // num_nodes) % num_nodes
    return torch.stack([src, dst]), key // (num_nodes * num_nodes)


class HNSWGraph(BaseTransform):
    r"""Builds an HNSW index (`Malkov and Yashunin, 2018
    <https://arxiv.org/abs/1603.09320>`_) over node vectors with faiss's
    ``IndexHNSWFlat`` and returns its links as edges, so that local
    (layer 0) and global (upper layers) attention is a partition of the
    edges by type.

    HNSW gives node :math:`i` a top layer :math:`\ell_i` with
    :math:`P(\ell_i \ge l) = m^{-l}`, and on each layer
    :math:`l \le \ell_i` a pruned list of near neighbours (:math:`2m` on
    layer 0, :math:`m` above).  Each link of :math:`i`'s layer-:math:`l` list
    to :math:`j` becomes the edge :math:`j \to i` with

    .. math::
        \mathrm{edge\_type} = l, \qquad
        \mathrm{edge\_attr} = d(x_i, x_j) =
        \begin{cases} \lVert x_i - x_j \rVert_2 & \text{'l2' (not squared)}
        \\ 1 - \cos(x_i, x_j) & \text{'cosine'} \end{cases}

    Sets ``edge_index`` ``[2, E]``, ``edge_attr`` ``[E, 1]`` (the distance,
    float32; float64 for float64 vectors), ``edge_type`` ``[E]`` (long),
    ``node_level`` ``[N]`` (long, :math:`\ell_i`) and ``entry_index``
    ``[num_graphs]`` (long, each graph's HNSW entry point: a node of its top
    layer, where searches start; batching increments it).  The input's
    ``edge_attr`` is replaced and its ``edge_weight`` dropped.  Edges are
    ordered: the exact layer 0 if ``knn``; then per graph, the HNSW links
    by target node, layer and faiss's slot order, and its hub edges; then
    the kept edges.  ``to_undirected`` sorts them by type, target and
    source instead.

    With ``data.batch``, every graph gets its own index (same ``seed``, so a
    graph's edges do not depend on the batch it is in) and no edge joins
    two graphs.  With one thread (``num_threads=1``) the same input and
    ``seed`` give the same graph; faiss's multi-threaded build does not.

    Args:
        m (int): links per node and layer (faiss's ``M``; :math:`2m` on
            layer 0). (default: ``16``)
        ef_construction (int): candidate list size while building.
            (default: ``40``, faiss's default)
        metric (str): ``'l2'`` or ``'cosine'`` (cosine indexes unit vectors
            by inner product).  On sparse bag-of-words features prefer
            ``'cosine'``: on Cora's, HNSW's pruning leaves ``'l2'`` about 2
            layer-0 links per node (toward the shortest documents) and
            ``'cosine'`` about 19. (default: ``'l2'``)
        key (str): the node tensor to index, e.g. ``'x'`` or ``'pos'``.
            (default: ``'x'``)
        keep_edges (bool): keep the input's own edges beside the HNSW links,
            with type ``kept_edge_type`` and their distance as
            ``edge_attr``. (default: :obj:`False`)
        kept_edge_type (int, optional): type of the kept edges; it must
            exceed every HNSW layer.  :obj:`None` uses one above the top
            layer of this input (``node_level.max() + 1``), which varies
            between inputs; pass a constant (e.g. ``8``) when the graphs of
            a dataset must agree. (default: :obj:`None`)
        hub_edges (bool): HNSW gives upper-layer links only to the
            :math:`\approx 1/m` of nodes that live there.  With this option,
            every node :math:`v` also gets, for every layer :math:`l` above
            its own top layer, the edge :math:`h \to v` of type :math:`l`
            from the node :math:`h` where HNSW's greedy descent toward
            :math:`x_v` stops on layer :math:`l` (its approximate nearest
            layer-:math:`l` node).  Then every node has global context.  A
            node alone on a layer (usually the entry point on the top layer)
            has no edge of that type. (default: :obj:`False`)
        knn (int, optional): replace the layer-0 links by the exact ``knn``
            nearest neighbours of each node (:func:`pyg_attn.functional.knn`;
            type 0), keeping the upper layers as the global part.
            (default: :obj:`None`)
        to_undirected (bool): add the reverse of every edge (same type and
            distance) and drop repeated (type, source, target) triples.
            (default: :obj:`False`)
        num_threads (int): faiss's OpenMP threads while building; restored
            afterwards. (default: ``1``, for reproducible graphs)
        seed (int): seed of faiss's level generator. (default: ``0``)

    Raises:
        ImportError: if faiss is not installed (``pip install
            pyg_attn[hnsw]``).
        ValueError: for an invalid argument, a missing or non-2-D
            floating-point node tensor, or a ``kept_edge_type`` that does
            not exceed every HNSW layer.

    Example:
        >>> transform = HNSWGraph(m=8, hub_edges=True)
        >>> data = transform(Data(x=torch.randn(1000, 16)))
        >>> data.edge_attr.shape == (data.edge_index.size(1), 1)
        True
        >>> edges_per_layer = torch.bincount(data.edge_type)
        >>> local, global_ = data.edge_type == 0, data.edge_type > 0
    """
    def __init__(self, m: int = 16, ef_construction: int = 40,
                 metric: str = 'l2', key: str = 'x', keep_edges: bool = False,
                 kept_edge_type: Optional[int] = None,
                 hub_edges: bool = False, knn: Optional[int] = None,
                 to_undirected: bool = False, num_threads: int = 1,
                 seed: int = 0):
        import_faiss()
        if not isinstance(m, int) or m < 2:
            raise ValueError(f"'m' ({m}) must be an integer >= 2")
        if not isinstance(ef_construction, int) or ef_construction < 1:
            raise ValueError(f"'ef_construction' ({ef_construction}) must be "
                             "an integer >= 1")
        check_metric(metric)
        if kept_edge_type is not None and (not isinstance(
                kept_edge_type, int) or kept_edge_type < 0):
            raise ValueError(f"'kept_edge_type' ({kept_edge_type}) must be "
                             "None or an integer >= 0")
        if knn is not None and (not isinstance(knn, int) or knn < 1):
            raise ValueError(f"'knn' ({knn}) must be None or an integer >= 1")
        if not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"'num_threads' ({num_threads}) must be an "
                             "integer >= 1")
        self.m = m
        self.ef_construction = ef_construction
        self.metric = metric
        self.key = key
        self.keep_edges = keep_edges
        self.kept_edge_type = kept_edge_type
        self.hub_edges = hub_edges
        self.knn = knn
        self.to_undirected = to_undirected
        self.num_threads = num_threads
        self.seed = seed

    def forward(self, data: Data) -> Data:
        x = getattr(data, self.key, None)
        if not isinstance(x, Tensor):
            raise ValueError(f"the data has no node tensor '{self.key}' to "
                             "index; set 'key' to one it has (e.g. 'x' or "
                             "'pos')")
        z = metric_vectors(x.detach().cpu(), self.metric)
        num_nodes = z.size(0)
        batch = getattr(data, 'batch', None)
        batch = None if batch is None else batch.cpu()
        if batch is None:
            graphs = [torch.arange(num_nodes)]
        else:  # each graph's nodes, in node order
            graphs = [nodes for nodes in torch.argsort(batch, stable=True)
                      .split(torch.bincount(batch).tolist()) if nodes.numel()]
        faiss = import_faiss()
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self.num_threads)
        try:
            parts = [self._graph_edges(z[nodes], nodes) for nodes in graphs]
        finally:
            faiss.omp_set_num_threads(threads)
        edge_index = torch.cat([p[0] for p in parts], dim=1)
        edge_type = torch.cat([p[1] for p in parts])
        node_level = torch.zeros(num_nodes, dtype=torch.long)
        for nodes, part in zip(graphs, parts):
            node_level[nodes] = part[2]
        entry = torch.tensor([int(nodes[p[3]]) for nodes, p in
                              zip(graphs, parts) if nodes.numel()],
                             dtype=torch.long)
        if self.knn is not None:  # the exact layer 0, before the rest
            local, _ = knn_edges(z, self.knn, batch, metric=self.metric)
            edge_index = torch.cat([local, edge_index], dim=1)
            edge_type = torch.cat([local.new_zeros(local.size(1)), edge_type])
        if self.keep_edges and data.edge_index is not None:
            kept = data.edge_index.cpu()
            edge_index = torch.cat([edge_index, kept], dim=1)
            edge_type = torch.cat([
                edge_type,
                kept.new_full((kept.size(1), ), self._kept_type(node_level))
            ])
        if self.to_undirected:
            edge_index, edge_type = to_undirected_typed(
                edge_index, edge_type, max(num_nodes, 1))
        data.edge_index = edge_index.to(x.device)
        data.edge_type = edge_type.to(x.device)
        if x.dtype == torch.float64:
            dist = edge_distance(x.detach(), edge_index, self.metric)
        else:
            dist = faiss_edge_distance(z, edge_index, self.metric)
        data.edge_attr = dist.view(-1, 1).to(x.device)
        data.node_level = node_level.to(x.device)
        data.entry_index = entry.to(x.device)
        if 'edge_weight' in data:
            del data.edge_weight
        return data

    def _graph_edges(self, z: Tensor,
                     nodes: Tensor) -> Tuple[Tensor, Tensor, Tensor, int]:
        """One graph's links (and hub edges) in global node ids, their
        types, the graph's node levels and its entry point (a local id)."""
        index = build_hnsw_index(z, self.m, self.ef_construction, self.metric,
                                 self.seed)
        edge_index, edge_type, node_level = hnsw_edges(index)
        if self.knn is not None:  # layer 0 is replaced later
            keep = edge_type > 0
            edge_index, edge_type = edge_index[:, keep], edge_type[keep]
        if self.hub_edges:
            hub_index, hub_type = hub_edges(index, z, self.metric)
            edge_index = torch.cat([edge_index, hub_index], dim=1)
            edge_type = torch.cat([edge_type, hub_type])
        return (nodes[edge_index], edge_type, node_level,
                int(index.hnsw.entry_point))

    def _kept_type(self, node_level: Tensor) -> int:
        top = int(node_level.max()) if node_level.numel() else 0
        if self.kept_edge_type is None:
            return top + 1
        if self.kept_edge_type <= top:
            raise ValueError(
                f"'kept_edge_type' ({self.kept_edge_type}) must exceed every "
                f"HNSW layer, but this graph has layers up to {top}; pass "
                f"kept_edge_type={top + 1} or more (or None)")
        return self.kept_edge_type

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(m={self.m}, '
                f'ef_construction={self.ef_construction}, '
                f'metric={self.metric!r}, key={self.key!r}, '
                f'hub_edges={self.hub_edges}, knn={self.knn}, '
                f'keep_edges={self.keep_edges})')
