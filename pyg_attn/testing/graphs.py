"""A catalogue of small labelled graphs for layer tests.

Each graph is a :class:`~torch_geometric.data.Data` with ``x`` ``[N, F]``,
``edge_index`` ``[2, E]`` and ``edge_attr`` ``[E, D]``, and covers one case
that breaks attention layers: self-loops, a node without incoming edges,
repeated edges, an isolated node, no edges at all.
"""
from typing import Dict, List, Set, Tuple

import torch
from torch_geometric.data import Data

NUM_FEATURES = 6
EDGE_DIM = 3

_EDGES: Dict[str, Tuple[int, List[Tuple[int, int]]]] = {
    # name: (num_nodes, [(src, dst), ...])
    'path': (5, [(0, 1), (1, 2), (2, 3), (3, 4), (1, 0), (2, 1), (3, 2),
                 (4, 3)]),
    'self_loops': (4, [(0, 0), (0, 1), (1, 1), (2, 1), (3, 2), (2, 3),
                       (3, 3)]),
    'zero_in_degree': (5, [(0, 1), (0, 2), (1, 2), (2, 3), (3, 1), (4, 3)]),
    'multi_edge': (4, [(0, 1), (0, 1), (0, 1), (2, 1), (1, 2), (3, 2),
                       (3, 2)]),
    'isolated_node': (6, [(0, 1), (1, 0), (1, 2), (2, 3), (3, 1)]),
    'star': (7, [(j, 0) for j in range(1, 7)] + [(0, j) for j in range(1, 7)]),
    'empty': (3, []),
}


def make_graph(num_nodes: int, edges: List[Tuple[int, int]],
               num_features: int = NUM_FEATURES, edge_dim: int = EDGE_DIM,
               seed: int = 0) -> Data:
    """A graph with the given edges and seeded random features."""
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.tensor(edges, dtype=torch.long).t().reshape(2, -1)
    return Data(
        x=torch.randn(num_nodes, num_features, generator=gen),
        edge_index=edge_index,
        edge_attr=torch.randn(edge_index.size(1), edge_dim, generator=gen),
        num_nodes=num_nodes,
    )


def random_graph(num_nodes: int, num_edges: int,
                 num_features: int = NUM_FEATURES, edge_dim: int = EDGE_DIM,
                 seed: int = 0) -> Data:
    """A random multigraph (self-loops and repeats allowed)."""
    gen = torch.Generator().manual_seed(seed)
    edges = torch.randint(0, num_nodes, (num_edges, 2), generator=gen)
    return make_graph(num_nodes, edges.tolist(), num_features, edge_dim,
                      seed)


def small_graphs() -> Dict[str, Data]:
    """The labelled catalogue plus two random graphs of odd sizes."""
    graphs = {
        name: make_graph(n, edges, seed=i)
        for i, (name, (n, edges)) in enumerate(_EDGES.items())
    }
    graphs['random_N11_E37'] = random_graph(11, 37, seed=11)
    graphs['random_N23_E101'] = random_graph(23, 101, seed=23)
    return graphs


def edge_set(edge_index: torch.Tensor) -> Set[Tuple[int, int]]:
    """The ``(src, dst)`` pairs of ``edge_index``, repeats merged."""
    return set(map(tuple, edge_index.t().tolist()))


def bipartite_graph(num_src: int = 7, num_dst: int = 4, num_edges: int = 15,
                    num_features: Tuple[int, int] = (NUM_FEATURES,
                                                      NUM_FEATURES),
                    edge_dim: int = EDGE_DIM, seed: int = 0):
    """``(x_src, x_dst), edge_index, edge_attr`` with ``N_src != N_dst``,
    destination 0 without incoming edges."""
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, num_src, (num_edges,), generator=gen)
    dst = torch.randint(1, num_dst, (num_edges,), generator=gen)
    x = (torch.randn(num_src, num_features[0], generator=gen),
         torch.randn(num_dst, num_features[1], generator=gen))
    return x, torch.stack([src, dst]), torch.randn(num_edges, edge_dim,
                                                   generator=gen)
