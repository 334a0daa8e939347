from typing import List, Optional, Union

import torch_geometric.loader
from torch_geometric.sampler import NeighborSampler
from torch_geometric.sampler.base import SubgraphType

from pyg_attn.loader.neighbor_sampler import TorchNeighborSampler


class NeighborLoader(torch_geometric.loader.NeighborLoader):
    r"""PyG's :class:`~torch_geometric.loader.NeighborLoader` (GraphSAGE's
    mini-batches: the seed nodes with a sampled multi-hop neighbourhood)
    that also runs where neither ``pyg-lib`` nor ``torch-sparse`` is
    installed, as after a plain ``pip install torch_geometric``.

    It takes PyG's arguments and gives PyG's batches; the only difference is
    its default sampler, a :class:`TorchNeighborSampler`, which defers to
    PyG's routine when either package is there and otherwise samples in
    plain torch (homogeneous graphs, uniformly without replacement; other
    options raise an error that names them).  A
    :obj:`neighbor_sampler` you pass is used as given.

    The layers of :mod:`pyg_attn.nn` take the bipartite :obj:`(x_src,
    x_dst)` pairs the batches' hops give (see
    :obj:`num_sampled_nodes` and :obj:`num_sampled_edges`, and
    ``examples/distributed.py``).

    Example:
        >>> loader = NeighborLoader(data, num_neighbors=[10, 10],
        ...                         input_nodes=data.train_mask,
        ...                         batch_size=128, shuffle=True)
        >>> batch = next(iter(loader))
        >>> batch.n_id[:batch.batch_size]  # the seed nodes come first
    """
    def __init__(
        self,
        data,
        num_neighbors: List[int],
        replace: bool = False,
        subgraph_type: Union[SubgraphType, str] = 'directional',
        disjoint: bool = False,
        temporal_strategy: str = 'uniform',
        time_attr: Optional[str] = None,
        weight_attr: Optional[str] = None,
        is_sorted: bool = False,
        neighbor_sampler: Optional[NeighborSampler] = None,
        directed: bool = True,
        **kwargs,
    ):
        if neighbor_sampler is None:  # PyG's own construction, our class
            neighbor_sampler = TorchNeighborSampler(
                data, num_neighbors=num_neighbors, replace=replace,
                subgraph_type=subgraph_type, disjoint=disjoint,
                temporal_strategy=temporal_strategy, time_attr=time_attr,
                weight_attr=weight_attr, is_sorted=is_sorted,
                share_memory=kwargs.get('num_workers', 0) > 0,
                directed=directed)
        super().__init__(
            data, num_neighbors, replace=replace, subgraph_type=subgraph_type,
            disjoint=disjoint, temporal_strategy=temporal_strategy,
            time_attr=time_attr, weight_attr=weight_attr,
            is_sorted=is_sorted, neighbor_sampler=neighbor_sampler,
            directed=directed, **kwargs)
