import inspect
from typing import Any, Callable, Dict, List, Optional, Union

import torch
from torch import Tensor
from torch.nn import Identity, ModuleList
from torch_geometric.nn import Linear, MessagePassing
from torch_geometric.nn.resolver import (
    activation_resolver,
    normalization_resolver,
)
from torch_geometric.typing import Adj, OptTensor

from pyg_attn.nn.conv import EdgeGATConv


def accepted_kwargs(conv: Callable, kwargs: Dict[str, Any]) -> Dict[str, Any]:
    r"""Keeps the entries of :obj:`kwargs` that :obj:`conv`'s signature
    names. A class's :obj:`**kwargs` (those of :class:`MessagePassing`)
    accept none of them; a plain callable with :obj:`**kwargs` (a factory
    forwarding to a layer) accepts all of them.

    Args:
        conv (callable): A layer class or a factory.
        kwargs (dict): The candidate keyword arguments.
    """
    if isinstance(conv, type):
        names = _init_parameter_names(conv)
        return {k: v for k, v in kwargs.items() if k in names}
    params = inspect.signature(conv).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k in params}


def _init_parameter_names(cls: type) -> set:
    """The named arguments of :obj:`cls.__init__`, following a subclass's
    :obj:`**kwargs` to its parents' (as :class:`FlashAttentionConv` forwards
    to :class:`DotProductAttentionConv`) but not to :class:`MessagePassing`'s
    own."""
    names = set()
    for base in cls.__mro__:
        if base in (MessagePassing, torch.nn.Module, object):
            break
        if '__init__' not in vars(base):
            continue
        params = inspect.signature(base.__init__).parameters.values()
        names |= {p.name for p in params
                  if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names - {'self'}


class AttentionNet(torch.nn.Module):
    r"""A stack of graph attention layers, as in the GAT paper
    (`Veličković et al., 2018 <https://arxiv.org/abs/1710.10903>`_).

    Hidden layers run :obj:`heads` heads and concatenate them; the last layer
    runs :obj:`out_heads` heads and averages them (:obj:`concat=False`).
    Dropout is applied to every layer's input and, through the layer's own
    :obj:`dropout`, to the attention coefficients:

    .. math::
        \mathbf{h}^{(\ell+1)} = \sigma\Big(\mathrm{norm}\big(
        \mathrm{conv}_\ell(\mathrm{drop}(\mathbf{h}^{(\ell)}))\big)
        + \mathbf{W}_\ell \, \mathrm{drop}(\mathbf{h}^{(\ell)})\Big)

    where the residual term :math:`\mathbf{W}_\ell` is used only when
    :obj:`residual=True` (identity when sizes match) and :math:`\sigma` and
    the norm are skipped after the last layer.

    Layers that take no :obj:`heads`, :obj:`concat`, :obj:`dropout` or
    :obj:`edge_dim` argument (e.g. :class:`~torch_geometric.nn.GCNConv`) are
    built without them; hidden width is then :obj:`hidden_channels`.

    Args:
        in_channels (int): Size of each input sample, or :obj:`-1` for lazy
            initialization.
        hidden_channels (int): Size of each head of a hidden layer.
        out_channels (int): Size of each output sample.
        num_layers (int, optional): Number of layers. (default: :obj:`2`)
        conv (callable, optional): The layer class, or any callable
            :obj:`(in_channels, out_channels, **kwargs) -> MessagePassing`.
            (default: :class:`pyg_attn.nn.EdgeGATConv`)
        heads (int, optional): Heads of each hidden layer. (default: :obj:`8`)
        out_heads (int, optional): Heads of the last layer, averaged.
            (default: :obj:`1`)
        dropout (float, optional): Dropout on each layer's input features
            and on the attention coefficients. (default: :obj:`0.6`)
        act (str or callable, optional): Activation between layers.
            (default: :obj:`"elu"`)
        residual (bool, optional): Adds a skip connection around each layer,
            a linear projection when sizes differ. (default: :obj:`False`)
        norm (str or callable, optional): Normalization after each hidden
            layer, e.g. :obj:`"layer"` or :obj:`"batch"`, resolved by
            :func:`~torch_geometric.nn.resolver.normalization_resolver`.
            (default: :obj:`None`)
        norm_kwargs (dict, optional): Arguments of the normalization, e.g.
            :obj:`{"mode": "node"}` for a per-node layer norm.
            (default: :obj:`None`)
        edge_dim (int, optional): Edge feature size; when set, every layer
            gets :obj:`edge_dim` and :meth:`forward` passes :obj:`edge_attr`.
            (default: :obj:`None`)
        conv_kwargs (dict, optional): Extra arguments passed unchanged to
            every layer, e.g. :obj:`{"beta": True}`. (default: :obj:`None`)

    Raises:
        ValueError: If :obj:`num_layers < 1`, or :obj:`edge_dim` is set for a
            layer that takes no :obj:`edge_dim`.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})`,
          edge indices :math:`(2, |\mathcal{E}|)`,
          edge features :math:`(|\mathcal{E}|, D)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})`, or
          the seed nodes' :math:`(B, F_{out})` hop by hop (see
          :meth:`forward`)

    Example:
        >>> model = AttentionNet(1433, 8, 7, heads=8)
        >>> x, edge_index = torch.randn(4, 1433), torch.tensor([[0, 1], [1, 2]])
        >>> model(x, edge_index).shape
        torch.Size([4, 7])
    """
    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        num_layers: int = 2,
        conv: Callable[..., MessagePassing] = EdgeGATConv,
        heads: int = 8,
        out_heads: int = 1,
        dropout: float = 0.6,
        act: Union[str, Callable, None] = 'elu',
        residual: bool = False,
        norm: Union[str, Callable, None] = None,
        norm_kwargs: Optional[Dict[str, Any]] = None,
        edge_dim: Optional[int] = None,
        conv_kwargs: Optional[Dict[str, Any]] = None,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"'num_layers' ({num_layers}) must be at least 1")

        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.num_layers = num_layers
        self.heads = heads
        self.out_heads = out_heads
        self.dropout = dropout
        self.residual = residual
        self.edge_dim = edge_dim
        self.act = activation_resolver(act) if act is not None else Identity()

        candidates = dict(concat=True, heads=heads, dropout=dropout)
        if edge_dim is not None:
            candidates['edge_dim'] = edge_dim
        kwargs = accepted_kwargs(conv, candidates)
        if edge_dim is not None and 'edge_dim' not in kwargs:
            raise ValueError(f"'edge_dim' ({edge_dim}) is set but the conv "
                             f"({getattr(conv, '__name__', conv)}) takes no "
                             f"'edge_dim'; use a layer with edge features "
                             f"or drop 'edge_dim'")
        hidden_width = hidden_channels
        if 'heads' in kwargs and 'concat' in kwargs:
            hidden_width = hidden_channels * heads

        self.convs = ModuleList()
        self.norms = ModuleList()
        self.skips = ModuleList()
        channels = in_channels
        for i in range(num_layers):
            last = i == num_layers - 1
            layer_kwargs = dict(kwargs, **(conv_kwargs or {}))
            if last and 'heads' in kwargs:
                layer_kwargs['heads'] = out_heads
            if last and 'concat' in kwargs:
                layer_kwargs['concat'] = False
            self.convs.append(conv(channels,
                                   out_channels if last else hidden_channels,
                                   **layer_kwargs))
            out = out_channels if last else hidden_width
            if not last and norm is not None:
                self.norms.append(
                    normalization_resolver(norm, out, **(norm_kwargs or {})))
            else:
                self.norms.append(Identity())
            if residual and channels == out:
                self.skips.append(Identity())
            elif residual:
                self.skips.append(Linear(channels, out, bias=False,
                                         weight_initializer='glorot'))
            channels = out

    def reset_parameters(self):
        r"""Resets all learnable parameters of the module."""
        for module in [*self.convs, *self.norms, *self.skips]:
            if hasattr(module, 'reset_parameters'):
                module.reset_parameters()

    def forward(
        self,
        x: Tensor,
        edge_index: Adj,
        edge_attr: OptTensor = None,
        num_sampled_nodes_per_hop: Optional[List[int]] = None,
        num_sampled_edges_per_hop: Optional[List[int]] = None,
    ) -> Tensor:
        r"""Runs the stack.

        Args:
            x (torch.Tensor): The node features.
            edge_index (torch.Tensor or SparseTensor): The edge indices.
            edge_attr (torch.Tensor, optional): The edge features, passed to
                every layer when :obj:`edge_dim` is set. (default: :obj:`None`)
            num_sampled_nodes_per_hop (List[int], optional): With
                :obj:`num_sampled_edges_per_hop`, the hop sizes of a
                :class:`~torch_geometric.loader.NeighborLoader` mini-batch
                (its :obj:`num_sampled_nodes` and :obj:`num_sampled_edges`):
                layer :math:`\ell` then runs bipartite, from the nodes within
                :math:`L - \ell` hops of the seed nodes to those within
                :math:`L - \ell - 1`, over the edges of the first
                :math:`L - \ell` hops, and only the seed nodes' outputs are
                returned, :obj:`[batch_size, out_channels]`: those of the
                full-graph forward when every in-edge was sampled.
                (default: :obj:`None`)
            num_sampled_edges_per_hop (List[int], optional): See above.
                (default: :obj:`None`)

        Raises:
            ValueError: If only one of the hop sizes is given, the
                mini-batch has fewer hops than the stack has layers, or
                :obj:`edge_index` is not a tensor then.
        """
        tensors = {} if self.edge_dim is None else {'edge_attr': edge_attr}
        return self._run(x, edge_index, tensors, num_sampled_nodes_per_hop,
                         num_sampled_edges_per_hop)

    def _run(self, x: Tensor, edge_index: Adj, tensors: Dict[str, Any],
             num_nodes: Optional[List[int]],
             num_edges: Optional[List[int]]) -> Tensor:
        r"""The stack over the whole graph, or hop by hop (see
        :meth:`forward`); :obj:`tensors` (e.g. :obj:`edge_attr`, one row
        per edge) go to every layer by keyword."""
        self._check_hops(edge_index, num_nodes, num_edges)
        for i, conv in enumerate(self.convs):
            x = torch.nn.functional.dropout(x, p=self.dropout,
                                            training=self.training)
            x_dst, inputs, layer_edges, layer_tensors = x, x, edge_index, tensors
            if num_nodes is not None:
                hops = self.num_layers - i  # this layer's source hops
                x_dst = x[:sum(num_nodes[:hops])]  # [N_dst, F]
                inputs = (x, x_dst)
                cut = sum(num_edges[:hops])
                layer_edges = edge_index[:, :cut]  # [2, E_layer]
                layer_tensors = {key: value[:cut]
                                 for key, value in tensors.items()}
            h = self.norms[i](conv(inputs, layer_edges, **layer_tensors))
            if self.residual:
                h = h + self.skips[i](x_dst)
            x = h if i == self.num_layers - 1 else self.act(h)
        return x

    def _check_hops(self, edge_index: Adj, num_nodes: Optional[List[int]],
                    num_edges: Optional[List[int]]) -> None:
        if (num_nodes is None) != (num_edges is None):
            raise ValueError(
                "'num_sampled_nodes_per_hop' and 'num_sampled_edges_per_hop' "
                "go together; pass both (a NeighborLoader batch's "
                "'num_sampled_nodes' and 'num_sampled_edges') or neither")
        if num_edges is not None and not isinstance(edge_index, Tensor):
            raise ValueError(
                f"hop by hop, 'edge_index' must be a [2, E] tensor in hop "
                f"order, as NeighborLoader gives it (got "
                f"{type(edge_index).__name__})")
        if num_edges is not None and len(num_edges) < self.num_layers:
            raise ValueError(
                f"the mini-batch has {len(num_edges)} hop(s) "
                f"('num_sampled_edges_per_hop' = {list(num_edges)}) but the "
                f"model has {self.num_layers} layers; sample as many hops as "
                f"layers ('num_neighbors' with {self.num_layers} entries)")

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels}, num_layers={self.num_layers}, '
                f'conv={self.convs[0].__class__.__name__}, '
                f'heads={self.heads})')
