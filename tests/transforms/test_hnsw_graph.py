import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch, Data

from pyg_attn.functional import knn
from pyg_attn.testing import hnsw_search
from pyg_attn.transforms import HNSWGraph
from pyg_attn.transforms.hnsw_graph import build_hnsw_index

faiss = pytest.importorskip('faiss')


def scatter_max(src, index):
    return torch.zeros(int(index.max()) + 1, dtype=src.dtype).scatter_reduce(
        0, index, src, 'amax')


def points(num_nodes, dim, seed=0):
    return torch.randn(num_nodes, dim,
                       generator=torch.Generator().manual_seed(seed))


def faiss_lists(index):
    """{(node, layer): [neighbour, ...]} read one list at a time through
    faiss's own ``neighbor_range``."""
    hnsw = index.hnsw
    levels = faiss.vector_to_array(hnsw.levels)
    neighbors = faiss.vector_to_array(hnsw.neighbors)
    begin, end = np.zeros(1, dtype='uint64'), np.zeros(1, dtype='uint64')
    lists = {}
    for i in range(index.ntotal):
        for layer in range(int(levels[i])):
            hnsw.neighbor_range(i, layer, faiss.swig_ptr(begin),
                                faiss.swig_ptr(end))
            nbr = neighbors[int(begin[0]):int(end[0])]
            lists[i, layer] = nbr[nbr >= 0].tolist()
    return lists, levels - 1


def edge_lists(data):
    """{(target, type): [source, ...]} in edge order."""
    lists = {}
    for (src, dst), t in zip(data.edge_index.t().tolist(),
                             data.edge_type.tolist()):
        lists.setdefault((dst, t), []).append(src)
    return lists


def greedy_hub(index, x, v, layer):
    """Reference greedy descent toward x[v], one node at a time."""
    lists, _ = faiss_lists(index)
    cur = int(index.hnsw.entry_point)
    top = int(index.hnsw.max_level)
    d_cur = float(((x[cur] - x[v])**2).sum())
    for lev in range(top, layer - 1, -1):
        while True:
            nbr = lists[cur, lev]
            d = ((x[nbr] - x[v])**2).sum(-1)
            if len(nbr) == 0 or float(d.min()) >= d_cur:
                break
            cur, d_cur = nbr[int(d.argmin())], float(d.min())
    return cur


@pytest.fixture(scope='module')
def nav():
    """3,000 random 64-d points, their HNSW edges (m = 16) and queries."""
    x, queries = points(3000, 64), points(200, 64, seed=1)
    return x, queries, HNSWGraph()(Data(x=x))


@pytest.mark.parametrize('metric', ['l2', 'cosine'])
def test_edges_are_faiss_neighbour_lists(metric):
    x = points(600, 8)
    data = HNSWGraph(m=4, ef_construction=20, metric=metric, seed=3)(
        Data(x=x))
    z = F.normalize(x, dim=-1) if metric == 'cosine' else x
    lists, levels = faiss_lists(build_hnsw_index(z, 4, 20, metric, seed=3))
    assert torch.equal(data.node_level, torch.from_numpy(levels).long())
    assert data.node_level.max() >= 3  # several upper layers are compared
    ours = edge_lists(data)
    assert ours == {key: nbr for key, nbr in lists.items() if nbr}
    # grouped by target node, then by layer
    order = data.edge_index[1] * 100 + data.edge_type
    assert torch.equal(order, order.sort(stable=True)[0])


@pytest.mark.parametrize('metric', ['l2', 'cosine'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_edge_attr_is_true_distance(metric, dtype):
    x = points(200, 5, seed=2).to(dtype)
    x[7] = 0  # a zero vector: cosine distance 1
    data = HNSWGraph(m=4, metric=metric, hub_edges=True)(Data(x=x))
    src, dst = data.edge_index
    x = x.double()
    if metric == 'l2':
        expected = (x[src] - x[dst]).norm(dim=-1)
    else:
        expected = 1 - F.cosine_similarity(x[src], x[dst], dim=-1)
    assert data.edge_attr.shape == (data.edge_index.size(1), 1)
    assert data.edge_attr.dtype == dtype
    assert data.edge_type.dtype == data.node_level.dtype == torch.long
    torch.testing.assert_close(data.edge_attr[:, 0], expected.to(dtype))


def recall(found, truth):
    hits = sum(len(set(a) & set(b))
               for a, b in zip(found.tolist(), truth.tolist()))
    return hits / truth.numel()


def check_navigable(x, queries, data, k=10, ef=64):
    """Recall@k of the search over the edges and of faiss's own search,
    both at ``ef``, against brute force."""
    truth = torch.cdist(queries, x).topk(k, largest=False).indices
    entry, = data.entry_index.tolist()
    ours = hnsw_search(x, data.edge_index, data.edge_type, data.node_level,
                       queries, k, ef=ef, entry=entry)
    index = build_hnsw_index(x, 16, 40, 'l2', seed=0)
    index.hnsw.efSearch = ef
    assert entry == index.hnsw.entry_point
    _, found = index.search(queries.numpy(), k)
    theirs = recall(torch.from_numpy(found), truth)
    assert recall(ours, truth) >= theirs
    # the edges are faiss's whole graph: the same search finds the same
    for a, b in zip(ours.tolist(), found.tolist()):
        assert set(a) == set(b)
    return recall(ours, truth), theirs


def test_edges_alone_are_navigable(nav):
    x, queries, data = nav
    ours, theirs = check_navigable(x, queries, data)
    assert ours > 0.85  # 3,000 points: 0.94 for both


@pytest.mark.slow
def test_edges_alone_are_navigable_20k():
    x, queries = points(20_000, 64), points(1000, 64, seed=1)
    ours, theirs = check_navigable(x, queries, HNSWGraph()(Data(x=x)))
    assert ours > 0.6  # the issue measured faiss at 0.68


@pytest.mark.parametrize('m', [4, 16])
def test_level_law(m, nav):
    data = nav[2] if m == 16 else HNSWGraph(m=m)(Data(x=nav[0]))
    n = data.num_nodes
    for layer in range(1, 4):
        p = m**-layer
        frac = float((data.node_level >= layer).float().mean())
        assert abs(frac - p) <= 4 * (p * (1 - p) / n)**0.5 + 1 / n


def test_typed_edges_join_nodes_on_their_layer(nav):
    data = nav[2]
    level = data.node_level
    assert torch.equal(torch.unique(data.edge_type),
                       torch.arange(int(level.max()) + 1))
    for end in data.edge_index:
        assert (level[end] >= data.edge_type).all()


def test_deterministic():
    x = points(500, 16)
    a, b = (HNSWGraph(m=6)(Data(x=x)) for _ in range(2))
    for key in ('edge_index', 'edge_type', 'edge_attr', 'node_level'):
        assert torch.equal(a[key], b[key])
    c = HNSWGraph(m=6, seed=1)(Data(x=x))
    assert not torch.equal(a.node_level, c.node_level)


def test_restores_faiss_threads():
    before = faiss.omp_get_max_threads()
    HNSWGraph(num_threads=before + 1)(Data(x=points(50, 4)))
    assert faiss.omp_get_max_threads() == before


@pytest.mark.parametrize('options', [
    dict(), dict(hub_edges=True), dict(knn=3, to_undirected=True),
    dict(hub_edges=True, keep_edges=True, kept_edge_type=9)
], ids=['plain', 'hub', 'knn-undirected', 'hub-keep'])
def test_batch_is_graph_by_graph(options):
    graphs = [Data(x=points(n, 6, seed=n),
                   edge_index=torch.randint(0, n, (2, 2 * n),
                                            generator=torch.Generator()
                                            .manual_seed(n)))
              for n in (150, 1, 40, 3)]
    transform = HNSWGraph(m=4, **options)
    batch = transform(Batch.from_data_list(graphs))
    src, dst = batch.edge_index
    assert torch.equal(batch.batch[src], batch.batch[dst])
    alone = Batch.from_data_list([transform(g) for g in graphs])
    key = lambda d: sorted(zip(d.edge_type.tolist(), *d.edge_index.tolist()))
    assert key(batch) == key(alone)
    assert torch.equal(batch.node_level, alone.node_level)
    assert torch.equal(batch.entry_index, alone.entry_index)
    assert (batch.node_level[batch.entry_index] ==
            scatter_max(batch.node_level, batch.batch)).all()


def test_hub_edges():
    x = points(800, 8)
    transform = HNSWGraph(m=4, hub_edges=True)
    data = transform(Data(x=x))
    plain = HNSWGraph(m=4)(Data(x=x))
    level, top = data.node_level, int(data.node_level.max())
    src, dst = data.edge_index
    hub = level[dst] < data.edge_type
    # the HNSW links are unchanged; hub edges come from nodes on the layer
    assert torch.equal(data.edge_index[:, ~hub], plain.edge_index)
    assert (level[src[hub]] >= data.edge_type[hub]).all()
    for layer in range(1, top + 1):
        has = torch.zeros(x.size(0), dtype=torch.bool)
        has[dst[data.edge_type == layer]] = True
        alone = int((level >= layer).sum()) == 1
        # every node has an edge of each upper layer (but a node alone there)
        assert bool(has.all()) or (alone and int((~has).sum()) == 1)
        # exactly one hub edge per node below the layer
        below = hub & (data.edge_type == layer)
        assert torch.equal(dst[below].sort()[0],
                           (level < layer).nonzero().view(-1))
    index = build_hnsw_index(x, 4, 40, 'l2', seed=0)
    for v in [0, 1, 17, 399, 799]:
        for layer in range(int(level[v]) + 1, top + 1):
            mine = src[hub & (dst == v) & (data.edge_type == layer)]
            assert mine.tolist() == [greedy_hub(index, x, v, layer)]


@pytest.mark.parametrize('metric', ['l2', 'cosine'])
def test_knn_base_layer_is_exact(metric):
    x = points(300, 8)
    data = HNSWGraph(m=4, knn=7, metric=metric)(Data(x=x))
    plain = HNSWGraph(m=4, metric=metric)(Data(x=x))
    local = data.edge_type == 0
    expected, _ = knn(x, 7, metric=metric)
    assert torch.equal(data.edge_index[:, local], expected)
    upper = plain.edge_type > 0
    assert torch.equal(data.edge_index[:, ~local], plain.edge_index[:, upper])


def test_keep_edges_and_to_undirected():
    x = points(120, 4)
    own = torch.randint(0, 120, (2, 300))
    data = Data(x=x, edge_index=own, edge_weight=torch.rand(300),
                edge_attr=torch.randn(300, 3))
    plain = HNSWGraph(m=4)(data)
    assert 'edge_weight' not in plain and plain.edge_attr.size(1) == 1
    kept = HNSWGraph(m=4, keep_edges=True)(data)
    top = int(kept.node_level.max())
    mine = kept.edge_type == top + 1
    assert torch.equal(kept.edge_index[:, mine], own)
    assert torch.equal(kept.edge_index[:, ~mine], plain.edge_index)
    fixed = HNSWGraph(m=4, keep_edges=True, kept_edge_type=7)(data)
    assert (fixed.edge_type[mine] == 7).all()
    with pytest.raises(ValueError, match=rf"'kept_edge_type' \(1\) must "
                       rf"exceed every HNSW layer.*kept_edge_type={top + 1}"):
        HNSWGraph(m=4, keep_edges=True, kept_edge_type=1)(data)

    und = HNSWGraph(m=4, keep_edges=True, to_undirected=True)(data)
    triples = set(zip(und.edge_type.tolist(), *und.edge_index.tolist()))
    assert len(triples) == und.edge_type.numel()  # no repeats
    assert all((t, d, s) in triples for t, s, d in triples)
    directed = set(zip(kept.edge_type.tolist(), *kept.edge_index.tolist()))
    assert triples == directed | {(t, d, s) for t, s, d in directed}
    torch.testing.assert_close(
        und.edge_attr[:, 0],
        (x[und.edge_index[0]] - x[und.edge_index[1]]).norm(dim=-1))


def test_key_pos_and_tiny_graphs():
    pos = points(30, 3)
    data = HNSWGraph(m=4, key='pos')(Data(pos=pos, num_nodes=30))
    assert data.edge_index.size(1) > 0 and data.node_level.shape == (30, )
    for n in (0, 1):
        data = HNSWGraph(hub_edges=True)(Data(x=torch.randn(n, 3)))
        assert data.edge_index.shape == (2, 0)
        assert data.edge_attr.shape == (0, 1)
        assert data.entry_index.tolist() == ([0] if n else [])


def test_missing_faiss(monkeypatch):
    monkeypatch.setitem(sys.modules, 'faiss', None)
    with pytest.raises(ImportError, match=r'pip install pyg_attn\[hnsw\]'):
        HNSWGraph()


def test_errors():
    with pytest.raises(ValueError, match=r"'m' \(1\) must be an integer >= 2"):
        HNSWGraph(m=1)
    with pytest.raises(ValueError, match=r"'ef_construction' \(0\)"):
        HNSWGraph(ef_construction=0)
    with pytest.raises(ValueError, match=r"'metric' \('dot'\) must be one"):
        HNSWGraph(metric='dot')
    with pytest.raises(ValueError, match=r"'knn' \(0\)"):
        HNSWGraph(knn=0)
    with pytest.raises(ValueError, match=r"'num_threads' \(0\)"):
        HNSWGraph(num_threads=0)
    with pytest.raises(ValueError, match=r"'kept_edge_type' \(-1\)"):
        HNSWGraph(kept_edge_type=-1)
    with pytest.raises(ValueError, match=r"no node tensor 'pos'.*set 'key'"):
        HNSWGraph(key='pos')(Data(x=torch.randn(4, 2)))
    with pytest.raises(ValueError, match=r"floating-point.*x.float\(\)"):
        HNSWGraph()(Data(x=torch.ones(4, 2, dtype=torch.long)))


def test_repr():
    assert repr(HNSWGraph()) == (
        "HNSWGraph(m=16, ef_construction=40, metric='l2', key='x', "
        "hub_edges=False, knn=None, keep_edges=False)")
