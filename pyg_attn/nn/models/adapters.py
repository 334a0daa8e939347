r"""Thin adapters that let layers with other call signatures run inside
:class:`~pyg_attn.nn.models.AttentionNet`'s stack, for the comparison table
of :mod:`pyg_attn.compare`.  They define no attention of their own: each one
only routes arguments and outputs.  Four tiny classes share this file
because each exists for one row of that table or of the examples'."""
from typing import Any, List, Optional

import torch
from torch import Tensor
from torch.nn import Module

from pyg_attn.nn.models.attention_net import AttentionNet


class KeywordAttentionNet(AttentionNet):
    r""":class:`~pyg_attn.nn.models.AttentionNet` whose :meth:`forward` also
    passes named tensors (:obj:`edge_type`, :obj:`edge_pos`, …) to every
    layer, for layers whose call is :obj:`conv(x, edge_index, edge_type=…)`
    (:class:`~pyg_attn.nn.LocalGlobalAttentionConv`,
    :class:`~pyg_attn.nn.RotaryAttentionConv`,
    :class:`~pyg_attn.nn.MoEAttentionConv`).

    Takes the arguments of :class:`~pyg_attn.nn.models.AttentionNet`.

    Example:
        >>> from pyg_attn.nn import RotaryAttentionConv
        >>> model = KeywordAttentionNet(16, 4, 2, conv=RotaryAttentionConv,
        ...                             heads=2)
        >>> x, edge_index = torch.randn(4, 16), torch.tensor([[0, 1], [1, 2]])
        >>> model(x, edge_index, edge_pos=torch.ones(2)).shape
        torch.Size([4, 2])
    """
    def forward(self, x: Tensor, edge_index: Tensor,
                edge_attr: Optional[Tensor] = None,
                num_sampled_nodes_per_hop: Optional[List[int]] = None,
                num_sampled_edges_per_hop: Optional[List[int]] = None,
                **tensors: Any) -> Tensor:
        r"""Runs the stack.

        Args:
            x (torch.Tensor): The node features.
            edge_index (torch.Tensor): The edge indices.
            edge_attr (torch.Tensor, optional): The edge features, passed to
                every layer when :obj:`edge_dim` is set. (default: :obj:`None`)
            num_sampled_nodes_per_hop (List[int], optional): Hop by hop on a
                :class:`~torch_geometric.loader.NeighborLoader` mini-batch,
                as in :meth:`AttentionNet.forward`; :obj:`tensors` are then
                cut to each layer's edges. (default: :obj:`None`)
            num_sampled_edges_per_hop (List[int], optional): See above.
                (default: :obj:`None`)
            **tensors: Passed to every layer as keywords (one row per edge
                when cut hop by hop).
        """
        if self.edge_dim is not None:
            tensors['edge_attr'] = edge_attr
        return self._run(x, edge_index, tensors, num_sampled_nodes_per_hop,
                         num_sampled_edges_per_hop)


class GlobalAttentionBlock(Module):
    r"""Runs a global layer, called as :obj:`global_conv(x, batch)` (e.g.
    :class:`~pyg_attn.nn.LinearAttentionConv`, which ignores edges), where a
    stack calls :obj:`conv(x, edge_index)`; with :obj:`local_conv`, adds a
    message-passing layer's output as GPS does (`Rampášek et al., 2022
    <https://arxiv.org/abs/2205.12454>`_), without GPS's norms and MLP:

    .. math::
        \mathbf{x}'_i = \mathrm{global}(\mathbf{X})_i +
        \mathrm{local}(\mathbf{X}, \mathcal{E})_i

    Args:
        global_conv (Module): The global layer.
        local_conv (Module, optional): The local layer, of the same output
            width. (default: :obj:`None`)

    Example:
        >>> from pyg_attn.nn import EdgeGATConv, LinearAttentionConv
        >>> block = GlobalAttentionBlock(LinearAttentionConv(16, 4, heads=2),
        ...                              EdgeGATConv(16, 4, heads=2))
        >>> x, edge_index = torch.randn(5, 16), torch.tensor([[0, 1], [1, 2]])
        >>> block(x, edge_index).shape
        torch.Size([5, 8])
    """
    def __init__(self, global_conv: Module,
                 local_conv: Optional[Module] = None):
        super().__init__()
        self.global_conv = global_conv
        self.local_conv = local_conv

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        for conv in (self.global_conv, self.local_conv):
            if conv is not None and hasattr(conv, 'reset_parameters'):
                conv.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor,
                batch: Optional[Tensor] = None) -> Tensor:
        out = self.global_conv(x, batch)
        if self.local_conv is not None:
            out = out + self.local_conv(x, edge_index)
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.global_conv}, '
                f'local_conv={self.local_conv})')


class OutputSlice(Module):
    r"""Keeps the first :obj:`channels` output channels of a layer: a layer
    that needs an even width (:class:`~pyg_attn.nn.RotaryAttentionConv`
    rotates channel pairs) can then produce an odd number of class logits.
    All arguments are passed through.

    Args:
        conv (Module): The wrapped layer.
        channels (int): The output channels kept.

    Example:
        >>> from pyg_attn.nn import RotaryAttentionConv
        >>> conv = OutputSlice(RotaryAttentionConv(16, 8, concat=False), 7)
        >>> x, edge_index = torch.randn(5, 16), torch.tensor([[0, 1], [1, 2]])
        >>> conv(x, edge_index, edge_pos=torch.ones(2)).shape
        torch.Size([5, 7])
    """
    def __init__(self, conv: Module, channels: int):
        super().__init__()
        self.conv = conv
        self.channels = channels

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        if hasattr(self.conv, 'reset_parameters'):
            self.conv.reset_parameters()

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.conv(*args, **kwargs)[..., :self.channels]

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.conv}, {self.channels})'


class NodeLinear(torch.nn.Linear):
    r"""A linear map of each node's own features, called as a layer
    :obj:`(x, edge_index, **kwargs)` and ignoring everything but :obj:`x`:
    the control row of the examples, a model with no graph layer (stacked,
    HGCN's MLP; in Platonov et al.'s residual blocks, their ResNet).
    Takes the arguments of :class:`torch.nn.Linear`.

    Example:
        >>> lin = NodeLinear(16, 4)
        >>> x, edge_index = torch.randn(5, 16), torch.tensor([[0, 1], [1, 2]])
        >>> torch.equal(lin(x, edge_index), torch.nn.Linear.forward(lin, x))
        True
    """
    def forward(self, x: Tensor, edge_index: Tensor, **kwargs: Any) -> Tensor:
        return super().forward(x)
