import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear

from pyg_attn.functional import edge_softmax, gather_dot, gather_scatter
from pyg_attn.nn.conv._validate import (
    check_channels,
    check_dropout,
    check_heads,
    check_inputs,
)


class DotProductAttentionConv(MessagePassing):
    r"""Multi-head scaled dot-product attention over each node's incoming
    edges, with optional edge features in keys and values (the "current"
    attention of the seed; the operator of `"Masked Label Prediction"
    <https://arxiv.org/abs/2009.03509>`_, PyG's
    :class:`~torch_geometric.nn.conv.TransformerConv`).

    .. math::
        \alpha_{ij} = \operatorname{softmax}_{j \in \mathcal{N}(i)}
        \frac{(\mathbf{W}_q \mathbf{x}_i)^\top
        (\mathbf{W}_k \mathbf{x}_j + \mathbf{W}_e \mathbf{e}_{ij})}{\sqrt{C}},
        \qquad
        \mathbf{x}'_i = \mathbf{W}_s \mathbf{x}_i + \sum_{j \in \mathcal{N}(i)}
        \alpha_{ij} (\mathbf{W}_v \mathbf{x}_j + \mathbf{W}_e \mathbf{e}_{ij})

    per head, with an optional gate
    :math:`\beta_i = \sigma(\mathbf{w}_\beta^\top [\mathbf{W}_s \mathbf{x}_i,
    \mathbf{m}_i, \mathbf{W}_s \mathbf{x}_i - \mathbf{m}_i])` mixing skip and
    aggregate as :math:`\beta_i \mathbf{W}_s \mathbf{x}_i + (1 - \beta_i)
    \mathbf{m}_i`.

    Parameter names and initialisation are those of ``TransformerConv``, so
    ``conv.load_state_dict(transformer_conv.state_dict())`` gives the same
    function.  The computation differs: logits are a fused gather–dot
    (SDDMM) and aggregation a fused gather–scatter (SpMM) that keep only
    node-sized tensors for backward, and the edge term is applied through
    :math:`\mathbf{W}_e` on the node side
    (:math:`\mathbf{q}_i^\top \mathbf{W}_e \mathbf{e}_{ij} =
    (\mathbf{W}_e^\top \mathbf{q}_i)^\top \mathbf{e}_{ij}`, and
    :math:`\sum_j \alpha_{ij} \mathbf{W}_e \mathbf{e}_{ij} = \mathbf{W}_e
    \sum_j \alpha_{ij} \mathbf{e}_{ij}`), so no ``[E, H, C]`` tensor is kept
    alive.  That is why :meth:`forward` does not go through ``propagate``.

    Args:
        in_channels (int or tuple): input size, ``(src, dst)`` sizes for
            bipartite input, or -1 to infer it at the first call.
        out_channels (int): channels per head (C).
        heads (int, optional): number of heads H. (default: :obj:`1`)
        concat (bool, optional): concatenate heads, else average them.
            (default: :obj:`True`)
        beta (bool, optional): gate between skip and aggregate.
            (default: :obj:`False`)
        dropout (float, optional): dropout on the attention weights.
            (default: :obj:`0.`)
        edge_dim (int, optional): edge feature size. (default: :obj:`None`)
        bias (bool, optional): biases of the projections.
            (default: :obj:`True`)
        root_weight (bool, optional): add the skip projection
            :math:`\mathbf{W}_s \mathbf{x}_i`. (default: :obj:`True`)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})` or
          :math:`((|\mathcal{V}_s|, F_s), (|\mathcal{V}_t|, F_t))`, edge indices
          :math:`(2, |\mathcal{E}|)`, edge features
          :math:`(|\mathcal{E}|, D)` *(optional)*
        - **output:** :math:`(|\mathcal{V}_t|, H \cdot C)` or
          :math:`(|\mathcal{V}_t|, C)` if ``concat=False``; with
          ``return_attention_weights=True`` also
          :math:`((2, |\mathcal{E}|), (|\mathcal{E}|, H))`

    Raises:
        ValueError: ``heads < 1``; bad ``edge_index`` (shape, dtype, range);
            ``edge_attr`` of the wrong shape, given without ``edge_dim`` or
            missing with it; features of a width other than ``in_channels``.

    Example::

        >>> conv = DotProductAttentionConv(16, 8, heads=4, edge_dim=3)
        >>> x, edge_index = torch.randn(5, 16), torch.tensor([[0, 1, 2], [1, 2, 3]])
        >>> conv(x, edge_index, torch.randn(3, 3)).shape
        torch.Size([5, 32])
    """
    def __init__(
        self,
        in_channels: Union[int, Tuple[int, int]],
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        beta: bool = False,
        dropout: float = 0.,
        edge_dim: Optional[int] = None,
        bias: bool = True,
        root_weight: bool = True,
        **kwargs,
    ):
        check_heads(heads)
        check_channels(out_channels)
        check_dropout(dropout)
        kwargs.setdefault('aggr', 'add')
        super().__init__(node_dim=0, **kwargs)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.beta = beta and root_weight
        self.root_weight = root_weight
        self.concat = concat
        self.dropout = dropout
        self.edge_dim = edge_dim

        src_channels, dst_channels = (in_channels, in_channels) if isinstance(
            in_channels, int) else in_channels
        self.lin_key = Linear(src_channels, heads * out_channels, bias=bias)
        self.lin_query = Linear(dst_channels, heads * out_channels, bias=bias)
        self.lin_value = Linear(src_channels, heads * out_channels, bias=bias)
        if edge_dim is not None:
            self.lin_edge = Linear(edge_dim, heads * out_channels, bias=False)
        else:
            self.register_parameter('lin_edge', None)
        out_size = heads * out_channels if concat else out_channels
        self.lin_skip = Linear(dst_channels, out_size, bias=bias)
        if self.beta:
            self.lin_beta = Linear(3 * out_size, 1, bias=False)
        else:
            self.register_parameter('lin_beta', None)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        self.lin_key.reset_parameters()
        self.lin_query.reset_parameters()
        self.lin_value.reset_parameters()
        if self.lin_edge is not None:
            self.lin_edge.reset_parameters()
        self.lin_skip.reset_parameters()
        if self.lin_beta is not None:
            self.lin_beta.reset_parameters()

    def forward(
        self,
        x: Union[Tensor, Tuple[Tensor, Tensor]],
        edge_index: Tensor,
        edge_attr: Optional[Tensor] = None,
        return_attention_weights: bool = False,
    ) -> Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor]]]:
        """Returns ``out``, or ``(out, (edge_index, alpha))`` with
        ``return_attention_weights=True`` (``alpha`` before dropout)."""
        H, C = self.heads, self.out_channels
        x_src, x_dst, edge_attr = check_inputs(x, edge_index, edge_attr,
                                               self.in_channels, self.edge_dim)
        query = self.lin_query(x_dst).view(-1, H, C)
        key = self.lin_key(x_src).view(-1, H, C)
        value = self.lin_value(x_src).view(-1, H, C)
        out, alpha = self._attend(query, key, value, edge_attr, edge_index,
                                  x_dst.size(0), return_attention_weights)

        out = self._combine_heads(out, x_dst)
        if return_attention_weights:
            return out, (edge_index, alpha)
        return out

    def _combine_heads(self, out: Tensor, x_dst: Tensor) -> Tensor:
        """Concatenates or averages the ``[N, H, C]`` heads, then adds the
        (gated) skip projection of ``x_dst``."""
        H, C = self.heads, self.out_channels
        out = out.reshape(-1, H * C) if self.concat else out.mean(dim=1)
        if self.root_weight:
            x_r = self.lin_skip(x_dst)
            if self.lin_beta is not None:
                beta = self.lin_beta(torch.cat([out, x_r, out - x_r], dim=-1))
                beta = beta.sigmoid()
                out = beta * x_r + (1 - beta) * out
            else:
                out = out + x_r
        return out

    def _attend(self, query: Tensor, key: Tensor, value: Tensor,
                edge_attr: Optional[Tensor], edge_index: Tensor, num_dst: int,
                need_weights: bool) -> Tuple[Tensor, Optional[Tensor]]:
        """``[N, H, C]`` aggregates and the ``[E, H]`` weights (before
        dropout) from projected queries, keys and values."""
        H, C = self.heads, self.out_channels
        src, dst = edge_index[0], edge_index[1]
        logits = gather_dot(query, key, dst, src)  # [E, H]
        if edge_attr is not None:
            w_edge = self.lin_edge.weight.view(H, C, -1)  # [H, C, D]
            query_edge = torch.einsum('nhc,hcd->nhd', query, w_edge)
            logits = logits + gather_dot(query_edge, edge_attr.unsqueeze(1),
                                         dst, None)  # [E, H]
        alpha = edge_softmax(logits / math.sqrt(C), dst, num_dst)  # [E, H]
        weights = F.dropout(alpha, p=self.dropout, training=self.training)
        return self._aggregate(weights, value, edge_attr, edge_index,
                               num_dst), alpha

    def _aggregate(self, weights: Tensor, value: Tensor,
                   edge_attr: Optional[Tensor], edge_index: Tensor,
                   num_dst: int) -> Tensor:
        """``[N, H, C]`` sums of ``[E, H]`` weights times the edges' values
        ``v_j + W_e e_ij``, the edge term summed as ``[N, H, D]`` features
        and projected after (no ``[E, H, C]`` tensor)."""
        H, C = self.heads, self.out_channels
        src, dst = edge_index[0], edge_index[1]
        out = gather_scatter(weights, value, src, dst, num_dst)  # [N, H, C]
        if edge_attr is not None:
            w_edge = self.lin_edge.weight.view(H, C, -1)  # [H, C, D]
            edge_sum = gather_scatter(weights, edge_attr.unsqueeze(1), None,
                                      dst, num_dst)  # [N, H, D]
            out = out + torch.einsum('nhd,hcd->nhc', edge_sum, w_edge)
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels}, heads={self.heads})')
