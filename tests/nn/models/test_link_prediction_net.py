import math

import pytest
import torch
from torch_geometric.nn import GCNConv

from pyg_attn.functional import poincare
from pyg_attn.nn import (
    DotProductAttentionConv,
    EdgeGATConv,
    RotaryAttentionConv,
)
from pyg_attn.nn.models import FermiDiracDecoder, LinkPredictionNet
from pyg_attn.nn.models.link_prediction_net import layer_curvature
from pyg_attn.testing import assert_reset_parameters
from pyg_attn.testing.graphs import random_graph


class BallGCNConv(GCNConv):
    r"""A stand-in hyperbolic layer: GCN in the tangent space at the origin,
    output mapped onto the ball of curvature :obj:`c`."""
    def __init__(self, in_channels, out_channels, c=1.0, **kwargs):
        super().__init__(in_channels, out_channels, **kwargs)
        self.c = c

    def forward(self, x, edge_index):
        return poincare.expmap0(super().forward(x, edge_index), c=self.c)


def pairs(num_nodes=11, num_pairs=9, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(num_nodes, (2, num_pairs), generator=gen)


@pytest.mark.parametrize('r,t', [(2.0, 1.0), (0.5, 0.1), (-1.0, 3.0)])
def test_fermi_dirac_formula(r, t):
    dist = torch.tensor([0.0, 0.3, 1.0, 2.5, 7.0], dtype=torch.float64)
    decoder = FermiDiracDecoder(r=r, t=t)
    expected = 1 / (torch.exp((dist**2 - r) / t) + 1)
    torch.testing.assert_close(decoder(dist), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.sigmoid(decoder.logits(dist)), expected,
                               rtol=1e-12, atol=0)


def test_fermi_dirac_half_at_r():
    decoder = FermiDiracDecoder(r=3.0, t=0.5)
    assert decoder(torch.tensor(math.sqrt(3.0))).item() == pytest.approx(0.5)
    assert decoder(torch.tensor(0.0)) > 0.99
    assert str(decoder) == 'FermiDiracDecoder(r=3.0, t=0.5)'


def test_fermi_dirac_extreme_distances():
    decoder = FermiDiracDecoder()
    dist = torch.tensor([0.0, 1e3, 1e18], requires_grad=True)
    probs = decoder(dist)
    assert torch.isfinite(probs).all() and probs[1:].eq(0).all()
    torch.nn.functional.binary_cross_entropy_with_logits(
        decoder.logits(dist), torch.tensor([1.0, 0.0, 0.0])).backward()
    assert torch.isfinite(dist.grad).all()


@pytest.mark.parametrize('t', [0.0, -1.0])
def test_fermi_dirac_bad_t(t):
    with pytest.raises(ValueError, match=rf"'t' \({t}\) must be positive"):
        FermiDiracDecoder(t=t)


@pytest.mark.parametrize('conv,heads,out', [
    (GCNConv, 4, 16), (EdgeGATConv, 4, 4), (DotProductAttentionConv, 2, 8)
], ids=['GCNConv', 'EdgeGATConv', 'DotProductAttentionConv'])
def test_link_prediction_net_layers(conv, heads, out):
    model = LinkPredictionNet(6, 16, num_layers=3, conv=conv, heads=heads)
    assert [c.out_channels for c in model.convs] == [out] * 3
    assert [c.in_channels for c in model.convs] == [6, 16, 16]
    data = random_graph(11, 37)
    z = model.encode(data.x, data.edge_index)
    assert z.shape == (11, 16)
    assert model(data.x, data.edge_index, pairs()).shape == (9, )


def test_link_prediction_net_passes_tensors_to_every_layer():
    # A layer called conv(x, edge_index, edge_pos=...): the keyword must
    # reach each layer, in encode and in forward.
    model = LinkPredictionNet(6, 8, num_layers=2, conv=RotaryAttentionConv,
                              heads=2, max_norm=None)
    data = random_graph(11, 37)
    edge_pos = torch.rand(37, generator=torch.Generator().manual_seed(4)) * 5
    h = data.x
    for conv in model.convs:
        h = torch.relu(conv(h, data.edge_index, edge_pos=edge_pos))
    z = model.encode(data.x, data.edge_index, edge_pos=edge_pos)
    torch.testing.assert_close(z, h, rtol=0, atol=0)
    assert not torch.allclose(z, model.encode(data.x, data.edge_index,
                                              edge_pos=edge_pos + 1))
    dist = torch.linalg.vector_norm(h[pairs()[0]] - h[pairs()[1]], dim=-1)
    torch.testing.assert_close(
        model(data.x, data.edge_index, pairs(), edge_pos=edge_pos),
        model.decoder.logits(dist), rtol=0, atol=0)


def test_link_prediction_net_repr():
    model = LinkPredictionNet(6, 16, conv=EdgeGATConv, heads=4)
    assert str(model) == ('LinkPredictionNet(6, 16, num_layers=2, '
                          'conv=EdgeGATConv, manifold=euclidean)')


def test_link_prediction_net_euclidean_scores():
    data = random_graph(11, 37)
    model = LinkPredictionNet(6, 8, max_norm=None, r=1.5, t=0.7)
    index = pairs()
    z = model.encode(data.x, data.edge_index)
    dist = (z[index[0]] - z[index[1]]).norm(dim=-1)
    torch.testing.assert_close(model(data.x, data.edge_index, index),
                               (1.5 - dist**2) / 0.7)
    # symmetric in the pair, zero distance to oneself
    torch.testing.assert_close(model.distance(z, index),
                               model.distance(z, index.flip(0)))
    assert model.distance(z, torch.arange(11).repeat(2, 1)).eq(0).all()


def test_link_prediction_net_act_last_and_max_norm():
    data = random_graph(11, 37)
    data.x = 100 * data.x
    model = LinkPredictionNet(6, 8, max_norm=None)
    assert model.encode(data.x, data.edge_index).min() >= 0  # ReLU last
    assert model.encode(data.x, data.edge_index).norm(dim=-1).max() > 1
    model.max_norm = 1.0
    norms = model.encode(data.x, data.edge_index).norm(dim=-1)
    assert norms.max() <= 1 + 1e-6 and norms.max() > 1 - 1e-6
    model.act_last = False
    assert model.encode(data.x, data.edge_index).min() < 0


@pytest.mark.parametrize('c', [1.0, 0.3])
def test_link_prediction_net_poincare(c):
    data = random_graph(11, 37)
    data.x = 10 * data.x
    model = LinkPredictionNet(6, 8, conv=BallGCNConv, manifold='poincare',
                              c=c, conv_kwargs=dict(c=2.0))
    z = model.encode(data.x, data.edge_index)
    assert (z.norm(dim=-1) * math.sqrt(c)).max() < 1
    # HGCN's hyperbolic ReLU: from the last layer's ball (c=2) to the
    # decoder's (c), through a non-negative tangent vector.
    h = model.convs[0](data.x, data.edge_index)
    h = torch.relu(poincare.logmap0(h, c=2.0))
    h = torch.relu(poincare.logmap0(model.convs[1](h, data.edge_index), c=2.0))
    torch.testing.assert_close(z, poincare.expmap0(h, c=c))
    index = pairs()
    torch.testing.assert_close(model.distance(z, index),
                               poincare.dist(z[index[0]], z[index[1]], c=c))


def test_link_prediction_net_poincare_gradients():
    data = random_graph(11, 37)
    model = LinkPredictionNet(6, 8, conv=BallGCNConv, manifold='poincare')
    model(data.x, data.edge_index, pairs()).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_layer_curvature():
    assert layer_curvature(BallGCNConv(3, 4, c=0.5)) == 0.5

    class Learnable(torch.nn.Module):
        def curvature(self):
            return torch.tensor(0.25)

    assert layer_curvature(Learnable()).item() == 0.25
    with pytest.raises(ValueError, match=r"\(GCNConv\) exposes no "
                       r"'curvature' or 'c'"):
        LinkPredictionNet(6, 8, conv=GCNConv, manifold='poincare')


def test_link_prediction_net_reset_parameters():
    model = LinkPredictionNet(6, 16, conv=EdgeGATConv, heads=4)
    assert_reset_parameters(model)


def test_link_prediction_net_errors():
    with pytest.raises(ValueError, match=r"'num_layers' \(0\)"):
        LinkPredictionNet(6, 16, num_layers=0)
    with pytest.raises(ValueError, match=r"'manifold' \('lorentz'\)"):
        LinkPredictionNet(6, 16, manifold='lorentz')
    with pytest.raises(ValueError, match=r"'hidden_channels' \(16\) must be "
                       r"divisible by 'heads' \(3\)"):
        LinkPredictionNet(6, 16, conv=EdgeGATConv, heads=3)
    with pytest.raises(ValueError, match=r"'c' \(0.0\) must be positive"):
        LinkPredictionNet(6, 16, c=0.0)
    with pytest.raises(ValueError, match=r"'t' \(0.0\) must be positive"):
        LinkPredictionNet(6, 16, t=0.0)


def test_link_prediction_net_learns():
    # Two 6-cliques joined by one edge: training separates pairs inside a
    # clique from pairs across.
    edges = [(i, j) for g in (0, 6) for i in range(g, g + 6)
             for j in range(g, g + 6) if i != j]
    edges += [(0, 6), (6, 0)]
    edge_index = torch.tensor(edges).t()
    x = torch.randn(12, 6)
    model = LinkPredictionNet(6, 8)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    pos = edge_index
    neg = torch.tensor([[i, j] for i in range(1, 6) for j in range(7, 12)]).t()
    for _ in range(100):
        optimizer.zero_grad()
        logits = model(x, edge_index, torch.cat([pos, neg], dim=1))
        labels = torch.cat([torch.ones(pos.size(1)), torch.zeros(neg.size(1))])
        torch.nn.functional.binary_cross_entropy_with_logits(
            logits, labels).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        scores = model(x, edge_index, torch.tensor([[1, 1], [2, 9]]))
    assert scores[0] > scores[1] + 0.5


def test_link_prediction_net_poincare_attention():
    from pyg_attn.nn import PoincareAttentionConv
    data = random_graph(11, 37)
    model = LinkPredictionNet(6, 8, conv=PoincareAttentionConv,
                              manifold='poincare', heads=2, c=0.5,
                              conv_kwargs=dict(c=2.0, learn_c=True))
    assert [(c.heads, c.out_channels) for c in model.convs] == [(2, 4)] * 2
    assert layer_curvature(model.convs[0]).item() == pytest.approx(2.0)
    z = model.encode(data.x, data.edge_index)
    assert z.shape == (11, 8)
    assert (z.norm(dim=-1) * math.sqrt(0.5)).max() < 1
    model(data.x, data.edge_index, pairs()).sum().backward()
    for conv in model.convs:
        assert conv.raw_c.grad is not None and conv.raw_c.grad.ne(0)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters()
               if p.grad is not None)
