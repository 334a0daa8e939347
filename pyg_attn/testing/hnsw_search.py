r"""HNSW search written over typed edges alone, to test that the edges of
:class:`~pyg_attn.transforms.HNSWGraph` are a navigable HNSW graph.

The search reads nothing from faiss: node :math:`i`'s layer-:math:`l` list is
the sources of the edges into :math:`i` of type :math:`l`.  It is the search
of `Malkov and Yashunin (2018) <https://arxiv.org/abs/1603.09320>`_: from a
node on the top layer, descend the upper layers greedily (move to the closest
neighbour while it is closer), then run a best-first beam search of width
``ef`` on layer 0 and return the ``k`` closest nodes it found.  A slow,
loop-based reference (one query at a time, in numpy).
"""
import heapq
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def _layer_lists(edge_index: np.ndarray, edge_type: np.ndarray,
                 num_nodes: int, layer: int):
    """(ptr [N + 1], sources) of the layer's edges grouped by target."""
    src, dst = edge_index[:, edge_type == layer]
    order = np.argsort(dst, kind='stable')
    ptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(dst, minlength=num_nodes), out=ptr[1:])
    return ptr, src[order]


def hnsw_search(x: Tensor, edge_index: Tensor, edge_type: Tensor,
                node_level: Tensor, queries: Tensor, k: int, ef: int = 64,
                metric: str = 'l2', entry: Optional[int] = None) -> Tensor:
    r"""The ``k`` approximate nearest nodes of each query, found by HNSW's
    search over ``edge_index``/``edge_type`` only, from ``entry`` (a node of
    the top layer; default: the first node of the highest ``node_level``).
    Distances are computed in float32, as faiss does.

    Args:
        x (Tensor): node vectors ``[N, F]``.
        edge_index (LongTensor): ``[2, E]``, edge :math:`j \to i` meaning
            :math:`j` is in :math:`i`'s list.
        edge_type (LongTensor): layer of each edge ``[E]``.
        node_level (LongTensor): top layer of each node ``[N]``.
        queries (Tensor): ``[Q, F]``.
        k (int): results per query.
        ef (int): beam width on layer 0 (at least ``k`` is used).
        metric (str): ``'l2'`` or ``'cosine'``.
        entry (int, optional): the start node, e.g. ``data.entry_index``.

    Returns:
        Node ids ``[Q, k]``, closest first (-1 where fewer were found).
    """
    z, q_all = x.detach().float(), queries.detach().float()
    if metric == 'cosine':
        z, q_all = F.normalize(z, dim=-1), F.normalize(q_all, dim=-1)
    z, q_all = z.numpy(), q_all.numpy()
    num_nodes = z.shape[0]
    ei, et = edge_index.numpy(), edge_type.numpy()
    top = int(node_level.max())
    lists = [_layer_lists(ei, et, num_nodes, layer)
             for layer in range(top + 1)]
    entry = int(torch.argmax(node_level)) if entry is None else int(entry)
    ef = max(ef, k)

    def dist(q: np.ndarray, nodes) -> np.ndarray:
        if metric == 'cosine':
            return -(z[nodes] @ q)
        diff = z[nodes] - q
        return np.einsum('ij,ij->i', diff, diff)

    out: List[List[int]] = []
    for q in q_all:
        cur, d_cur = entry, float(dist(q, [entry])[0])
        for layer in range(top, 0, -1):
            ptr, nbr = lists[layer]
            while True:
                cand = nbr[ptr[cur]:ptr[cur + 1]]
                if cand.size == 0:
                    break
                d = dist(q, cand)
                best = int(np.argmin(d))
                if d[best] >= d_cur:
                    break
                cur, d_cur = int(cand[best]), float(d[best])
        ptr, nbr = lists[0]
        visited = np.zeros(num_nodes, dtype=bool)
        visited[cur] = True
        candidates = [(d_cur, cur)]  # min-heap
        results = [(-d_cur, cur)]  # max-heap of the ef best
        while candidates:
            d_c, c = heapq.heappop(candidates)
            if len(results) >= ef and d_c > -results[0][0]:
                break
            cand = nbr[ptr[c]:ptr[c + 1]]
            cand = cand[~visited[cand]]
            visited[cand] = True
            for d_n, n in zip(dist(q, cand).tolist(), cand.tolist()):
                if len(results) < ef or d_n < -results[0][0]:
                    heapq.heappush(candidates, (d_n, n))
                    heapq.heappush(results, (-d_n, n))
                    if len(results) > ef:
                        heapq.heappop(results)
        best = sorted((-d, n) for d, n in results)[:k]
        out.append([n for _, n in best] + [-1] * (k - len(best)))
    return torch.tensor(out, dtype=torch.long).view(-1, k)
