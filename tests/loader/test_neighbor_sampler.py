import warnings
from collections import Counter

import pytest
import torch
import torch_geometric.loader
from torch_geometric.data import HeteroData

from pyg_attn.loader import NeighborLoader, TorchNeighborSampler
from pyg_attn.testing import (assert_neighbor_batch, make_graph, random_graph,
                              small_graphs)


@pytest.mark.parametrize('num_neighbors', [[2, 2], [1, -1, 3]],
                         ids=['k2-2', 'k1-all-3'])
@pytest.mark.parametrize('name', list(small_graphs()))
def test_batches(name, num_neighbors):
    data = small_graphs()[name]
    batches = list(NeighborLoader(data, num_neighbors, batch_size=3))
    assert len(batches) == -(-data.num_nodes // 3)
    for i, batch in enumerate(batches):
        seeds = torch.arange(3 * i, min(3 * i + 3, data.num_nodes))
        assert_neighbor_batch(batch, data, num_neighbors, seeds)


def test_is_pyg_fallback():
    # The fallback exists because PyG has no sampler here; if one appears,
    # PyG's own routine must run instead of ours.
    data = random_graph(13, 40)
    sampler = TorchNeighborSampler(data, [2])
    if sampler.has_backend():
        pytest.skip('pyg-lib or torch-sparse installed: PyG samples')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # PyG's own pyg-lib nudge
        with pytest.raises(ImportError, match='pyg-lib'):
            next(iter(torch_geometric.loader.NeighborLoader(
                data, [2], batch_size=4)))
    batch = next(iter(torch_geometric.loader.NeighborLoader(
        data, [2], batch_size=4, neighbor_sampler=sampler)))
    assert_neighbor_batch(batch, data, [2], torch.arange(4))


def test_is_uniform():
    # Node 0 has in-edges from 1..4; keeping k = 2 of them picks each with
    # probability 1/2: 400 draws give 200 ± 10 (std) per neighbour.
    data = make_graph(5, [(j, 0) for j in range(1, 5)])
    counts, draws = Counter(), NeighborLoader(data, [2], input_nodes=[0],
                                              batch_size=1)
    for _ in range(400):
        batch = next(iter(draws))
        counts.update(batch.n_id[1:].tolist())
    assert set(counts) == {1, 2, 3, 4}
    assert all(150 < counts[j] < 250 for j in range(1, 5)), counts


@pytest.mark.parametrize('kwargs, match', [
    (dict(replace=True), 'replace=True'),
    (dict(disjoint=True), 'disjoint=True'),
    (dict(subgraph_type='induced'), "subgraph_type='induced'"),
    (dict(subgraph_type='bidirectional'), "subgraph_type='bidirectional'"),
    (dict(time_attr='time'), 'time_attr'),
], ids=['replace', 'disjoint', 'induced', 'bidirectional', 'time'])
def test_unsupported_options(kwargs, match):
    data = random_graph(13, 40)
    data.time = torch.arange(13)
    if TorchNeighborSampler.has_backend():
        pytest.skip('pyg-lib or torch-sparse installed: PyG samples')
    with pytest.raises(ValueError, match=f'{match} needs pyg-lib.*Install'):
        NeighborLoader(data, [2], batch_size=4, **kwargs)
    # PyG itself refuses weighted sampling without pyg-lib, by name
    data.edge_weight = torch.rand(data.num_edges)
    with pytest.raises(ImportError, match='pyg-lib'):
        NeighborLoader(data, [2], batch_size=4, weight_attr='edge_weight')


def test_heterogeneous_data():
    data = HeteroData()
    data['paper'].x = torch.randn(5, 3)
    data['paper', 'cites', 'paper'].edge_index = torch.tensor([[0, 1, 2],
                                                               [1, 2, 3]])
    if TorchNeighborSampler.has_backend():
        pytest.skip('pyg-lib or torch-sparse installed: PyG samples')
    with pytest.raises(ValueError, match='heterogeneous data needs pyg-lib'):
        NeighborLoader(data, [2], input_nodes='paper', batch_size=2)
