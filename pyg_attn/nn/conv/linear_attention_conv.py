from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn.dense.linear import Linear

from pyg_attn.functional.kernel_attention import (fused_kernel_attention,
                                                 graph_kernel_attention)
from pyg_attn.functional import (gather_dot, orthogonal_random_matrix,
                                 relu_kernel_features,
                                 softmax_kernel_features, stat_dtype)
from pyg_attn.nn.conv._validate import (check_channels, check_dropout,
                                        check_edge_index, check_heads)

KERNELS = ('softmax', 'relu')


class LinearAttentionConv(torch.nn.Module):
    r"""Global linear attention over all nodes of each graph in a batch, with
    the positive orthogonal random features (FAVOR+) of `"Rethinking
    Attention with Performers" <https://arxiv.org/abs/2009.14794>`_
    (Choromanski et al., 2021).

    Exact softmax attention of node :math:`i` over the nodes
    :math:`\mathcal{V}_{g(i)}` of its graph,

    .. math::
        \mathbf{x}'_i = \mathbf{W}_s \mathbf{x}_i + \frac{\sum_{j \in
        \mathcal{V}_{g(i)}} \exp(\mathbf{q}_i^\top \mathbf{k}_j)\,
        \mathbf{v}_j}{\sum_{l \in \mathcal{V}_{g(i)}}
        \exp(\mathbf{q}_i^\top \mathbf{k}_l)},
        \qquad \mathbf{q}_i = \frac{\mathbf{W}_q \mathbf{x}_i}{C^{1/4}},\;
        \mathbf{k}_j = \frac{\mathbf{W}_k \mathbf{x}_j}{C^{1/4}},\;
        \mathbf{v}_j = \mathbf{W}_v \mathbf{x}_j,

    per head, is approximated in :math:`O(N m C)` by

    .. math::
        \mathbf{x}'_i \approx \mathbf{W}_s \mathbf{x}_i +
        \frac{\phi(\mathbf{q}_i)^\top \mathbf{S}_{g(i)}}
        {\phi(\mathbf{q}_i)^\top \mathbf{z}_{g(i)}},
        \qquad \mathbf{S}_g = \sum_{j \in \mathcal{V}_g} \phi(\mathbf{k}_j)
        \mathbf{v}_j^\top \in \mathbb{R}^{m \times C},\;
        \mathbf{z}_g = \sum_{l \in \mathcal{V}_g} \phi(\mathbf{k}_l)
        \in \mathbb{R}^{m},

    with :math:`\phi(\mathbf{x}) = \exp(\mathbf{W}\mathbf{x} -
    \lVert\mathbf{x}\rVert^2/2)/\sqrt{m}` for ``kernel='softmax'``
    (:func:`~pyg_attn.functional.softmax_kernel_features`, unbiased for
    :math:`\exp(\mathbf{q}^\top\mathbf{k})`, max-stabilised per query and per
    graph) or :math:`\max(0, \mathbf{W}\mathbf{x}) + \varepsilon` for
    ``kernel='relu'`` (:func:`~pyg_attn.functional.relu_kernel_features`),
    :math:`\mathbf{W}` holding :math:`m` orthogonal Gaussian rows per head
    (:func:`~pyg_attn.functional.orthogonal_random_matrix`).  The feature map
    stays :math:`m`-dimensional (the seed's sketch collapses it to a sum,
    which loses the kernel).

    :math:`\mathbf{S}_g` and :math:`\mathbf{z}_g` are scatter sums over
    ``batch``: there is no padding and no
    :func:`~torch_geometric.utils.to_dense_batch`, and nothing crosses graphs,
    so a graph's output in a batch equals its output alone (PyG's
    :class:`~torch_geometric.nn.attention.PerformerAttention` lets padded
    positions into the normaliser).  Time and memory are
    :math:`O(N H m C)`.  With ``batch=None`` (one graph) the features are
    made chunk by chunk and recomputed in backward
    (:func:`~pyg_attn.functional.kernel_attention.fused_kernel_attention`):
    memory beyond the projections is :math:`O(H m C)`, and time stays linear
    in N on CPU because a chunk's features stay in cache; asking for
    attention weights takes the whole-tensor path, which needs them.
    Sums are accumulated in float32 for float16/bfloat16 input.

    This is a global layer: it attends over whole graphs, not over edges, so
    it takes no bipartite ``(x_src, x_dst)`` input.  ``edge_index`` is only
    used to report the attention weight the approximation implies for given
    edges :math:`j \to i`,

    .. math::
        \alpha_{ij} = \frac{\phi(\mathbf{q}_i)^\top \phi(\mathbf{k}_j)}
        {\phi(\mathbf{q}_i)^\top \mathbf{z}_{g(i)}},

    in :math:`O(E m)`; over all :math:`j` of :math:`i`'s graph they sum to 1.

    The random features are a buffer ``projection_matrix`` ``[H, m, C]``
    (moved by ``.to()``, saved in the ``state_dict``), drawn again by
    :meth:`redraw_features`, by :meth:`reset_parameters`, and, with
    ``redraw_interval=k``, automatically before training forwards
    :math:`k+1, 2k+1, \ldots` (each draw serves :math:`k` of them; forwards in
    eval mode do not count).  Under
    ``torch.compile`` prefer calling :meth:`redraw_features` from the training
    loop: the automatic counter is Python state the compiled graph guards on.

    :meth:`exact_attention` computes the exact softmax attention above with
    the same projections (:math:`O(N_g^2)` per graph), to test and measure the
    approximation.

    Args:
        in_channels (int): input size, or -1 to infer it at the first call.
        out_channels (int): channels per head (C).
        heads (int, optional): number of heads H. (default: :obj:`1`)
        concat (bool, optional): concatenate heads, else average them.
            (default: :obj:`True`)
        num_features (int, optional): random features per head (m).
            (default: :obj:`256`)
        kernel (str, optional): ``'softmax'`` (FAVOR+) or ``'relu'``.
            (default: :obj:`'softmax'`)
        redraw_interval (int, optional): training forwards per draw of the
            random features; :obj:`None` never redraws automatically.
            (default: :obj:`None`)
        dropout (float, optional): in training, drops each key (per node and
            head) from the numerator :math:`\mathbf{S}_g` with this
            probability, rescaling the rest, the linear-attention analogue of
            attention dropout (the normaliser keeps every key).
            (default: :obj:`0.`)
        bias (bool, optional): biases of the projections.
            (default: :obj:`True`)
        root_weight (bool, optional): add the skip projection
            :math:`\mathbf{W}_s \mathbf{x}_i`. (default: :obj:`True`)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})`, batch
          vector :math:`(|\mathcal{V}|)` *(optional, sorted)*, edge indices
          :math:`(2, |\mathcal{E}|)` *(optional)*
        - **output:** :math:`(|\mathcal{V}|, H \cdot C)` or
          :math:`(|\mathcal{V}|, C)` if ``concat=False``; with
          ``return_attention_weights=True`` also
          :math:`((2, |\mathcal{E}|), (|\mathcal{E}|, H))`

    Raises:
        ValueError: ``heads``, ``out_channels`` or ``num_features`` below 1;
            unknown ``kernel``; ``redraw_interval`` below 1; a tuple ``x``;
            features of a width other than ``in_channels``; ``batch`` of the
            wrong length or dtype, not sorted, or beyond ``num_graphs``;
            ``num_graphs`` missing under ``torch.compile``; bad
            ``edge_index``, or an edge between two graphs;
            ``return_attention_weights=True`` without ``edge_index``.

    Example::

        >>> conv = LinearAttentionConv(16, 8, heads=2, num_features=64)
        >>> x, batch = torch.randn(7, 16), torch.tensor([0, 0, 0, 1, 1, 1, 1])
        >>> conv(x, batch).shape
        torch.Size([7, 16])
    """
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        num_features: int = 256,
        kernel: str = 'softmax',
        redraw_interval: Optional[int] = None,
        dropout: float = 0.,
        bias: bool = True,
        root_weight: bool = True,
    ):
        super().__init__()
        check_heads(heads)
        check_channels(out_channels)
        check_dropout(dropout)
        if isinstance(in_channels, (tuple, list)):
            raise ValueError(f"'in_channels' ({in_channels}) must be an int: "
                             "LinearAttentionConv is a global layer without "
                             "bipartite input")
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"'num_features' ({num_features}) must be an "
                             "integer >= 1 (the default is 256)")
        if kernel not in KERNELS:
            raise ValueError(f"unknown 'kernel' ({kernel!r}); use one of "
                             f"{', '.join(map(repr, KERNELS))}")
        if redraw_interval is not None and (
                not isinstance(redraw_interval, int) or redraw_interval < 1):
            raise ValueError(f"'redraw_interval' ({redraw_interval}) must be "
                             "an integer >= 1, or None to never redraw")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.concat = concat
        self.num_features = num_features
        self.kernel = kernel
        self.redraw_interval = redraw_interval
        self.dropout = dropout
        self.root_weight = root_weight
        self._steps_since_redraw = 0

        self.lin_query = Linear(in_channels, heads * out_channels, bias=bias)
        self.lin_key = Linear(in_channels, heads * out_channels, bias=bias)
        self.lin_value = Linear(in_channels, heads * out_channels, bias=bias)
        if root_weight:
            out_size = heads * out_channels if concat else out_channels
            self.lin_skip = Linear(in_channels, out_size, bias=bias)
        else:
            self.register_parameter('lin_skip', None)
        self.register_buffer('projection_matrix',
                             torch.empty(heads, num_features, out_channels))
        self.reset_parameters()

    def reset_parameters(self):
        self.lin_query.reset_parameters()
        self.lin_key.reset_parameters()
        self.lin_value.reset_parameters()
        if self.lin_skip is not None:
            self.lin_skip.reset_parameters()
        self.redraw_features()

    @torch.no_grad()
    def redraw_features(self,
                        generator: Optional[torch.Generator] = None) -> None:
        """Draws new random features into ``projection_matrix`` (from the
        global generator, or from ``generator``, a CPU generator) and
        restarts the count towards the automatic redraw."""
        H, m, C = self.projection_matrix.shape
        w = torch.stack([
            orthogonal_random_matrix(m, C, generator) for _ in range(H)
        ])  # [H, m, C]
        self.projection_matrix.copy_(w)
        self._steps_since_redraw = 0

    def forward(
        self,
        x: Tensor,
        batch: Optional[Tensor] = None,
        edge_index: Optional[Tensor] = None,
        return_attention_weights: bool = False,
        num_graphs: Optional[int] = None,
    ) -> Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor]]]:
        """Returns ``out``, or ``(out, (edge_index, alpha))`` with
        ``return_attention_weights=True`` (``alpha`` before dropout).

        ``num_graphs`` is the number of graphs in ``batch``; when it is
        :obj:`None` it is read as ``batch.max() + 1``, which needs the data:
        pass it under ``torch.compile(fullgraph=True)`` (for a PyG
        :class:`~torch_geometric.data.Batch`, ``data.num_graphs``).  The
        checks that ``batch`` is sorted and that edges stay inside their graph
        run in eager mode only.
        """
        self._check_x(x)
        num_graphs = _check_batch(batch, x.size(0), num_graphs)
        if return_attention_weights and edge_index is None:
            raise ValueError("return_attention_weights=True needs the edges "
                             "to weigh: pass 'edge_index'")
        if edge_index is not None:
            _check_edges(edge_index, batch, x.size(0))
        if self.training and self.redraw_interval is not None:
            if self._steps_since_redraw >= self.redraw_interval:
                self.redraw_features()
            self._steps_since_redraw += 1

        query, key, value = self._project(x)  # [N, H, C] each
        keep = None  # key dropout [N, H]
        if self.training and self.dropout > 0:
            keep = F.dropout(query.new_ones(query.shape[:2],
                                            dtype=stat_dtype(x.dtype)),
                             self.dropout)
        if batch is None and not return_attention_weights and \
                not torch.compiler.is_compiling():
            # one graph: features made chunk by chunk, never [N, H, m]
            out = fused_kernel_attention(query, key, value,
                                         self.projection_matrix, self.kernel,
                                         keep)
            return self._combine(out.to(x.dtype), x)
        phi_q, phi_k = self._features(query, key, batch, num_graphs)
        phi_kv = phi_k if keep is None else phi_k * keep.unsqueeze(-1)
        out, den = _kernel_attention(phi_q, phi_k, phi_kv, value, batch,
                                     num_graphs)  # [N, H, C], [N, H]
        out = self._combine(out.to(x.dtype), x)
        if return_attention_weights:
            src, dst = edge_index[0], edge_index[1]
            alpha = gather_dot(phi_q, phi_k, dst, src)  # [E, H]
            alpha = alpha / den.index_select(0, dst).clamp_min(_tiny(den))
            return out, (edge_index, alpha)
        return out

    def exact_attention(self, x: Tensor,
                        batch: Optional[Tensor] = None) -> Tensor:
        r"""The exact softmax attention this layer approximates, with the same
        projections, skip and head combination, and no dropout:
        :math:`O(N_g^2)` per graph.  For tests and for measuring the error of
        the random features."""
        self._check_x(x)
        _check_batch(batch, x.size(0), None)
        query, key, value = self._project(x)  # [N, H, C] each
        dtype = stat_dtype(x.dtype)
        sizes = [x.size(0)] if batch is None else torch.bincount(
            batch).tolist()
        outs = []
        for q, k, v in zip(query.split(sizes), key.split(sizes),
                           value.split(sizes)):
            logits = torch.einsum('ihc,jhc->hij', q.to(dtype), k.to(dtype))
            alpha = torch.softmax(logits, dim=-1)  # [H, n, n]
            outs.append(torch.einsum('hij,jhc->ihc', alpha, v.to(dtype)))
        out = torch.cat(outs) if outs else value.to(dtype)  # [N, H, C]
        return self._combine(out.to(x.dtype), x)

    def _check_x(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise ValueError("'x' must be one tensor [num_nodes, channels]: "
                             "LinearAttentionConv is a global layer without "
                             "bipartite (x_src, x_dst) input")
        if x.dim() != 2:
            raise ValueError(f"'x' must be 2-D [num_nodes, channels], got "
                             f"shape {tuple(x.shape)}")
        if self.in_channels != -1 and x.size(-1) != self.in_channels:
            raise ValueError(
                f"'x' has {x.size(-1)} features but the layer was built with "
                f"in_channels={self.in_channels}; build it with "
                f"in_channels={x.size(-1)} (or -1 to infer it)")

    def _project(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        H, C = self.heads, self.out_channels
        scale = C**-0.25  # q.k / sqrt(C) as (q / C^1/4).(k / C^1/4)
        query = self.lin_query(x).view(-1, H, C) * scale  # [N, H, C]
        key = self.lin_key(x).view(-1, H, C) * scale  # [N, H, C]
        value = self.lin_value(x).view(-1, H, C)  # [N, H, C]
        return query, key, value

    def _features(self, query: Tensor, key: Tensor, batch: Optional[Tensor],
                  num_graphs: int) -> Tuple[Tensor, Tensor]:
        w = self.projection_matrix
        if self.kernel == 'relu':
            return relu_kernel_features(query, w), relu_kernel_features(key, w)
        return (softmax_kernel_features(query, w, is_query=True),
                softmax_kernel_features(key, w, is_query=False, batch=batch,
                                        num_graphs=num_graphs))  # [N, H, m]

    def _combine(self, out: Tensor, x: Tensor) -> Tensor:
        H, C = self.heads, self.out_channels
        out = out.reshape(-1, H * C) if self.concat else out.mean(dim=1)
        if self.lin_skip is not None:
            out = out + self.lin_skip(x)
        return out

    def __repr__(self) -> str:
        kernel = '' if self.kernel == 'softmax' else f", kernel='{self.kernel}'"
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels}, heads={self.heads}, '
                f'num_features={self.num_features}{kernel})')


def _tiny(t: Tensor) -> float:
    return torch.finfo(t.dtype).tiny


def _kernel_attention(phi_q: Tensor, phi_k: Tensor, phi_kv: Tensor,
                      value: Tensor, batch: Optional[Tensor],
                      num_graphs: int) -> Tuple[Tensor, Tensor]:
    r""":math:`\phi(\mathbf{q}_i)^\top \mathbf{S}_{g(i)} /
    \phi(\mathbf{q}_i)^\top \mathbf{z}_{g(i)}` and the normaliser, with
    :math:`\mathbf{S}_g` summed from ``phi_kv`` (the keys after dropout) and
    :math:`\mathbf{z}_g` from ``phi_k``.  Letter legend: N nodes, G graphs,
    H heads, m features, C channels."""
    v = value.to(phi_q.dtype)
    if batch is None:
        kv = torch.einsum('nhm,nhc->hmc', phi_kv, v)  # [H, m, C]
        z = phi_k.sum(dim=0)  # [H, m]
        num = torch.einsum('nhm,hmc->nhc', phi_q, kv)  # [N, H, C]
        den = (phi_q * z).sum(dim=-1)  # [N, H]
    else:
        G, (_, H, m) = num_graphs, phi_q.shape
        num = graph_kernel_attention(phi_q, phi_kv, v, batch,
                                     G)  # [N, H, C]
        z = phi_q.new_zeros(G, H, m).index_add_(0, batch, phi_k)  # [G, H, m]
        den = (phi_q * z.index_select(0, batch)).sum(dim=-1)  # [N, H]
    return num / den.clamp_min(_tiny(den)).unsqueeze(-1), den


def _check_batch(batch: Optional[Tensor], num_nodes: int,
                 num_graphs: Optional[int]) -> int:
    """Shape and dtype always; order and range in eager mode only.  Returns
    the number of graphs."""
    if batch is None:
        if num_graphs not in (None, 1):
            raise ValueError(f"'num_graphs' ({num_graphs}) was given without "
                             "'batch'; pass the batch vector too")
        return 1
    if not isinstance(batch, Tensor) or batch.dim() != 1 or batch.dtype \
            not in (torch.long, torch.int):
        desc = (f'shape {tuple(batch.shape)} and dtype {batch.dtype}'
                if isinstance(batch, Tensor) else type(batch).__name__)
        raise ValueError(f"'batch' must be a 1-D integer tensor, got {desc}")
    if batch.numel() != num_nodes:
        raise ValueError(f"'batch' has {batch.numel()} entries but 'x' has "
                         f"{num_nodes} nodes; pass one graph index per node")
    if torch.compiler.is_compiling():
        if num_graphs is None:
            raise ValueError("pass 'num_graphs' under torch.compile: reading "
                             "it from 'batch' needs the data")
        return num_graphs
    if num_nodes == 0:
        return 0 if num_graphs is None else num_graphs
    step = batch[1:] - batch[:-1]
    if int(batch[0]) < 0 or (step < 0).any():
        i = 0 if int(batch[0]) < 0 else int((step < 0).nonzero()[0]) + 1
        raise ValueError(
            f"'batch' must be sorted with values >= 0 as PyG's Batch makes "
            f"it, but batch[{i}] = {int(batch[i])}"
            + (f" follows {int(batch[i - 1])}" if i > 0 else '')
            + "; reorder the nodes by graph (perm = batch.argsort(stable="
            "True))")
    last = int(batch[-1])
    if num_graphs is None:
        return last + 1
    if last >= num_graphs:
        raise ValueError(f"'batch' holds graph {last} but num_graphs="
                         f"{num_graphs}; pass num_graphs={last + 1}")
    return num_graphs


def _check_edges(edge_index: Tensor, batch: Optional[Tensor],
                 num_nodes: int) -> None:
    check_edge_index(edge_index, num_nodes, num_nodes)
    if batch is None or torch.compiler.is_compiling() or \
            edge_index.numel() == 0:
        return
    crossing = batch[edge_index[0]] != batch[edge_index[1]]
    if crossing.any():
        e = int(crossing.nonzero()[0])
        j, i = int(edge_index[0, e]), int(edge_index[1, e])
        raise ValueError(
            f"edge {e} ({j} -> {i}) joins graph {int(batch[j])} to graph "
            f"{int(batch[i])}; attention weights exist only inside a graph: "
            "pass edges within graphs")
