import torch_geometric.loader

from pyg_attn.loader.neighbor_loader import with_torch_sampler


class LinkNeighborLoader(torch_geometric.loader.LinkNeighborLoader):
    r"""PyG's :class:`~torch_geometric.loader.LinkNeighborLoader` (mini-batches
    of supervision edges, with negative sampling, and the sampled
    neighbourhood of their end nodes) that also runs where neither
    ``pyg-lib`` nor ``torch-sparse`` is installed.

    It takes PyG's arguments and gives PyG's batches; its default sampler is
    a :class:`TorchNeighborSampler`, as for
    :class:`~pyg_attn.loader.NeighborLoader`.

    Example:
        >>> loader = LinkNeighborLoader(data, num_neighbors=[10, 10],
        ...                             edge_label_index=data.edge_index,
        ...                             neg_sampling_ratio=1.0,
        ...                             batch_size=256, shuffle=True)
        >>> batch = next(iter(loader))
        >>> batch.edge_label_index, batch.edge_label  # into the batch's nodes
    """
    def __init__(self, *args, **kwargs):
        args, kwargs = with_torch_sampler(
            torch_geometric.loader.LinkNeighborLoader, args, kwargs)
        super().__init__(*args, **kwargs)
