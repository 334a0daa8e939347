import importlib
import sys

import pytest
import torch

from pyg_attn.functional import latent_knn
from pyg_attn.functional.latent_knn import row_blocks


def brute_force(x, k, batch=None):
    """Every node's k most cosine-similar other nodes of its graph, from the
    full similarity matrix: {node: [neighbours, most similar first]}."""
    n = x.size(0)
    batch = torch.zeros(n, dtype=torch.long) if batch is None else batch
    xn = torch.nn.functional.normalize(x.double(), dim=-1)
    sim = xn @ xn.t()
    sim[batch[:, None] != batch[None, :]] = float('-inf')
    sim.fill_diagonal_(float('-inf'))
    out = {}
    for i in range(n):
        order = sim[i].argsort(descending=True).tolist()
        out[i] = [j for j in order if sim[i, j] > float('-inf')][:k]
    return out


def as_lists(edge_index, num_nodes):
    out = {i: [] for i in range(num_nodes)}
    for j, i in edge_index.t().tolist():
        out[i].append(j)
    return out


def random_batch(sizes, num_features=5, seed=0, shuffle=False):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(sizes), num_features, generator=gen)
    batch = torch.cat([torch.full((n,), g) for g, n in enumerate(sizes)])
    if shuffle:
        perm = torch.randperm(x.size(0), generator=gen)
        x, batch = x[perm], batch[perm]
    return x, batch


CASES = {  # id: (graph sizes, k, shuffled batch)
    'N1-k1': ([1], 1, False),
    'N9-k3': ([9], 3, False),
    'N9-k8': ([9], 8, False),
    'N9-k20': ([9], 20, False),
    'B3-N5-1-13-k4': ([5, 1, 13], 4, False),
    'B4-N2-7-3-11-k3-shuffled': ([2, 7, 3, 11], 3, True),
    'B2-N31-17-k5-shuffled': ([31, 17], 5, True),
}


@pytest.mark.parametrize('backend', ['torch', 'faiss'])
@pytest.mark.parametrize('case', CASES, ids=list(CASES))
def test_equals_brute_force(case, backend):
    sizes, k, shuffle = CASES[case]
    x, batch = random_batch(sizes, shuffle=shuffle)
    # a block of 9 values: packs of graphs of <= 3 nodes, one row otherwise
    edge_index, sim = latent_knn(x, k, batch, backend=backend, block_size=9)
    expected = brute_force(x, k, batch)
    assert as_lists(edge_index, x.size(0)) == expected
    n_graph = torch.tensor(sizes)[batch]
    assert edge_index.size(1) == int(torch.clamp(n_graph - 1, max=k).sum())
    assert edge_index.size(1) == sum(len(v) for v in expected.values())
    xn = torch.nn.functional.normalize(x, dim=-1)
    torch.testing.assert_close(sim, (xn[edge_index[0]] * xn[edge_index[1]])
                               .sum(-1))


def test_never_crosses_graphs_and_excludes_self():
    x, batch = random_batch([40, 3, 1, 25, 2], num_features=3, seed=1,
                            shuffle=True)
    edge_index, _ = latent_knn(x, 6, batch, block_size=50)
    src, dst = edge_index
    assert (batch[src] == batch[dst]).all()
    assert (src != dst).all()
    counts = torch.bincount(dst, minlength=x.size(0))
    sizes = torch.bincount(batch)[batch]
    assert torch.equal(counts, torch.clamp(sizes - 1, max=6))
    assert torch.equal(dst, dst.sort().values)  # grouped by target


@pytest.mark.parametrize('block_size', [1, 7, 64, 1 << 22])
def test_blockwise_equals_faiss(block_size):
    x, batch = random_batch([150, 60, 4, 90], num_features=16, seed=2)
    faiss_edges, faiss_sim = latent_knn(x, 10, batch, backend='faiss')
    edges, sim = latent_knn(x, 10, batch, backend='torch',
                            block_size=block_size)
    assert torch.equal(edges, faiss_edges)
    assert torch.equal(sim, faiss_sim)


def test_threshold_sends_large_graphs_to_faiss(monkeypatch):
    module = importlib.import_module('pyg_attn.functional.latent_knn')
    x, batch = random_batch([30, 8, 12], seed=3)
    searched = []
    real = module._faiss_graphs

    def spy(xn, ptr, k, threshold, table, everything):
        searched.extend(hi - lo for lo, hi in zip(ptr[:-1], ptr[1:])
                        if everything or hi - lo > threshold)
        return real(xn, ptr, k, threshold, table, everything)

    monkeypatch.setattr(module, '_faiss_graphs', spy)
    edges, _ = latent_knn(x, 4, batch, threshold=10)
    assert searched == [30, 12]
    assert torch.equal(edges, latent_knn(x, 4, batch, backend='torch')[0])


def test_blocks_stay_within_block_size():
    ptr = [0, 3, 5, 6, 40, 42, 300, 301, 1301]
    block_size = 100
    rows = torch.zeros(ptr[-1], dtype=torch.long)
    for r0, r1, c0, c1 in row_blocks(ptr, threshold=500,
                                     block_size=block_size):
        graph_size = max(hi - lo for lo, hi in zip(ptr[:-1], ptr[1:])
                         if lo <= r0 < hi)
        assert (r1 - r0) * (c1 - c0) <= max(block_size, graph_size)
        assert c0 <= r0 < r1 <= c1
        rows[r0:r1] += 1
    # every row of a graph up to the threshold once, none of the larger one
    assert (rows[:301] == 1).all() and (rows[301:] == 0).all()


def test_duplicates_are_neighbours_and_self_is_excluded():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(8, 4, generator=gen)
    x[[4, 6]] = x[1].clone()  # three copies
    x[2] = 0.  # a zero vector
    for backend in ('torch', 'faiss'):
        edge_index, sim = latent_knn(x, 2, backend=backend)
        lists = as_lists(edge_index, 8)
        for i in (1, 4, 6):
            assert sorted(lists[i]) == sorted({1, 4, 6} - {i}), backend
        assert torch.isfinite(sim).all()
        assert all(i not in lists[i] for i in lists)


@pytest.mark.parametrize('dtype', [torch.float64, torch.float16,
                                   torch.bfloat16])
def test_dtypes(dtype):
    x, batch = random_batch([12, 9], seed=5)
    edge_index, sim = latent_knn(x.to(dtype), 3, batch)
    expected = brute_force(x.to(dtype).double(), 3, batch)
    assert as_lists(edge_index, 21) == expected
    assert sim.dtype == (torch.float64 if dtype == torch.float64
                         else torch.float32)


def test_no_gradient_and_empty_input():
    x = torch.randn(5, 3, requires_grad=True)
    edge_index, sim = latent_knn(x, 2)
    assert not sim.requires_grad
    edge_index, sim = latent_knn(torch.randn(0, 3), 2)
    assert edge_index.shape == (2, 0) and sim.shape == (0, )


def test_bad_input(monkeypatch):
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"'k' \(0\) must be an integer >= 1"):
        latent_knn(x, 0)
    with pytest.raises(ValueError, match=r"'k' \(2.0\)"):
        latent_knn(x, 2.0)
    with pytest.raises(ValueError, match=r"'batch' has shape \(3,\).*4 nodes"):
        latent_knn(x, 2, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="'batch' must be an integer"):
        latent_knn(x, 2, torch.zeros(4))
    with pytest.raises(ValueError, match="unknown 'backend'.*'faiss'"):
        latent_knn(x, 2, backend='hnsw')
    with pytest.raises(ValueError, match=r"'block_size' \(0\)"):
        latent_knn(x, 2, block_size=0)
    with pytest.raises(ValueError, match="must be 2-D"):
        latent_knn(x[0], 2)
    monkeypatch.setitem(sys.modules, 'faiss', None)  # import fails
    with pytest.raises(ImportError, match=r'pip install pyg_attn\[hnsw\]'):
        latent_knn(x, 2, threshold=3)
    latent_knn(x, 2, threshold=4)  # no faiss needed


def test_agrees_with_knn_cosine():
    knn = pytest.importorskip('pyg_attn.functional.knn').knn
    x, batch = random_batch([20, 1, 9, 33], num_features=7, seed=6,
                            shuffle=True)
    edges, _ = latent_knn(x, 5, batch, block_size=40)
    expected, _ = knn(x, 5, batch, metric='cosine')
    assert as_lists(edges, x.size(0)) == as_lists(expected, x.size(0))
