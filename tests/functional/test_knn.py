import pytest
import torch
import torch.nn.functional as F

from pyg_attn.functional import edge_distance, knn


def brute_force(x, k, batch, metric, loop):
    """Per node: the sorted (distance, neighbour) list from a full distance
    matrix, restricted to the node's graph."""
    x = x.double()
    if metric == 'cosine':
        z = F.normalize(x, dim=-1)
        d = 1 - z @ z.t()
    else:
        d = torch.cdist(x, x, compute_mode='donot_use_mm_for_euclid_dist')
    d = d.masked_fill(batch[:, None] != batch[None, :], float('inf'))
    if not loop:
        d.fill_diagonal_(float('inf'))
    out = []
    for i in range(x.size(0)):
        count = min(k, int(torch.isfinite(d[i]).sum()))
        dist, nbr = d[i].topk(count, largest=False)
        out.append((nbr.tolist(), dist))
    return out


CASES = [
    # (sizes of the graphs, features, k, block_size)
    ([37], 5, 4, 1024),
    ([37], 5, 4, 6),  # many tiles, tiles shorter than k
    ([13, 1, 3, 29, 8], 3, 5, 7),  # graphs smaller than k + 1, a lone node
    ([50, 50], 16, 1, 17),
]
IDS = [f'G{len(s)}-N{sum(s)}-F{f}-k{k}-B{b}' for s, f, k, b in CASES]


@pytest.mark.parametrize('case', CASES, ids=IDS)
@pytest.mark.parametrize('metric', ['l2', 'cosine'])
@pytest.mark.parametrize('loop', [False, True])
def test_knn_matches_brute_force(case, metric, loop):
    sizes, features, k, block_size = case
    x = torch.randn(sum(sizes), features, dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(len(sizes)),
                                    torch.tensor(sizes))
    # shuffle the nodes so the batch is unsorted
    perm = torch.randperm(x.size(0))
    x, batch = x[perm], batch[perm]
    edge_index, dist = knn(x, k, batch, metric=metric, loop=loop,
                           block_size=block_size)
    expected = brute_force(x, k, batch, metric, loop)
    assert edge_index.size(1) == sum(len(nbr) for nbr, _ in expected)
    # grouped by target in node order
    assert torch.equal(edge_index[1], edge_index[1].sort(stable=True)[0])
    for i, (nbr, d) in enumerate(expected):
        mine = edge_index[1] == i
        assert edge_index[0, mine].tolist() == nbr
        torch.testing.assert_close(dist[mine], d)
    assert (batch[edge_index[0]] == batch[edge_index[1]]).all()


def test_knn_float32_exact_distances():
    x = torch.randn(300, 32)
    edge_index, dist = knn(x, 8, block_size=64)
    assert edge_index.shape == (2, 300 * 8) and dist.dtype == torch.float32
    expected = brute_force(x, 8, torch.zeros(300, dtype=torch.long), 'l2',
                           False)
    assert edge_index[0].view(300, 8).tolist() == [n for n, _ in expected]
    # re-measured directly: no cancellation error from the matrix product
    torch.testing.assert_close(
        dist, (x[edge_index[0]] - x[edge_index[1]]).norm(dim=-1))


def test_knn_distance_gradient():
    x = torch.randn(40, 3, dtype=torch.float64, requires_grad=True)
    edge_index, dist = knn(x, 4, block_size=8)
    with torch.no_grad():
        _, expected = knn(x, 4, block_size=8)
    torch.testing.assert_close(dist.detach(), expected)
    src, dst = edge_index
    naive = (x[src] - x[dst]).norm(dim=-1)
    grad = torch.randn_like(dist)
    torch.testing.assert_close(torch.autograd.grad(dist, x, grad),
                               torch.autograd.grad(naive, x, grad))


def test_knn_loop_finds_self_first():
    x = torch.randn(20, 4)
    edge_index, dist = knn(x, 3, loop=True)
    assert torch.equal(edge_index[0, ::3], torch.arange(20))
    assert (dist[::3] == 0).all()


def test_knn_zero_vector_cosine():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    edge_index, dist = knn(x, 1, metric='cosine')
    assert edge_index[0].tolist()[1:3] == [2, 1]
    assert dist[0] == 1  # a zero vector is at cosine distance 1 from all


def test_knn_empty_and_tiny():
    edge_index, dist = knn(torch.randn(0, 3), 2)
    assert edge_index.shape == (2, 0) and dist.shape == (0, )
    edge_index, dist = knn(torch.randn(1, 3), 2)
    assert edge_index.shape == (2, 0)
    edge_index, dist = knn(torch.randn(1, 3), 2, loop=True)
    assert edge_index.tolist() == [[0], [0]]


def test_edge_distance():
    x = torch.randn(10, 6, dtype=torch.float64)
    edge_index = torch.randint(0, 10, (2, 40))
    torch.testing.assert_close(
        edge_distance(x, edge_index),
        (x[edge_index[0]] - x[edge_index[1]]).norm(dim=-1))
    cos = F.cosine_similarity(x[edge_index[0]], x[edge_index[1]], dim=-1)
    torch.testing.assert_close(edge_distance(x, edge_index, 'cosine'),
                               1 - cos)


def test_knn_errors():
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"'k' \(0\) must be"):
        knn(x, 0)
    with pytest.raises(ValueError, match=r"'metric' \('ip'\) must be one of"):
        knn(x, 2, metric='ip')
    with pytest.raises(ValueError, match=r"'block_size' \(0\)"):
        knn(x, 2, block_size=0)
    with pytest.raises(ValueError, match=r"'x' must be 2-D"):
        knn(x[0], 2)
    with pytest.raises(ValueError, match=r"floating-point.*x.float\(\)"):
        knn(x.long(), 2)
    with pytest.raises(ValueError, match=r"'batch' has shape \(4,\)"):
        knn(x, 2, batch=torch.zeros(4, dtype=torch.long))
