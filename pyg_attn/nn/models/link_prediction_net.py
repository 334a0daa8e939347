from typing import Any, Callable, Dict, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Identity, ModuleList
from torch_geometric.nn import GCNConv, MessagePassing
from torch_geometric.nn.resolver import activation_resolver
from torch_geometric.typing import Adj

from pyg_attn.functional import poincare
from pyg_attn.nn.models.attention_net import accepted_kwargs

MANIFOLDS = ('euclidean', 'poincare')


class FermiDiracDecoder(torch.nn.Module):
    r"""The Fermi–Dirac decoder of `"Poincaré Embeddings for Learning
    Hierarchical Representations" <https://arxiv.org/abs/1705.08039>`_
    (Nickel & Kiela, 2017), used by HGCN for link prediction: the probability
    of an edge between two nodes at distance :math:`d`,

    .. math::
        p(d) = \frac{1}{\exp\left((d^2 - r) / t\right) + 1}
        = \sigma\!\left(\frac{r - d^2}{t}\right),

    which is :math:`1/2` at :math:`d^2 = r` and sharpens as :math:`t`
    shrinks. :meth:`logits` returns :math:`(r - d^2) / t`, the argument of
    the sigmoid, for a numerically stable
    :func:`~torch.nn.functional.binary_cross_entropy_with_logits`.

    Args:
        r (float, optional): The squared distance of probability 1/2.
            (default: :obj:`2.0`)
        t (float, optional): The temperature, :math:`t > 0`.
            (default: :obj:`1.0`)

    Raises:
        ValueError: If :obj:`t <= 0`.

    Shapes:
        - **input:** distances :math:`(*)`
        - **output:** probabilities (or logits) :math:`(*)`

    Example:
        >>> decoder = FermiDiracDecoder(r=2.0, t=1.0)
        >>> decoder(torch.tensor([0.0, 2.0 ** 0.5, 3.0]))
        tensor([0.8808, 0.5000, 0.0009])
    """
    def __init__(self, r: float = 2.0, t: float = 1.0):
        super().__init__()
        if not t > 0:
            raise ValueError(f"'t' ({t}) must be positive; it is the "
                             f"temperature of the Fermi-Dirac decoder")
        self.r = r
        self.t = t

    def logits(self, dist: Tensor) -> Tensor:
        r"""Returns :math:`(r - d^2) / t`, whose sigmoid is :meth:`forward`.

        Args:
            dist (torch.Tensor): The distances :math:`d`.
        """
        return (self.r - dist.pow(2)) / self.t

    def forward(self, dist: Tensor) -> Tensor:
        r"""Returns the edge probabilities :math:`p(d)`.

        Args:
            dist (torch.Tensor): The distances :math:`d`.
        """
        return torch.sigmoid(self.logits(dist))

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(r={self.r}, t={self.t})'


def layer_curvature(conv: torch.nn.Module) -> Union[float, Tensor]:
    r"""The curvature :math:`c` of the ball a hyperbolic layer's output lies
    on: its :obj:`curvature` (a learnable one's current value) or :obj:`c`.

    Raises:
        ValueError: If the layer exposes neither.
    """
    for name in ('curvature', 'c'):
        value = getattr(conv, name, None)
        if callable(value):
            value = value()
        if isinstance(value, (int, float, Tensor)):
            return value
    raise ValueError(f"the conv ({conv.__class__.__name__}) exposes no "
                     f"'curvature' or 'c'; manifold='poincare' needs a "
                     f"layer whose output lies on a Poincaré ball")


class LinkPredictionNet(torch.nn.Module):
    r"""A graph encoder and a Fermi–Dirac decoder for link prediction, as in
    `"Hyperbolic Graph Convolutional Neural Networks"
    <https://arxiv.org/abs/1910.12933>`_ (Chami et al., 2019).

    The encoder stacks :obj:`num_layers` layers of :obj:`hidden_channels`
    outputs, each followed by the activation :math:`\sigma` (HGCN's link
    prediction encoders apply it after the last layer too; see
    :obj:`act_last`). A pair of nodes scores by its distance:

    .. math::
        s_{ij} = \frac{r - d(\mathbf{z}_i, \mathbf{z}_j)^2}{t}, \qquad
        p_{ij} = \sigma(s_{ij}) = \mathrm{FD}(d(\mathbf{z}_i, \mathbf{z}_j)).

    - :obj:`manifold="euclidean"`: :math:`d` is the Euclidean distance and
      the embeddings' norms are clipped to :obj:`max_norm` first (HGCN's
      Euclidean decoder clips them to 1).
    - :obj:`manifold="poincare"`: each layer takes Euclidean (tangent)
      features and returns points on its Poincaré ball (as
      :class:`~pyg_attn.nn.PoincareAttentionConv` does); between layers the
      activated tangent vector :math:`\sigma(\log_0^{c_\ell}(\mathbf{h}))`
      is passed on (the next layer maps it in with its own
      :math:`\exp_0`), after the last one HGCN's hyperbolic activation
      :math:`\exp_0^{c}(\sigma(\log_0^{c_L}(\mathbf{h})))` maps it to the
      decoder's ball of curvature :obj:`c`, and :math:`d` is the geodesic
      distance :math:`d_c` there.

    Attention layers run :obj:`heads` heads of
    :obj:`hidden_channels // heads` channels, concatenated (as HGCN's GAT);
    layers that take no :obj:`heads` (e.g.
    :class:`~torch_geometric.nn.GCNConv`) get :obj:`hidden_channels`.

    Args:
        in_channels (int): Size of each input sample, or :obj:`-1`.
        hidden_channels (int): Size of each layer's output.
        num_layers (int, optional): Number of layers. (default: :obj:`2`)
        conv (callable, optional): The layer class, or any callable
            :obj:`(in_channels, out_channels, **kwargs) -> MessagePassing`.
            (default: :class:`~torch_geometric.nn.GCNConv`)
        manifold (str, optional): :obj:`"euclidean"` or :obj:`"poincare"`,
            where the layers' outputs live. (default: :obj:`"euclidean"`)
        heads (int, optional): Heads of each attention layer; must divide
            :obj:`hidden_channels`. (default: :obj:`1`)
        act (str or callable, optional): The activation.
            (default: :obj:`"relu"`)
        act_last (bool, optional): Apply it after the last layer too.
            (default: :obj:`True`)
        dropout (float, optional): Dropout on each layer's input.
            (default: :obj:`0.0`)
        c (float, optional): The decoder ball's curvature (poincare only).
            (default: :obj:`1.0`)
        r (float, optional): The Fermi–Dirac :math:`r`. (default: :obj:`2.0`)
        t (float, optional): The Fermi–Dirac :math:`t`. (default: :obj:`1.0`)
        max_norm (float, optional): Clip Euclidean embeddings to this norm;
            :obj:`None` keeps them. (default: :obj:`1.0`)
        conv_kwargs (dict, optional): Extra arguments passed unchanged to
            every layer. (default: :obj:`None`)

    Raises:
        ValueError: If :obj:`num_layers < 1`, :obj:`manifold` is unknown,
            :obj:`heads` does not divide :obj:`hidden_channels`,
            :obj:`c <= 0` or :obj:`t <= 0`, or :obj:`manifold` is
            :obj:`"poincare"` and the layer exposes no curvature.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})`,
          edge indices :math:`(2, |\mathcal{E}|)`, node pairs to score
          :math:`(2, L)`
        - **output:** logits :math:`(L)`; :meth:`encode` gives
          :math:`(|\mathcal{V}|, \text{hidden})`

    Example:
        >>> model = LinkPredictionNet(11, 16)
        >>> x, edge_index = torch.randn(4, 11), torch.tensor([[0, 1], [1, 2]])
        >>> model(x, edge_index, torch.tensor([[0, 3], [2, 1]])).shape
        torch.Size([2])
    """
    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        num_layers: int = 2,
        conv: Callable[..., MessagePassing] = GCNConv,
        manifold: str = 'euclidean',
        heads: int = 1,
        act: Union[str, Callable, None] = 'relu',
        act_last: bool = True,
        dropout: float = 0.0,
        c: float = 1.0,
        r: float = 2.0,
        t: float = 1.0,
        max_norm: Optional[float] = 1.0,
        conv_kwargs: Optional[Dict[str, Any]] = None,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"'num_layers' ({num_layers}) must be at least 1")
        if manifold not in MANIFOLDS:
            raise ValueError(f"'manifold' ({manifold!r}) must be one of "
                             f"{list(MANIFOLDS)}")
        if not c > 0:
            raise ValueError(f"'c' ({c}) must be positive; it is the "
                             f"decoder ball's curvature")

        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.manifold = manifold
        self.heads = heads
        self.act_last = act_last
        self.dropout = dropout
        self.c = c
        self.max_norm = max_norm
        self.act = activation_resolver(act) if act is not None else Identity()
        self.decoder = FermiDiracDecoder(r=r, t=t)

        kwargs = accepted_kwargs(conv, dict(heads=heads, concat=True))
        out_channels = hidden_channels
        if 'heads' in kwargs:
            if hidden_channels % heads != 0:
                raise ValueError(f"'hidden_channels' ({hidden_channels}) "
                                 f"must be divisible by 'heads' ({heads})")
            out_channels = hidden_channels // heads
        kwargs.update(conv_kwargs or {})
        self.convs = ModuleList()
        for i in range(num_layers):
            channels = in_channels if i == 0 else hidden_channels
            self.convs.append(conv(channels, out_channels, **kwargs))
            if manifold == 'poincare':
                layer_curvature(self.convs[-1])  # fails early if it has none

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        for conv in self.convs:
            conv.reset_parameters()

    def encode(self, x: Tensor, edge_index: Adj, **tensors: Any) -> Tensor:
        r"""Returns the node embeddings :math:`\mathbf{z}`: Euclidean, or
        points on the decoder's ball of curvature :obj:`c`.

        Args:
            x (torch.Tensor): The node features.
            edge_index (torch.Tensor or SparseTensor): The edges messages
                pass along (the training edges).
            **tensors: Passed unchanged to every layer as keywords, for
                layers whose call is :obj:`conv(x, edge_index, edge_type=…)`
                (e.g. :obj:`edge_type` for
                :class:`~pyg_attn.nn.LocalGlobalAttentionConv`,
                :obj:`edge_pos` for
                :class:`~pyg_attn.nn.RotaryAttentionConv`).
        """
        for i, conv in enumerate(self.convs):
            x = F.dropout(x, p=self.dropout, training=self.training)
            h = conv(x, edge_index, **tensors)
            last = i == self.num_layers - 1
            if self.manifold == 'poincare':
                h = poincare.logmap0(h, c=layer_curvature(conv))
            if not last or self.act_last:
                h = self.act(h)
            x = h
        if self.manifold == 'poincare':
            return poincare.project(poincare.expmap0(x, c=self.c), c=self.c)
        if self.max_norm is not None:
            x = x.renorm(2, 0, self.max_norm)
        return x

    def distance(self, z: Tensor, edge_label_index: Tensor) -> Tensor:
        r"""Returns the distances :math:`d(\mathbf{z}_i, \mathbf{z}_j)` of
        the node pairs :obj:`edge_label_index` :math:`(2, L)`."""
        src = z.index_select(0, edge_label_index[0])  # [L, C]
        dst = z.index_select(0, edge_label_index[1])  # [L, C]
        if self.manifold == 'poincare':
            return poincare.dist(src, dst, c=self.c)  # [L]
        return torch.linalg.vector_norm(src - dst, dim=-1)  # [L]

    def forward(self, x: Tensor, edge_index: Adj, edge_label_index: Tensor,
                **tensors: Any) -> Tensor:
        r"""Returns the logits :math:`(r - d^2)/t` of the node pairs
        :obj:`edge_label_index`; their sigmoid is the Fermi–Dirac
        probability.

        Args:
            x (torch.Tensor): The node features.
            edge_index (torch.Tensor or SparseTensor): The message-passing
                edges.
            edge_label_index (torch.Tensor): The node pairs to score.
            **tensors: Passed to every layer, as in :meth:`encode`.
        """
        z = self.encode(x, edge_index, **tensors)
        return self.decoder.logits(self.distance(z, edge_label_index))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.hidden_channels}, num_layers={self.num_layers}, '
                f'conv={self.convs[0].__class__.__name__}, '
                f'manifold={self.manifold})')
