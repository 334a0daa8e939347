import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear, is_uninitialized_parameter
from torch_geometric.nn.inits import zeros

from pyg_attn.functional import (clip_tangent, edge_dist, edge_softmax,
                                 expmap0, expmap0_add, logmap0, project,
                                 scatter_gyromidpoint)
from pyg_attn.functional.recompute import recomputed
from pyg_attn.nn.conv._validate import (
    check_channels,
    check_dropout,
    check_heads,
    check_inputs,
)


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


def _check_positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or \
            value <= 0:
        raise ValueError(f"'{name}' ({value}) must be a finite number > 0")


def _check_on_ball(x: Tensor, c: Tensor, name: str) -> None:
    """Eager mode only: it needs the data, which would break a compiled
    graph."""
    if torch.compiler.is_compiling() or x.numel() == 0:
        return
    norms = torch.linalg.vector_norm(x.detach(), dim=-1)
    radius = 1 / c.detach().double().sqrt().item()
    outside = int((norms >= radius).sum())
    if outside:
        raise ValueError(
            f"{outside} of the {x.size(0)} rows of '{name}' lie outside the "
            f"Poincaré ball of curvature c={c.item():.6g} (norm >= 1/sqrt(c)"
            f" = {radius:.6g}; the largest norm is {norms.max().item():.6g});"
            " pass Euclidean features with input_on_ball=False (they are "
            "mapped in by expmap0), or pull them inside with "
            "pyg_attn.functional.project")


class PoincareAttentionConv(MessagePassing):
    r"""Multi-head attention in the Poincaré ball of curvature :math:`-c`:
    logits from the negative hyperbolic distance between query and key,
    aggregation by the weighted Möbius gyromidpoint of the values (seed §3;
    `"Hyperbolic Graph Convolutional Networks"
    <https://arxiv.org/abs/1910.12933>`_, `"Hyperbolic Attention Networks"
    <https://arxiv.org/abs/1805.09786>`_).

    Each head :math:`h` works on its own ball :math:`\mathbb{D}^C_c`.  With
    :math:`\mathbf{u} = \log^c_0(\mathbf{x})` the node's tangent vector at
    the origin (:math:`\mathbf{x} = \exp^c_0(\text{features})` for Euclidean
    input, so :math:`\mathbf{u}` is the features themselves),

    .. math::
        \mathbf{q}_i = \exp^c_0(\mathbf{W}_q \mathbf{u}_i) \oplus_c
        \exp^c_0(\mathbf{b}_q) = (\mathbf{W}_q \otimes_c \mathbf{x}_i)
        \oplus_c \exp^c_0(\mathbf{b}_q)

    (a Möbius linear map with weights and bias in the tangent space at the
    origin, so plain Adam trains them), likewise :math:`\mathbf{k}_j,
    \mathbf{v}_j` from the sources, and

    .. math::
        \alpha_{ij} = \operatorname{softmax}_{j \in \mathcal{N}(i)}
        \left(-\frac{d_c(\mathbf{q}_i, \mathbf{k}_j)}{\tau} +
        \mathbf{w}_e^\top \mathbf{e}_{ij}\right), \qquad
        \mathbf{m}_i = \frac12 \otimes_c \frac{\sum_j \alpha_{ij}
        \lambda^c_{\mathbf{v}_j} \mathbf{v}_j}{\sum_j \alpha_{ij}
        (\lambda^c_{\mathbf{v}_j} - 1)}

    with a learnable temperature :math:`\tau > 0` per head and the edge term
    only with ``edge_dim``.  The gyromidpoint is two scatter sums
    (:func:`~pyg_attn.functional.scatter_gyromidpoint`): :math:`O(E)`, and
    independent of the order of the edges, unlike the seed's sequence of
    Möbius additions :math:`\bigoplus_j \alpha_{ij} \otimes_c
    \mathbf{v}_j`.  A node with no incoming edge gets the origin.

    Heads are combined in the tangent space at the origin:
    ``concat=True`` gives :math:`\exp^c_0(\Vert_h \log^c_0 \mathbf{m}^h_i)`,
    a point of the :math:`H C`-dimensional ball of the same curvature;
    ``concat=False`` gives :math:`\exp^c_0(\tfrac1H \sum_h \log^c_0
    \mathbf{m}^h_i)`.  The output is a point on the ball (projected
    :func:`~pyg_attn.functional.project`'s margin inside it); feed it to the
    next layer with ``input_on_ball=True``, or map it back to Euclidean
    space with :func:`~pyg_attn.functional.logmap0`
    (``logmap0(out, c=conv.c)``), which is what ``euclidean_output=True``
    returns — handy before a Euclidean nonlinearity or decoder (the next
    layer's :math:`\exp^c_0` undoes it).

    As :math:`c \to 0` the layer tends to its Euclidean counterpart: linear
    maps :math:`\mathbf{W} \mathbf{x} + \mathbf{b}`, logits
    :math:`-2\|\mathbf{q}_i - \mathbf{k}_j\| / \tau` (the Poincaré metric is
    :math:`4\times` the Euclidean one at the origin) and the
    :math:`\alpha`-weighted mean of the values.

    Numerics: the distance is computed as :math:`\frac{2}{\sqrt c}
    \sinh^{-1}(\sqrt c \|q - k\| / \sqrt{(1 - c\|q\|^2)(1 - c\|k\|^2)})`
    from the exact difference (no :math:`\tanh^{-1}` of a norm close to 1,
    and no ``[E, H, C]`` tensor kept for backward); float16/bfloat16 inputs
    are computed in float32, and ``compute_dtype=torch.float64`` runs the
    whole layer, linear maps included, in float64 (the output has the input's
    dtype).  Memory: the elementwise steps of the Möbius maps of the nodes
    (not their matrix products) and of the distance run again in backward
    (:func:`~pyg_attn.functional.recompute.recomputed`) instead of keeping
    their ``[N, H, C]`` and ``[E, H]`` temporaries.

    Args:
        in_channels (int or tuple): input size, ``(src, dst)`` sizes for
            bipartite input, or -1 to infer it at the first call.
        out_channels (int): channels per head (C), the dimension of each
            head's ball.
        heads (int, optional): number of heads H. (default: :obj:`1`)
        concat (bool, optional): concatenate heads in the tangent space,
            else average them there. (default: :obj:`True`)
        dropout (float, optional): dropout on the attention weights (a
            dropped neighbour leaves the midpoint; the rest are
            renormalised by it). (default: :obj:`0.`)
        edge_dim (int, optional): edge feature size; adds a learned linear
            term per head to the logits. (default: :obj:`None`)
        bias (bool, optional): Möbius biases of the query, key and value
            maps. (default: :obj:`True`)
        c (float, optional): curvature magnitude :math:`c > 0` (the ball has
            radius :math:`1/\sqrt c`). (default: :obj:`1.0`)
        learn_c (bool, optional): learn :math:`c` (kept positive as the
            softplus of a parameter). (default: :obj:`False`)
        tau (float, optional): initial temperature :math:`\tau > 0`.
            (default: :obj:`1.0`)
        learn_tau (bool, optional): learn :math:`\tau` per head (kept
            positive through a softplus). (default: :obj:`True`)
        input_on_ball (bool, optional): ``x`` holds points of the ball
            (e.g. a previous layer's output), not Euclidean features.
            (default: :obj:`False`)
        euclidean_output (bool, optional): return :math:`\log^c_0` of the
            output (a Euclidean vector) instead of the point on the ball.
            (default: :obj:`False`)
        compute_dtype (torch.dtype, optional): dtype of the internal math,
            e.g. :obj:`torch.float64`; by default the input's dtype (float32
            for float16/bfloat16). (default: :obj:`None`)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})` or
          :math:`((|\mathcal{V}_s|, F_s), (|\mathcal{V}_t|, F_t))`, edge
          indices :math:`(2, |\mathcal{E}|)`, edge features
          :math:`(|\mathcal{E}|, D)` *(optional)*
        - **output:** :math:`(|\mathcal{V}_t|, H \cdot C)` or
          :math:`(|\mathcal{V}_t|, C)` if ``concat=False``, on the ball
          unless ``euclidean_output=True``; with
          ``return_attention_weights=True`` also
          :math:`((2, |\mathcal{E}|), (|\mathcal{E}|, H))`

    Raises:
        ValueError: ``c <= 0`` or ``tau <= 0``; ``heads < 1``; bad
            ``edge_index`` (shape, dtype, range); ``edge_attr`` of the wrong
            shape, given without ``edge_dim`` or missing with it; features of
            a width other than ``in_channels``; with ``input_on_ball=True``,
            rows of norm :math:`\ge 1/\sqrt c` (eager mode only).

    Example::

        >>> conv = PoincareAttentionConv(16, 8, heads=4, c=1.0, learn_c=True)
        >>> x = torch.randn(5, 16)
        >>> edge_index = torch.tensor([[0, 1, 2], [1, 2, 3]])
        >>> out = conv(x, edge_index)  # points of the 32-dim ball
        >>> out.shape, bool((out.norm(dim=-1) < 1).all())
        (torch.Size([5, 32]), True)
        >>> logmap0(out, c=conv.c).shape  # back to Euclidean features
        torch.Size([5, 32])
    """
    def __init__(
        self,
        in_channels: Union[int, Tuple[int, int]],
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        dropout: float = 0.,
        edge_dim: Optional[int] = None,
        bias: bool = True,
        c: float = 1.0,
        learn_c: bool = False,
        tau: float = 1.0,
        learn_tau: bool = True,
        input_on_ball: bool = False,
        euclidean_output: bool = False,
        compute_dtype: Optional[torch.dtype] = None,
        **kwargs,
    ):
        check_heads(heads)
        check_channels(out_channels)
        check_dropout(dropout)
        _check_positive('c', c)
        _check_positive('tau', tau)
        if compute_dtype not in (None, torch.float32, torch.float64):
            raise ValueError(f"'compute_dtype' ({compute_dtype}) must be None,"
                             " torch.float32 or torch.float64")
        kwargs.setdefault('aggr', 'add')
        super().__init__(node_dim=0, **kwargs)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.concat = concat
        self.dropout = dropout
        self.edge_dim = edge_dim
        self.init_c = float(c)
        self.init_tau = float(tau)
        self.input_on_ball = input_on_ball
        self.euclidean_output = euclidean_output
        self.compute_dtype = compute_dtype

        src_channels, dst_channels = (in_channels, in_channels) if isinstance(
            in_channels, int) else in_channels
        size = heads * out_channels
        self.lin_query = Linear(dst_channels, size, bias=False,
                                weight_initializer='glorot')
        self.lin_key = Linear(src_channels, size, bias=False,
                              weight_initializer='glorot')
        self.lin_value = Linear(src_channels, size, bias=False,
                                weight_initializer='glorot')
        if bias:
            self.bias = Parameter(torch.empty(3, heads, out_channels))
        else:
            self.register_parameter('bias', None)
        if edge_dim is not None:
            self.lin_edge = Linear(edge_dim, heads, bias=False,
                                   weight_initializer='glorot')
        else:
            self.register_parameter('lin_edge', None)
        raw_c = torch.tensor(_inverse_softplus(self.init_c))
        raw_tau = torch.full((heads, ), _inverse_softplus(self.init_tau))
        if learn_c:
            self.raw_c = Parameter(raw_c)
        else:
            self.register_buffer('raw_c', raw_c)
        if learn_tau:
            self.raw_tau = Parameter(raw_tau)
        else:
            self.register_buffer('raw_tau', raw_tau)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        self.lin_query.reset_parameters()
        self.lin_key.reset_parameters()
        self.lin_value.reset_parameters()
        if self.lin_edge is not None:
            self.lin_edge.reset_parameters()
        zeros(self.bias)
        with torch.no_grad():
            self.raw_c.fill_(_inverse_softplus(self.init_c))
            self.raw_tau.fill_(_inverse_softplus(self.init_tau))

    @property
    def c(self) -> Tensor:
        """The curvature magnitude :math:`c > 0` (a 0-dim tensor)."""
        return F.softplus(self.raw_c)

    @property
    def tau(self) -> Tensor:
        """The temperatures :math:`\\tau > 0`, one per head ``[H]``."""
        return F.softplus(self.raw_tau)

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
        dtype = self.compute_dtype or torch.promote_types(
            x_dst.dtype, torch.float32)
        c = self.c.to(dtype)
        self._initialize(x_src, x_dst)
        if self.input_on_ball:
            _check_on_ball(x_src.to(dtype), c, 'x_src')
            if x_dst is not x_src:
                _check_on_ball(x_dst.to(dtype), c, 'x_dst')
        edge_attr = None if edge_attr is None else edge_attr.to(dtype)
        src, dst, num_dst = edge_index[0], edge_index[1], x_dst.size(0)

        query, key, value = self._project(x_src, x_dst, c,
                                          dtype)  # [N, H, C] each
        logits = -edge_dist(query, key, dst, src, c=c) / self.tau.to(
            dtype)  # [E, H]
        if edge_attr is not None:
            logits = logits + self._linear(self.lin_edge, edge_attr)
        alpha = edge_softmax(logits, dst, num_dst)  # [E, H]
        weights = F.dropout(alpha, p=self.dropout, training=self.training)
        out = scatter_gyromidpoint(value, weights, dst, num_dst, c=c,
                                   src=src)  # [N_dst, H, C]

        out = logmap0(out, c=c)  # [N_dst, H, C]
        out = out.reshape(-1, H * C) if self.concat else out.mean(dim=1)
        out = clip_tangent(out, c=c)
        if not self.euclidean_output:
            out = expmap0(out, c=c)
        out = out.to(x_dst.dtype)
        if return_attention_weights:
            return out, (edge_index, alpha)
        return out

    def _initialize(self, x_src: Tensor, x_dst: Tensor) -> None:
        """Lazy weights, outside the recomputed segments."""
        for lin, x in ((self.lin_query, x_dst), (self.lin_key, x_src),
                       (self.lin_value, x_src)):
            if is_uninitialized_parameter(lin.weight):
                lin(x[:0].to(torch.get_default_dtype()))

    def _project(self, x_src: Tensor, x_dst: Tensor, c: Tensor,
                 dtype: torch.dtype) -> Tuple[Tensor, Tensor, Tensor]:
        """Queries of the destinations, keys and values of the sources:
        points of each head's ball ``[N, H, C]``.  The elementwise maps run
        again in backward (:func:`recomputed`); the matrix products, the
        costly part with wide features, do not."""
        u_src = recomputed(self._tangent, x_src, c, dtype)  # [N_src, F]
        u_dst = u_src if x_dst is x_src else recomputed(
            self._tangent, x_dst, c, dtype)  # [N_dst, F]
        return tuple(
            recomputed(self._to_ball, self._linear(lin, u), which, c)
            for which, (lin, u) in enumerate([(self.lin_query, u_dst),
                                              (self.lin_key, u_src),
                                              (self.lin_value, u_src)]))

    def _tangent(self, x: Tensor, c: Tensor, dtype: torch.dtype) -> Tensor:
        """:math:`\\log_0` of the node's point on the ball ``[N, F]``."""
        x = x.to(dtype)
        if not self.input_on_ball:
            return clip_tangent(x, c=c)
        return logmap0(project(x, c=c), c=c)

    @staticmethod
    def _linear(lin: Linear, x: Tensor) -> Tensor:
        """``lin(x)`` in ``x``'s dtype, whatever the weight's."""
        return F.linear(x, lin.weight.to(x.dtype))

    def _to_ball(self, tangent: Tensor, which: int, c: Tensor) -> Tensor:
        """Möbius bias per head on the mapped tangent vectors,
        ``[N, H * C] -> [N, H, C]``."""
        tangent = tangent.view(-1, self.heads, self.out_channels)
        bias = None if self.bias is None else expmap0(
            self.bias[which].to(tangent.dtype), c=c)  # [H, C]
        return expmap0_add(tangent, bias, c=c)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels}, heads={self.heads}, '
                f'c={self.c.item():.4g})')
