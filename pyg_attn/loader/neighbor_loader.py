import inspect
from typing import Any, Dict, Tuple

import torch_geometric.loader

from pyg_attn.loader.neighbor_sampler import TorchNeighborSampler

# NeighborSampler's options, as both PyG loaders take and forward them
SAMPLER_OPTIONS = ('replace', 'subgraph_type', 'disjoint', 'temporal_strategy',
                   'time_attr', 'weight_attr', 'is_sorted', 'directed')


def with_torch_sampler(loader: type, args: tuple,
                       kwargs: Dict[str, Any]) -> Tuple[tuple, dict]:
    r"""The arguments of a PyG loader's :obj:`__init__` (:obj:`args` after
    :obj:`self`), with a :class:`TorchNeighborSampler` built as that loader
    builds its own sampler, unless a :obj:`neighbor_sampler` is given."""
    bound = inspect.signature(loader.__init__).bind(None, *args, **kwargs)
    bound.apply_defaults()
    arguments = bound.arguments
    if arguments['neighbor_sampler'] is None:
        extra = arguments['kwargs']  # the DataLoader's own arguments
        arguments['neighbor_sampler'] = TorchNeighborSampler(
            arguments['data'], num_neighbors=arguments['num_neighbors'],
            share_memory=extra.get('num_workers', 0) > 0,
            **{name: arguments[name] for name in SAMPLER_OPTIONS})
    return bound.args[1:], bound.kwargs


class NeighborLoader(torch_geometric.loader.NeighborLoader):
    r"""PyG's :class:`~torch_geometric.loader.NeighborLoader` (GraphSAGE's
    mini-batches: the seed nodes with a sampled multi-hop neighbourhood)
    that also runs where neither ``pyg-lib`` nor ``torch-sparse`` is
    installed, as after a plain ``pip install torch_geometric``.

    It takes PyG's arguments and gives PyG's batches; the only difference is
    its default sampler, a :class:`TorchNeighborSampler`, which defers to
    PyG's routine when either package is there and otherwise samples in
    plain torch (homogeneous graphs, uniformly without replacement; other
    options raise an error that names them).  A :obj:`neighbor_sampler`
    you pass is used as given.

    :class:`~pyg_attn.nn.AttentionNet` runs its layers hop by hop on the
    batches, bipartite (pass it :obj:`num_sampled_nodes` and
    :obj:`num_sampled_edges`).

    Example:
        >>> loader = NeighborLoader(data, num_neighbors=[10, 10],
        ...                         input_nodes=data.train_mask,
        ...                         batch_size=128, shuffle=True)
        >>> batch = next(iter(loader))
        >>> batch.n_id[:batch.batch_size]  # the seed nodes come first
    """
    def __init__(self, *args, **kwargs):
        args, kwargs = with_torch_sampler(
            torch_geometric.loader.NeighborLoader, args, kwargs)
        super().__init__(*args, **kwargs)
