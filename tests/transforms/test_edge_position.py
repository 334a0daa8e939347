from collections import deque

import pytest
import torch
from torch_geometric.data import Batch, Data

from pyg_attn.nn import RotaryAttentionConv
from pyg_attn.testing import make_graph, random_graph
from pyg_attn.transforms import EdgePosition


def bfs_hops(edge_index, num_nodes, max_hops):
    """{(i, l): d(i, l)} for 1 <= d <= max_hops, one BFS per node."""
    out = [[] for _ in range(num_nodes)]
    for s, d in edge_index.t().tolist():
        out[s].append(d)
    dist = {}
    for i in range(num_nodes):
        seen, queue = {i: 0}, deque([i])
        while queue:
            j = queue.popleft()
            if seen[j] == max_hops:
                continue
            for l in out[j]:
                if l not in seen:
                    seen[l] = seen[j] + 1
                    queue.append(l)
        dist.update({(i, l): h for l, h in seen.items() if h > 0})
    return dist


def test_one_hop_keeps_edges():
    data = make_graph(4, [(0, 0), (0, 1), (1, 1), (2, 1), (3, 2), (2, 3)])
    out = EdgePosition()(data.clone())
    assert torch.equal(out.edge_index, data.edge_index)
    assert out.edge_pos.dtype == torch.float32
    assert out.edge_pos.view(-1).tolist() == [0, 1, 0, 1, 1, 1]


@pytest.mark.parametrize('num_hops', [2, 3, 5])
@pytest.mark.parametrize('seed', [0, 1])
def test_k_hop_edges_carry_shortest_path_length(num_hops, seed):
    data = random_graph(30, 45, seed=seed)  # directed, loops and repeats
    out = EdgePosition(num_hops=num_hops)(data.clone())
    E = data.num_edges
    assert torch.equal(out.edge_index[:, :E], data.edge_index)
    hops = out.edge_pos[:, 0]
    loops = data.edge_index[0] == data.edge_index[1]
    assert torch.equal(hops[:E], (~loops).float())
    expected = bfs_hops(data.edge_index, 30, num_hops)
    appended = {(s, d): int(h) for (s, d), h in zip(
        out.edge_index[:, E:].t().tolist(), hops[E:].tolist())}
    assert len(appended) == out.num_edges - E  # no repeated pair
    assert appended == {k: h for k, h in expected.items() if h >= 2}
    assert max(appended.values()) <= num_hops
    # padded edge tensors: zeros on the appended edges
    assert out.edge_attr.shape == (out.num_edges, data.edge_attr.size(1))
    assert torch.equal(out.edge_attr[:E], data.edge_attr)
    assert (out.edge_attr[E:] == 0).all()


def test_no_edges_between_graphs_of_a_batch():
    first = random_graph(8, 20, seed=0)
    second = random_graph(9, 20, seed=1)
    batch = Batch.from_data_list([first, second])
    out = EdgePosition(num_hops=4)(batch)
    graph = batch.batch[out.edge_index]
    assert torch.equal(graph[0], graph[1])
    alone = [EdgePosition(num_hops=4)(g.clone()).num_edges
             for g in (first, second)]
    assert out.num_edges == sum(alone)


def test_components_stack_in_order():
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    data = Data(edge_index=edge_index, num_nodes=3,
                edge_type=torch.tensor([0, 2, 1]),
                edge_attr=torch.tensor([[0.5, 9.0], [1.5, 9.0], [2.5, 9.0]]),
                edge_weight=torch.tensor([0.1, 0.2, 0.3]))
    out = EdgePosition(['layer', 'hop', 'distance', 'weight'],
                       num_hops=2)(data)
    assert out.edge_pos.shape == (6, 4)
    expected = torch.tensor([[0, 1, 0.5, 0.1], [2, 1, 1.5, 0.2],
                             [1, 1, 2.5, 0.3], [0, 2, 0, 0], [0, 2, 0, 0],
                             [0, 2, 0, 0]])
    torch.testing.assert_close(out.edge_pos, expected)
    assert out.edge_index[:, 3:].tolist() == [[0, 1, 2], [2, 0, 1]]
    assert out.edge_type[3:].tolist() == [0, 0, 0]  # appended: local
    second = EdgePosition('distance', attr_column=1)(data.clone())
    assert second.edge_pos.view(-1).tolist()[:3] == [9.0, 9.0, 9.0]


def test_feeds_rotary_attention():
    data = random_graph(12, 30)
    data = EdgePosition(num_hops=2)(data)
    conv = RotaryAttentionConv(data.num_features, 4, heads=2,
                               edge_dim=data.edge_attr.size(1))
    out = conv(data.x, data.edge_index, data.edge_attr, data.edge_pos)
    assert out.shape == (12, 8) and torch.isfinite(out).all()


def test_empty_graph_and_repr():
    data = make_graph(3, [])
    out = EdgePosition(num_hops=3)(data.clone())
    assert out.edge_index.shape == (2, 0) and out.edge_pos.shape == (0, 1)
    assert repr(EdgePosition(['hop', 'layer'], num_hops=2)) == (
        "EdgePosition(components=['hop', 'layer'], num_hops=2)")


def test_bad_arguments():
    data = make_graph(3, [(0, 1)])
    with pytest.raises(ValueError, match=r"distinct names from \['hop'"):
        EdgePosition(['hop', 'angle'])
    with pytest.raises(ValueError, match='distinct'):
        EdgePosition(['hop', 'hop'])
    with pytest.raises(ValueError, match=r"'num_hops' \(0\)"):
        EdgePosition(num_hops=0)
    with pytest.raises(ValueError, match="add 'hop' to 'components'"):
        EdgePosition('layer', num_hops=2)
    with pytest.raises(ValueError, match="'layer' component reads "
                       "'data.edge_type', which is missing.*HNSWGraph"):
        EdgePosition('layer')(data.clone())
    with pytest.raises(ValueError, match=r"'attr_column' \(3\) is out of "
                       "range.*3 columns"):
        EdgePosition('distance', attr_column=3)(data.clone())
