import pytest
import torch

from pyg_attn.loader import LinkNeighborLoader, TorchNeighborSampler
from pyg_attn.testing import random_graph


def test_batches():
    # Each batch: its supervision edges (true edges labelled 1, as many
    # sampled negatives labelled 0) between its seed nodes, and a true
    # sample of their neighbourhood.
    data = random_graph(50, 200, seed=1)
    edges = set(map(tuple, data.edge_index.t().tolist()))
    loader = LinkNeighborLoader(data, [3, 2], batch_size=8,
                                neg_sampling_ratio=1.0, shuffle=True)
    assert type(loader.link_sampler) is TorchNeighborSampler
    seen = 0
    for batch in loader:
        label = batch.edge_label
        assert label.tolist() == [1.0] * (label.numel() // 2) + [0.0] * (
            label.numel() // 2)
        src, dst = batch.n_id[batch.edge_label_index]
        pos = label == 1
        assert all((int(s), int(d)) in edges for s, d in zip(src[pos],
                                                           dst[pos]))
        seeds = batch.num_sampled_nodes[0]
        assert int(batch.edge_label_index.max()) < seeds
        assert torch.equal(data.edge_index[:, batch.e_id],
                           batch.n_id[batch.edge_index])
        assert sum(batch.num_sampled_edges) == batch.edge_index.size(1)
        seen += int(pos.sum())
    assert seen == data.num_edges


def test_positional_arguments_and_options():
    # PyG's signature, positions included; options reach the sampler.
    data = random_graph(20, 60, seed=2)
    loader = LinkNeighborLoader(data, [2], data.edge_index[:, :10],
                                batch_size=5)
    assert sum(batch.edge_label_index.size(1) for batch in loader) == 10
    if TorchNeighborSampler.has_backend():
        pytest.skip('pyg-lib or torch-sparse installed: PyG samples')
    with pytest.raises(ValueError, match='replace=True needs pyg-lib'):
        LinkNeighborLoader(data, [2], replace=True)
