import math
from typing import Optional, Sequence, Tuple, Union

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


def check_edge_type(edge_type: Optional[Tensor], num_edges: int,
                    num_types: Optional[int]) -> None:
    """``edge_type`` present, integer, ``[E]``; in ``[0, num_types)`` (or
    ``>= 0`` when ``num_types`` is ``None``), checked in eager mode only."""
    if edge_type is None:
        raise ValueError("'edge_type' is required: the type of each edge "
                         "picks its partition (e.g. the HNSW layer from "
                         "pyg_attn.transforms.HNSWGraph); pass "
                         "torch.zeros(num_edges, dtype=torch.long) to make "
                         "every edge local")
    if not isinstance(edge_type, Tensor) or edge_type.is_floating_point() or \
            edge_type.is_complex() or edge_type.dtype == torch.bool:
        dtype = edge_type.dtype if isinstance(edge_type, Tensor) else type(
            edge_type).__name__
        raise ValueError(f"'edge_type' must be an integer tensor, got "
                         f"{dtype}; use edge_type.long()")
    if edge_type.dim() != 1 or edge_type.size(0) != num_edges:
        raise ValueError(f"'edge_type' has shape {tuple(edge_type.shape)} but "
                         f"'edge_index' has {num_edges} edges; pass one type "
                         "per edge, shape [num_edges]")
    if torch.compiler.is_compiling() or edge_type.numel() == 0:
        return
    lo, hi = int(edge_type.min()), int(edge_type.max())
    if lo < 0:
        raise ValueError(f"'edge_type' has type {lo}; types must be >= 0")
    if num_types is not None and hi >= num_types:
        raise ValueError(f"'edge_type' has type {hi} but 'partition_map' "
                         f"covers types [0, {num_types}); extend "
                         "'partition_map' to every type")


class LocalGlobalAttentionConv(MessagePassing):
    r"""Sparse local + global attention (Longformer's pattern on a graph,
    `"Longformer" <https://arxiv.org/abs/2004.05150>`_; seed §4): edges are
    partitioned by type — local edges (HNSW layer 0) and global edges (upper
    layers) — each partition runs its own multi-head dot-product attention
    with its own projections, and a learned gate mixes the partitions per
    node.

    With partition :math:`p(e)` of each edge and
    :math:`\mathcal{N}_p(i)` the sources of the partition-:math:`p` edges
    into :math:`i`:

    .. math::
        \alpha_{ij} = \operatorname{softmax}_{j \in \mathcal{N}_{p}(i)}
        \frac{(\mathbf{W}^p_q \mathbf{x}_i)^\top
        (\mathbf{W}^p_k \mathbf{x}_j + \mathbf{W}^p_e \mathbf{e}_{ij})}
        {\sqrt{C}},
        \qquad
        \mathbf{h}^p_i = \sum_{j \in \mathcal{N}_p(i)} \alpha_{ij}
        (\mathbf{W}^p_v \mathbf{x}_j + \mathbf{W}^p_e \mathbf{e}_{ij}),

    per head, and the output

    .. math::
        \mathbf{x}'_i = \mathbf{W}_s \mathbf{x}_i + \sum_{p} g^p_i
        \mathbf{h}^p_i, \qquad
        \mathbf{g}_i = \operatorname{softmax}\big(\mathbf{W}_g
        [\mathbf{h}^0_i \,\|\, \cdots \,\|\, \mathbf{h}^{P-1}_i], 0\big),

    the gate logits :math:`\mathbf{W}_g [\cdot] \in \mathbb{R}^{P-1}` padded
    with a fixed 0 for the last partition.  For the default two partitions
    this is the seed's gate :math:`g_i = \sigma(\mathbf{w}_g^\top
    [\mathbf{h}^{\text{local}}_i \| \mathbf{h}^{\text{global}}_i])`,
    :math:`\mathbf{x}'_i = \mathbf{W}_s \mathbf{x}_i +
    g_i \mathbf{h}^{\text{local}}_i + (1 - g_i) \mathbf{h}^{\text{global}}_i`
    (a softmax over two logits :math:`(z, 0)` is :math:`(\sigma(z),
    1 - \sigma(z))`); for more partitions it is a softmax gate with no
    redundant logit.  A node with no edges of a partition gets
    :math:`\mathbf{h}^p_i = \mathbf{0}` from it (never NaN); the gate still
    sees that zero.

    All partitions are computed in one pass over the edges: the projections
    give ``[N, P, H, C]`` tensors, each edge gathers the row of its own
    partition (index ``node * P + p``), and a single scatter softmax groups
    edges by ``(destination, partition)``.  There is no boolean indexing of
    edges (so the layer traces under ``torch.compile(fullgraph=True)``) and,
    as in :class:`DotProductAttentionConv`, no ``[E, H, C]`` tensor is kept:
    logits are a fused gather–dot and aggregation a fused gather–scatter.
    The branches are therefore built inside the layer rather than passed as
    modules (STYLE principle 8): separate branch modules would need one pass
    and one boolean selection of edges per partition.

    Args:
        in_channels (int or tuple): input size, ``(src, dst)`` sizes for
            bipartite input, or -1 to infer it at the first call.
        out_channels (int): channels per head (C).
        heads (int, optional): number of heads H. (default: :obj:`1`)
        concat (bool, optional): concatenate heads, else average them.
            (default: :obj:`True`)
        num_partitions (int, optional): number of partitions P >= 1.
            (default: :obj:`2`)
        partition_map (sequence of int, optional): ``partition_map[t]`` is the
            partition of edge type ``t``; edge types must then lie in
            ``[0, len(partition_map))``.  By default type ``t`` goes to
            partition ``min(t, P - 1)``: with P = 2, HNSW layer 0 is local
            and every upper layer global. (default: :obj:`None`)
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
          :math:`(2, |\mathcal{E}|)`, edge types :math:`(|\mathcal{E}|)`,
          edge features :math:`(|\mathcal{E}|, D)` *(optional)*
        - **output:** :math:`(|\mathcal{V}_t|, H \cdot C)` or
          :math:`(|\mathcal{V}_t|, C)` if ``concat=False``; with
          ``return_attention_weights=True`` also
          :math:`((2, |\mathcal{E}|), (|\mathcal{E}|, H))`, the weights
          summing to 1 within each (destination, partition) that has edges

    Raises:
        ValueError: ``heads < 1``, ``num_partitions < 1``, a
            ``partition_map`` entry outside ``[0, num_partitions)``;
            ``edge_type`` missing, not an integer ``[E]`` tensor, or out of
            range; and everything :class:`DotProductAttentionConv` raises.

    Example::

        >>> conv = LocalGlobalAttentionConv(16, 8, heads=4)
        >>> x = torch.randn(5, 16)
        >>> edge_index = torch.tensor([[0, 1, 2, 4], [1, 2, 3, 3]])
        >>> edge_type = torch.tensor([0, 0, 0, 1])  # one global edge
        >>> conv(x, edge_index, edge_type).shape
        torch.Size([5, 32])
    """
    def __init__(
        self,
        in_channels: Union[int, Tuple[int, int]],
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        num_partitions: int = 2,
        partition_map: Optional[Sequence[int]] = None,
        dropout: float = 0.,
        edge_dim: Optional[int] = None,
        bias: bool = True,
        root_weight: bool = True,
        **kwargs,
    ):
        check_heads(heads)
        check_channels(out_channels)
        check_dropout(dropout)
        if not isinstance(num_partitions, int) or num_partitions < 1:
            raise ValueError(f"'num_partitions' ({num_partitions}) must be an "
                             "integer >= 1")
        if partition_map is not None:
            partition_map = [int(p) for p in partition_map]
            bad = [p for p in partition_map if not 0 <= p < num_partitions]
            if not partition_map or bad:
                raise ValueError(
                    f"'partition_map' ({partition_map}) must be a non-empty "
                    f"sequence of partitions in [0, {num_partitions}); "
                    "raise 'num_partitions' or fix the entries")
        kwargs.setdefault('aggr', 'add')
        super().__init__(node_dim=0, **kwargs)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.concat = concat
        self.num_partitions = num_partitions
        self.dropout = dropout
        self.edge_dim = edge_dim
        self.root_weight = root_weight
        self.num_types = None if partition_map is None else len(partition_map)
        if partition_map is None:
            self.register_buffer('partition_map', None)
        else:
            self.register_buffer('partition_map', torch.tensor(partition_map),
                                 persistent=False)

        P, H, C = num_partitions, heads, out_channels
        src_channels, dst_channels = (in_channels, in_channels) if isinstance(
            in_channels, int) else in_channels
        self.lin_key = Linear(src_channels, P * H * C, bias=bias)
        self.lin_query = Linear(dst_channels, P * H * C, bias=bias)
        self.lin_value = Linear(src_channels, P * H * C, bias=bias)
        if edge_dim is not None:
            self.lin_edge = Linear(edge_dim, P * H * C, bias=False)
        else:
            self.register_parameter('lin_edge', None)
        if P > 1:
            self.lin_gate = Linear(P * H * C, P - 1, bias=True)
        else:
            self.register_parameter('lin_gate', None)
        if root_weight:
            out_size = H * C if concat else C
            self.lin_skip = Linear(dst_channels, out_size, bias=bias)
        else:
            self.register_parameter('lin_skip', None)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        self.lin_key.reset_parameters()
        self.lin_query.reset_parameters()
        self.lin_value.reset_parameters()
        if self.lin_edge is not None:
            self.lin_edge.reset_parameters()
        if self.lin_gate is not None:
            self.lin_gate.reset_parameters()
        if self.lin_skip is not None:
            self.lin_skip.reset_parameters()

    def partition(self, edge_type: Tensor) -> Tensor:
        """The partition of each edge ``[E]`` from its type."""
        if self.partition_map is None:
            return edge_type.long().clamp(max=self.num_partitions - 1)
        return self.partition_map[edge_type.long()]

    def forward(
        self,
        x: Union[Tensor, Tuple[Tensor, Tensor]],
        edge_index: Tensor,
        edge_type: Optional[Tensor] = None,
        edge_attr: Optional[Tensor] = None,
        return_attention_weights: bool = False,
    ) -> Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor]]]:
        """Returns ``out``, or ``(out, (edge_index, alpha))`` with
        ``return_attention_weights=True`` (``alpha`` before dropout, summing
        to 1 within each (destination, partition))."""
        P, H, C = self.num_partitions, self.heads, self.out_channels
        x_src, x_dst, edge_attr = check_inputs(x, edge_index, edge_attr,
                                               self.in_channels, self.edge_dim)
        check_edge_type(edge_type, edge_index.size(1), self.num_types)
        query = self.lin_query(x_dst).view(-1, H, C)  # [N_dst * P, H, C]
        key = self.lin_key(x_src).view(-1, H, C)  # [N_src * P, H, C]
        value = self.lin_value(x_src).view(-1, H, C)  # [N_src * P, H, C]
        part = self.partition(edge_type)
        out, alpha = self._attend(query, key, value, edge_attr, edge_index,
                                  part, x_dst.size(0))  # [N, P, H, C]

        if self.lin_gate is not None:
            logits = self.lin_gate(out.reshape(-1, P * H * C))  # [N, P-1]
            logits = F.pad(logits, (0, 1))  # [N, P]
            gate = torch.softmax(logits, dim=-1)  # [N, P]
            out = (gate.view(-1, P, 1, 1) * out).sum(dim=1)  # [N, H, C]
        else:
            out = out.squeeze(1)  # [N, H, C]
        out = out.reshape(-1, H * C) if self.concat else out.mean(dim=1)
        if self.lin_skip is not None:
            out = out + self.lin_skip(x_dst)
        if return_attention_weights:
            return out, (edge_index, alpha)
        return out

    def _attend(self, query: Tensor, key: Tensor, value: Tensor,
                edge_attr: Optional[Tensor], edge_index: Tensor,
                part: Tensor, num_dst: int) -> Tuple[Tensor, Tensor]:
        """``[N, P, H, C]`` per-partition aggregates and the ``[E, H]``
        weights (before dropout) from ``[N * P, H, C]`` projections."""
        P, H, C = self.num_partitions, self.heads, self.out_channels
        src = edge_index[0] * P + part  # [E] row of the source's partition
        dst = edge_index[1] * P + part  # [E] (destination, partition) group
        logits = gather_dot(query, key, dst, src)  # [E, H]
        if edge_attr is not None:
            w_edge = self.lin_edge.weight.view(P, H, C, -1)  # [P, H, C, D]
            query_edge = torch.einsum('nphc,phcd->nphd',
                                      query.view(-1, P, H, C), w_edge)
            query_edge = query_edge.reshape(-1, H, w_edge.size(-1))
            logits = logits + gather_dot(query_edge, edge_attr.unsqueeze(1),
                                         dst, None)  # [E, H]
        alpha = edge_softmax(logits / math.sqrt(C), dst, num_dst * P)  # [E, H]
        weights = F.dropout(alpha, p=self.dropout, training=self.training)

        out = gather_scatter(weights, value, src, dst, num_dst * P)
        out = out.view(-1, P, H, C)  # [N, P, H, C]
        if edge_attr is not None:
            edge_sum = gather_scatter(weights, edge_attr.unsqueeze(1), None,
                                      dst, num_dst * P)  # [N * P, H, D]
            edge_sum = edge_sum.view(-1, P, H, edge_attr.size(-1))
            out = out + torch.einsum('nphd,phcd->nphc', edge_sum, w_edge)
        return out, alpha

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels}, heads={self.heads}, '
                f'num_partitions={self.num_partitions})')
