import warnings
from typing import List, Sequence

import torch
import torch_geometric
from torch import Tensor
from torch_geometric.sampler import NeighborSampler, SamplerOutput
from torch_geometric.sampler.base import DataType, SubgraphType


class TorchNeighborSampler(NeighborSampler):
    r"""PyG's :class:`~torch_geometric.sampler.NeighborSampler` with a
    pure-torch fallback, for installations without ``pyg-lib`` and
    ``torch-sparse`` (PyPI ships only their sources; without them PyG's
    sampler raises :class:`ImportError` at the first batch).  With either of
    them installed, PyG's own routine runs and every option works.

    The fallback covers homogeneous graphs, directional sampling without
    replacement, uniform over the in-edges (:func:`sample_neighbors`): for
    each hop, every node first reached in the previous hop keeps a uniformly
    random subset of :obj:`min(k, in-degree)` of its in-edges (all of them
    for :obj:`k = -1`), and sources not seen before become the next hop's
    nodes, in order of first appearance.  The output has PyG's layout: seed
    nodes first, nodes and edges grouped by hop, edge ids into the graph's
    :obj:`edge_index`, so :class:`~torch_geometric.loader.NeighborLoader`
    and its :obj:`num_sampled_nodes` / :obj:`num_sampled_edges` work
    unchanged.  Seed nodes must be distinct (as a loader's batches are).
    Time and memory per hop are linear in the summed in-degree of that hop's
    nodes, plus one :obj:`[num_nodes]` index per batch.

    Takes :class:`~torch_geometric.sampler.NeighborSampler`'s arguments;
    :class:`pyg_attn.loader.NeighborLoader` builds one for you.

    Raises:
        ValueError: without ``pyg-lib`` or ``torch-sparse``, when an option
            the fallback does not cover is set (:obj:`replace`,
            :obj:`disjoint`, a :obj:`subgraph_type` other than
            :obj:`'directional'`, :obj:`time_attr`, heterogeneous or remote
            data), naming it and the package that provides it.  (PyG raises
            :class:`ImportError` for :obj:`weight_attr` itself.)

    Example:
        >>> from torch_geometric.loader import NeighborLoader
        >>> sampler = TorchNeighborSampler(data, [10, 10])
        >>> loader = NeighborLoader(data, [10, 10], batch_size=128,
        ...                         neighbor_sampler=sampler)
    """
    def __init__(self, data, num_neighbors, **kwargs):
        with warnings.catch_warnings():
            if not self.has_backend():
                # The fallback below is the point; PyG's nudge is noise here.
                warnings.filterwarnings('ignore', message='.*pyg-lib.*')
            super().__init__(data, num_neighbors, **kwargs)
        if not self.has_backend():
            unsupported = self.unsupported_options()
            if unsupported:
                raise ValueError(
                    f"sampling with {', '.join(unsupported)} needs pyg-lib "
                    f"or torch-sparse, and neither is installed; the "
                    f"pure-torch fallback samples homogeneous graphs "
                    f"uniformly without replacement.  Install pyg-lib "
                    f"(https://data.pyg.org/whl) or drop the option")

    @staticmethod
    def has_backend() -> bool:
        r"""Whether ``pyg-lib`` or ``torch-sparse`` is installed, so that
        PyG samples."""
        return (torch_geometric.typing.WITH_PYG_LIB
                or torch_geometric.typing.WITH_TORCH_SPARSE)

    def unsupported_options(self) -> List[str]:
        r"""The options set on this sampler that the fallback does not
        cover, as :obj:`name=value` strings (empty if it covers them all)."""
        options = []
        if self.data_type != DataType.homogeneous:
            options.append(f'{self.data_type.value} data')
        for name in ('replace', 'disjoint'):
            if getattr(self, name):
                options.append(f'{name}=True')
        if self.subgraph_type != SubgraphType.directional:
            options.append(f"subgraph_type='{self.subgraph_type.value}'")
        if (getattr(self, 'node_time', None) is not None
                or getattr(self, 'edge_time', None) is not None):
            options.append('time_attr')
        if getattr(self, 'edge_weight', None) is not None:
            options.append('weight_attr')
        if self.sample_direction != 'forward':
            options.append(f"sample_direction='{self.sample_direction}'")
        return options

    def _sample(self, seed, seed_time=None, **kwargs) -> SamplerOutput:
        # Without a backend, __init__ refused heterogeneous and temporal
        # sampling, so here the seeds are one node tensor without times.
        if self.has_backend():
            return super()._sample(seed, seed_time, **kwargs)
        return sample_neighbors(self.colptr, self.row, seed,
                                self.num_neighbors.get_mapped_values())


def sample_neighbors(colptr: Tensor, row: Tensor, seed: Tensor,
                     num_neighbors: Sequence[int]) -> SamplerOutput:
    r"""Samples a multi-hop neighbourhood of :obj:`seed` from a graph in CSC
    form (the in-edges of node :obj:`v` are
    :obj:`row[colptr[v]:colptr[v + 1]]`), keeping :obj:`min(k, in-degree)`
    in-edges of each node per hop, uniformly without replacement (all for
    :obj:`k = -1`).

    Returns local :obj:`row` (source) and :obj:`col` (destination) indices
    into the returned :obj:`node`, the sampled CSC positions as :obj:`edge`,
    and the node and edge counts of each hop.
    """
    num_nodes = colptr.numel() - 1
    seed = seed.to(torch.long)
    local = torch.full((num_nodes, ), -1, dtype=torch.long)
    local[seed] = torch.arange(seed.numel())
    nodes, rows, cols, edges = [seed], [], [], []
    num_sampled_nodes, num_sampled_edges = [seed.numel()], []
    frontier, offset = seed, 0
    count = seed.numel()
    for k in num_neighbors:
        start = colptr[frontier]
        deg = colptr[frontier + 1] - start  # [F]
        dst = torch.arange(offset, offset + frontier.numel())
        seg = torch.repeat_interleave(torch.arange(frontier.numel()), deg)
        rank = torch.arange(seg.numel()) - torch.repeat_interleave(
            deg.cumsum(0) - deg, deg)  # position within its node's edges
        pos = start[seg] + rank  # [sum deg] CSC positions
        if k >= 0:
            # A random order within each node's edges: sort by node, then by
            # a uniform key; the first k of each node are its sample.
            order = torch.argsort(seg + torch.rand(seg.numel(),
                                                   dtype=torch.float64))
            keep = order[rank < k]
            pos, seg = pos[keep], seg[keep]
        src = row[pos]

        fresh = src[local[src] < 0]
        uniq, inverse = torch.unique(fresh, return_inverse=True)
        first = torch.full((uniq.numel(), ), fresh.numel(), dtype=torch.long)
        first.scatter_reduce_(0, inverse, torch.arange(fresh.numel()), 'amin')
        new = uniq[first.argsort()]  # in order of first appearance
        local[new] = torch.arange(count, count + new.numel())

        rows.append(local[src])
        cols.append(dst[seg])
        edges.append(pos)
        nodes.append(new)
        num_sampled_nodes.append(new.numel())
        num_sampled_edges.append(pos.numel())
        offset, count, frontier = count, count + new.numel(), new

    def cat(tensors: List[Tensor]) -> Tensor:  # no hops: no edges
        return torch.cat(tensors) if tensors else seed.new_empty(0)

    return SamplerOutput(node=torch.cat(nodes), row=cat(rows), col=cat(cols),
                         edge=cat(edges), batch=None,
                         num_sampled_nodes=num_sampled_nodes,
                         num_sampled_edges=num_sampled_edges)
