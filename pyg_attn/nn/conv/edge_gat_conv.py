from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import glorot, zeros

from pyg_attn.functional import edge_softmax, gather_scatter
from pyg_attn.nn.conv._validate import (as_pair, check_channels,
                                        check_dropout, check_edge_attr,
                                        check_edge_index, check_features,
                                        check_heads)


class EdgeGATConv(MessagePassing):
    r"""Graph attention with edge features in the logit and, optionally, in
    the message (seed §2.1; `"Graph Attention Networks"
    <https://arxiv.org/abs/1710.10903>`_ with PyG's ``edge_dim`` extension).

    .. math::
        e_{ij} = \operatorname{LeakyReLU}\left(\mathbf{a}^\top
        [\mathbf{W} \mathbf{x}_i \,\|\, \mathbf{W} \mathbf{x}_j \,\|\,
        \mathbf{W}_e \mathbf{e}_{ij}]\right), \qquad
        \alpha_{ij} = \operatorname{softmax}_{j \in \mathcal{N}(i) \cup \{i\}}
        e_{ij}

    .. math::
        \mathbf{x}'_i = \sum_{j} \alpha_{ij} \mathbf{W} \mathbf{x}_j
        \quad \text{or, with } \texttt{edge\_in\_message=True}, \quad
        \mathbf{x}'_i = \sum_{j} \alpha_{ij} (\mathbf{W} \mathbf{x}_j +
        \mathbf{W}'_e \mathbf{e}_{ij})

    per head, plus an optional residual projection and a bias.  With
    ``edge_in_message`` the edge features (an HNSW distance or layer, say)
    become learnable features of the message, not only of the logit.

    Parameter names, defaults and initialisation are those of PyG's
    :class:`~torch_geometric.nn.conv.GATConv`, so a ``GATConv(edge_dim=…)``
    state_dict loads and gives the same function.  Self-loops are handled
    without dynamic shapes: one loop per node is appended and existing
    self-loops are masked out of the softmax (weight 0) instead of being
    removed, which is what ``GATConv`` computes, with no ``nonzero`` and so no
    graph break under ``torch.compile``.  The returned ``edge_index`` is the
    input's followed by the added loops; masked loops have weight 0.  The edge
    term of the logit is folded into one ``[D, H]`` vector
    (:math:`\mathbf{a}_e^\top \mathbf{W}_e \mathbf{e} =
    (\mathbf{W}_e^\top \mathbf{a}_e)^\top \mathbf{e}`) and aggregation is a
    fused gather–scatter, so no ``[E, H, C]`` tensor is kept for backward.

    Args:
        in_channels (int or tuple): input size, ``(src, dst)`` sizes for
            bipartite input (separate ``lin_src``/``lin_dst``), or -1.
        out_channels (int): channels per head (C).
        heads (int, optional): number of heads H. (default: :obj:`1`)
        concat (bool, optional): concatenate heads, else average them.
            (default: :obj:`True`)
        negative_slope (float, optional): LeakyReLU slope.
            (default: :obj:`0.2`)
        dropout (float, optional): dropout on the attention weights.
            (default: :obj:`0.`)
        add_self_loops (bool, optional): attend to oneself (for the first
            ``min(N_src, N_dst)`` nodes, as ``GATConv``).
            (default: :obj:`True`)
        edge_dim (int, optional): edge feature size D. (default: :obj:`None`)
        fill_value (float or Tensor or str, optional): edge features of the
            added loops: a value, or ``'mean'``/``'add'``/``'max'``/``'min'``/
            ``'mul'`` of the node's other incoming edge features.
            (default: :obj:`'mean'`)
        bias (bool, optional): learn an output bias. (default: :obj:`True`)
        residual (bool, optional): add a projection of the destination
            features. (default: :obj:`False`)
        edge_in_message (bool, optional): add :math:`\mathbf{W}'_e
            \mathbf{e}_{ij}` (``lin_edge_message``) to each message; needs
            ``edge_dim``. (default: :obj:`False`)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})` or
          :math:`((|\mathcal{V}_s|, F_s), (|\mathcal{V}_t|, F_t))`, edge indices
          :math:`(2, |\mathcal{E}|)`, edge features
          :math:`(|\mathcal{E}|, D)` *(optional)*
        - **output:** :math:`(|\mathcal{V}_t|, H \cdot C)` or
          :math:`(|\mathcal{V}_t|, C)` if ``concat=False``; with
          ``return_attention_weights=True`` also
          :math:`((2, |\mathcal{E}| + L), (|\mathcal{E}| + L, H))`,
          :math:`L` the number of added loops

    Raises:
        ValueError: ``heads < 1``; ``edge_in_message`` without ``edge_dim``;
            an unknown ``fill_value``; bad ``edge_index`` (shape, dtype,
            range); ``edge_attr`` of the wrong shape or given without
            ``edge_dim``; features of a width other than ``in_channels``.

    Example::

        >>> conv = EdgeGATConv(16, 8, heads=4, edge_dim=1, edge_in_message=True)
        >>> x, edge_index = torch.randn(5, 16), torch.tensor([[0, 1, 2], [1, 2, 3]])
        >>> conv(x, edge_index, torch.rand(3, 1)).shape
        torch.Size([5, 32])
    """
    _FILL_REDUCE = {'add': 'sum', 'sum': 'sum', 'mean': 'mean', 'max': 'amax',
                    'min': 'amin', 'mul': 'prod'}

    def __init__(
        self,
        in_channels: Union[int, Tuple[int, int]],
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        negative_slope: float = 0.2,
        dropout: float = 0.0,
        add_self_loops: bool = True,
        edge_dim: Optional[int] = None,
        fill_value: Union[float, Tensor, str] = 'mean',
        bias: bool = True,
        residual: bool = False,
        edge_in_message: bool = False,
        **kwargs,
    ):
        check_heads(heads)
        check_channels(out_channels)
        check_dropout(dropout)
        if edge_in_message and edge_dim is None:
            raise ValueError("'edge_in_message=True' needs 'edge_dim' (the "
                             "edge feature size); set edge_dim")
        if isinstance(fill_value, str) and fill_value not in self._FILL_REDUCE:
            raise ValueError(f"'fill_value' ({fill_value!r}) must be a number, "
                             f"a tensor or one of {sorted(self._FILL_REDUCE)}")
        kwargs.setdefault('aggr', 'add')
        super().__init__(node_dim=0, **kwargs)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.concat = concat
        self.negative_slope = negative_slope
        self.dropout = dropout
        self.add_self_loops = add_self_loops
        self.edge_dim = edge_dim
        self.fill_value = fill_value
        self.residual = residual
        self.edge_in_message = edge_in_message

        self.lin = self.lin_src = self.lin_dst = None
        if isinstance(in_channels, int):
            self.lin = Linear(in_channels, heads * out_channels, bias=False,
                              weight_initializer='glorot')
        else:
            self.lin_src = Linear(in_channels[0], heads * out_channels, False,
                                  weight_initializer='glorot')
            self.lin_dst = Linear(in_channels[1], heads * out_channels, False,
                                  weight_initializer='glorot')
        self.att_src = Parameter(torch.empty(1, heads, out_channels))
        self.att_dst = Parameter(torch.empty(1, heads, out_channels))
        self.lin_edge = self.lin_edge_message = None
        if edge_dim is not None:
            self.lin_edge = Linear(edge_dim, heads * out_channels, bias=False,
                                   weight_initializer='glorot')
            self.att_edge = Parameter(torch.empty(1, heads, out_channels))
        else:
            self.register_parameter('att_edge', None)
        if edge_in_message:
            self.lin_edge_message = Linear(edge_dim, heads * out_channels,
                                           bias=False,
                                           weight_initializer='glorot')
        total_out_channels = out_channels * (heads if concat else 1)
        if residual:
            self.res = Linear(
                in_channels if isinstance(in_channels, int) else
                in_channels[1], total_out_channels, bias=False,
                weight_initializer='glorot')
        else:
            self.register_parameter('res', None)
        if bias:
            self.bias = Parameter(torch.empty(total_out_channels))
        else:
            self.register_parameter('bias', None)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        for lin in (self.lin, self.lin_src, self.lin_dst, self.lin_edge,
                    self.lin_edge_message, self.res):
            if lin is not None:
                lin.reset_parameters()
        glorot(self.att_src)
        glorot(self.att_dst)
        glorot(self.att_edge)
        zeros(self.bias)

    def forward(
        self,
        x: Union[Tensor, Tuple[Tensor, Tensor]],
        edge_index: Tensor,
        edge_attr: Optional[Tensor] = None,
        return_attention_weights: bool = False,
    ) -> Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor]]]:
        """Returns ``out``, or ``(out, (edge_index, alpha))`` with
        ``return_attention_weights=True`` (``alpha`` before dropout, the
        ``edge_index`` with the added self-loops)."""
        H, C = self.heads, self.out_channels
        x_src, x_dst = as_pair(x)
        check_features((x_src, x_dst), self.in_channels)
        check_edge_index(edge_index, x_src.size(0), x_dst.size(0))
        edge_attr = check_edge_attr(edge_attr, edge_index.size(1),
                                    self.edge_dim)
        num_dst = x_dst.size(0)

        res = self.res(x_dst) if self.res is not None else None
        if self.lin is not None:
            h_src = self.lin(x_src).view(-1, H, C)
            h_dst = h_src if x_src is x_dst else self.lin(x_dst).view(-1, H, C)
        else:
            h_src = self.lin_src(x_src).view(-1, H, C)
            h_dst = self.lin_dst(x_dst).view(-1, H, C)
        score_src = (h_src * self.att_src).sum(dim=-1)  # [N_src, H]
        score_dst = (h_dst * self.att_dst).sum(dim=-1)  # [N_dst, H]

        masked = None
        if self.add_self_loops:
            edge_index, edge_attr, masked = self._with_self_loops(
                edge_index, edge_attr, min(x_src.size(0), num_dst))
        src, dst = edge_index[0], edge_index[1]

        logits = score_src.index_select(0, src) + score_dst.index_select(
            0, dst)  # [E, H]
        if edge_attr is not None:
            w_edge = self.lin_edge.weight.view(H, C, -1)  # [H, C, D]
            att_edge = torch.einsum('hcd,hc->dh', w_edge, self.att_edge[0])
            logits = logits + edge_attr @ att_edge  # [E, H]
        logits = F.leaky_relu(logits, self.negative_slope)
        if masked is not None:
            logits = logits.masked_fill(masked.unsqueeze(-1), float('-inf'))
        alpha = edge_softmax(logits, dst, num_dst)  # [E, H]
        weights = F.dropout(alpha, p=self.dropout, training=self.training)

        out = gather_scatter(weights, h_src, src, dst, num_dst)  # [N, H, C]
        if self.lin_edge_message is not None and edge_attr is not None:
            w_msg = self.lin_edge_message.weight.view(H, C, -1)  # [H, C, D]
            edge_sum = gather_scatter(weights, edge_attr.unsqueeze(1), None,
                                      dst, num_dst)  # [N, H, D]
            out = out + torch.einsum('nhd,hcd->nhc', edge_sum, w_msg)

        out = out.reshape(-1, H * C) if self.concat else out.mean(dim=1)
        if res is not None:
            out = out + res
        if self.bias is not None:
            out = out + self.bias
        if return_attention_weights:
            return out, (edge_index, alpha)
        return out

    def _with_self_loops(
        self, edge_index: Tensor, edge_attr: Optional[Tensor], num_loops: int
    ) -> Tuple[Tensor, Optional[Tensor], Tensor]:
        """Appends a loop to each of the first ``num_loops`` nodes and marks
        the input's own self-loops for masking (static shapes: no
        ``nonzero``)."""
        loop = torch.arange(num_loops, device=edge_index.device,
                            dtype=edge_index.dtype)
        is_loop = edge_index[0] == edge_index[1]  # [E]
        if edge_attr is not None:
            edge_attr = torch.cat([edge_attr, self._loop_attr(
                edge_attr, edge_index[1], is_loop, num_loops)])
        masked = torch.cat([is_loop, is_loop.new_zeros(num_loops)])
        edge_index = torch.cat([edge_index, torch.stack([loop, loop])], dim=1)
        return edge_index, edge_attr, masked

    def _loop_attr(self, edge_attr: Tensor, dst: Tensor, is_loop: Tensor,
                   num_loops: int) -> Tensor:
        """Features of the added loops: ``fill_value``, or a reduction of
        each node's incoming non-loop edge features (0 where there are
        none), as PyG's ``add_self_loops``."""
        shape = (num_loops, edge_attr.size(1))
        if not isinstance(self.fill_value, str):
            fill = torch.as_tensor(self.fill_value, dtype=edge_attr.dtype,
                                   device=edge_attr.device)
            return fill.expand(shape)
        # loops are masked out by routing them to a dropped extra row
        index = torch.where(is_loop | (dst >= num_loops), num_loops, dst)
        out = edge_attr.new_zeros((num_loops + 1, edge_attr.size(1)))
        out = out.scatter_reduce(
            0, index.view(-1, 1).expand_as(edge_attr), edge_attr,
            reduce=self._FILL_REDUCE[self.fill_value], include_self=False)
        return out[:num_loops]

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels}, heads={self.heads})')
