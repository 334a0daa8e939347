import pytest
import torch
from torch_geometric.utils import index_to_mask

from pyg_attn.loader import NeighborLoader, TorchNeighborSampler
from pyg_attn.testing import assert_neighbor_batch, random_graph


def test_input_nodes_and_shuffle():
    # A mask of seeds, shuffled: every seed once per epoch, each batch true.
    data = random_graph(30, 120, num_features=4, seed=1)
    mask = index_to_mask(torch.arange(0, 30, 3), size=30)
    torch.manual_seed(0)
    loader = NeighborLoader(data, [2, 2], input_nodes=mask, batch_size=4,
                            shuffle=True)
    seen = []
    for batch in loader:
        seeds = batch.n_id[:batch.batch_size]
        assert_neighbor_batch(batch, data, [2, 2], seeds)
        seen.append(seeds)
    seen = torch.cat(seen)
    assert torch.equal(seen.sort().values, torch.arange(0, 30, 3))
    assert not torch.equal(seen, torch.arange(0, 30, 3))  # shuffled


def test_sampler():
    # Ours by default; one passed in is used as given.
    data = random_graph(13, 40)
    assert type(NeighborLoader(data, [2]).node_sampler) is TorchNeighborSampler
    sampler = TorchNeighborSampler(data, [3])
    assert NeighborLoader(data, [2], neighbor_sampler=sampler).node_sampler \
        is sampler


def test_worker_process():
    # The fallback samples in a DataLoader worker too (plain torch).
    data = random_graph(50, 200, seed=1)
    loader = NeighborLoader(data, [3, 2], batch_size=8, num_workers=1)
    batches = list(loader)
    assert len(batches) == 7
    for i, batch in enumerate(batches):
        seeds = torch.arange(8 * i, min(8 * i + 8, 50))
        assert_neighbor_batch(batch, data, [3, 2], seeds)


def test_positional_arguments():
    # PyG's signature, positions included: input_nodes third, replace fifth.
    data = random_graph(20, 60, seed=2)
    loader = NeighborLoader(data, [2], torch.tensor([4, 5, 6]), batch_size=2)
    seeds = torch.cat([batch.n_id[:batch.batch_size] for batch in loader])
    assert seeds.tolist() == [4, 5, 6]
    if TorchNeighborSampler.has_backend():
        return  # PyG samples, with replacement if asked
    with pytest.raises(ValueError, match='replace=True needs pyg-lib'):
        NeighborLoader(data, [2], None, None, True)
