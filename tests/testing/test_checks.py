"""The property checks must be able to fail: each one is shown a layer that
breaks its property."""
import pytest
import torch
from torch import nn

from pyg_attn.testing import (assert_alpha_sums_to_one,
                              assert_batch_independent, assert_close,
                              assert_edge_permutation_invariant,
                              assert_neighbor_batch,
                              assert_node_permutation_equivariant,
                              assert_reset_parameters, assert_same_function,
                              edge_set, random_graph, small_graphs)

GRAPHS = small_graphs()


class SumNeighbours(nn.Module):
    """A correct layer: the sum of incoming features, weights 1/degree."""
    def forward(self, x, edge_index, return_attention_weights=False):
        src, dst = edge_index
        out = torch.zeros_like(x).index_add_(0, dst, x[src])
        deg = torch.zeros(x.size(0)).index_add_(0, dst, torch.ones(len(dst)))
        if return_attention_weights:
            return out, (edge_index, (1 / deg[dst]).unsqueeze(-1))
        return out


class LastEdgeWins(SumNeighbours):
    def forward(self, x, edge_index, return_attention_weights=False):
        out = torch.zeros_like(x)
        out[edge_index[1]] = x[edge_index[0]]  # depends on edge order
        return out


class AddsPosition(SumNeighbours):
    def forward(self, x, edge_index, return_attention_weights=False):
        return super().forward(x, edge_index) + torch.arange(
            x.size(0)).unsqueeze(-1)


class GlobalMean(SumNeighbours):
    def forward(self, x, edge_index, return_attention_weights=False):
        return super().forward(x, edge_index) + x.mean(0)


class UnnormalisedAlpha(SumNeighbours):
    def forward(self, x, edge_index, return_attention_weights=False):
        out = super().forward(x, edge_index)
        if return_attention_weights:
            return out, (edge_index, torch.ones(edge_index.size(1), 1))
        return out


def test_correct_layer_passes():
    data = GRAPHS['multi_edge']
    assert_edge_permutation_invariant(SumNeighbours(), data)
    assert_node_permutation_equivariant(SumNeighbours(), data)
    assert_batch_independent(SumNeighbours(), data, GRAPHS['path'])
    assert_alpha_sums_to_one(SumNeighbours(), data)


def test_each_check_can_fail():
    data = GRAPHS['multi_edge']
    with pytest.raises(AssertionError, match='edge permutation'):
        assert_edge_permutation_invariant(LastEdgeWins(), data, seed=1)
    with pytest.raises(AssertionError, match='node permutation'):
        assert_node_permutation_equivariant(AddsPosition(), data)
    with pytest.raises(AssertionError, match='batching'):
        assert_batch_independent(GlobalMean(), data, GRAPHS['path'])
    with pytest.raises(AssertionError, match='do not sum to 1'):
        assert_alpha_sums_to_one(UnnormalisedAlpha(), data)
    with pytest.raises(AssertionError):
        assert_close(torch.ones(3), torch.ones(3) + 1e-3)


class Scaled(nn.Module):
    def __init__(self, detach=False):
        super().__init__()
        self.lin, self.detach = nn.Linear(6, 6), detach

    def forward(self, x, edge_index):
        h = self.lin(x)
        # same value, no gradient to the weight when detached
        return (h.detach() if self.detach else h) + 0 * x


def test_same_function_check_compares_outputs_and_gradients():
    data = GRAPHS['path']
    conv, same, other = Scaled(), Scaled(), Scaled(detach=True)
    same.load_state_dict(conv.state_dict())
    other.load_state_dict(conv.state_dict())
    assert_same_function(conv, same, data.x, data.edge_index)
    with pytest.raises(AssertionError, match='gradient of x'):
        assert_same_function(conv, other, data.x, data.edge_index)
    with pytest.raises(AssertionError, match='output differs'):
        assert_same_function(conv, Scaled(), data.x, data.edge_index)


def test_reset_parameters_check_catches_a_missed_child():
    class Forgets(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def reset_parameters(self):
            self.a.reset_parameters()  # forgets self.b

    with pytest.raises(AssertionError, match='b.weight'):
        assert_reset_parameters(Forgets())


def test_catalogue_covers_the_hard_cases():
    assert any((g.edge_index[0] == g.edge_index[1]).any()
               for g in [GRAPHS['self_loops']])
    zero = GRAPHS['zero_in_degree']
    assert not (zero.edge_index[1] == 0).any()
    multi = GRAPHS['multi_edge'].edge_index
    assert multi.size(1) > len(edge_set(multi)) == 4
    assert (0, 1) in edge_set(multi) and (1, 0) not in edge_set(multi)
    assert GRAPHS['empty'].num_edges == 0
    iso = GRAPHS['isolated_node']
    assert 5 not in iso.edge_index.flatten().tolist()


def test_neighbor_batch_check_fails_on_wrong_batches():
    from pyg_attn.loader import NeighborLoader
    data = random_graph(20, 80, seed=2)
    batch = next(iter(NeighborLoader(data, [2, 2], batch_size=4)))
    assert_neighbor_batch(batch, data, [2, 2], torch.arange(4))
    with pytest.raises(AssertionError):  # other seeds
        assert_neighbor_batch(batch, data, [2, 2], torch.arange(1, 5))
    with pytest.raises(AssertionError):  # more neighbours than sampled
        assert_neighbor_batch(batch, data, [3, 2], torch.arange(4))
    wrong = batch.clone()
    wrong.e_id = wrong.e_id.roll(1)  # edge ids name other edges
    with pytest.raises(AssertionError):
        assert_neighbor_batch(wrong, data, [2, 2], torch.arange(4))
    wrong = batch.clone()
    wrong.edge_index = wrong.edge_index[:, 1:]  # an edge dropped
    wrong.e_id = wrong.e_id[1:]
    with pytest.raises(AssertionError):
        assert_neighbor_batch(wrong, data, [2, 2], torch.arange(4))

