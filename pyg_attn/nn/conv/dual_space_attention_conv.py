import weakref
from typing import Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear

from pyg_attn.functional.latent_knn import (DEFAULT_THRESHOLD, check_batch,
                                            check_k, latent_knn)
from pyg_attn.nn.conv._validate import (check_channels, check_dropout,
                                        check_edge_index, check_features,
                                        check_heads)
from pyg_attn.nn.conv.dot_product_attention_conv import \
    DotProductAttentionConv

FUSIONS = ('linear', 'gate')


def _same(a: Optional[Tensor], b: Optional[Tensor]) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a is b or (a.shape == b.shape and a.device == b.device
                      and torch.equal(a, b))


class DualSpaceAttentionConv(MessagePassing):
    r"""Attention over graph neighbours, over latent neighbours (the
    :math:`k` nodes of the same graph most similar to the node), and from the
    graph context to the latent neighbours, fused (the "dual-space
    attention" of the seed, §9).  The fused design has no paper of its own;
    its parts are neighbours in a latent space as in `"Geom-GCN"
    <https://arxiv.org/abs/2002.05287>`_ (Pei et al., 2020) and a kNN graph
    rebuilt from the current embeddings as in `"Dynamic Graph CNN"
    <https://arxiv.org/abs/1801.07829>`_ (Wang et al., 2019).

    With :math:`\mathcal{N}(i)` the graph neighbours of node :math:`i`
    (``edge_index``) and :math:`\mathcal{L}(i)` its latent neighbours, the
    :math:`k` nodes :math:`j \ne i` of its graph of highest cosine similarity
    :math:`\cos(\mathbf{x}_i, \mathbf{x}_j)` of the layer's input features
    (:func:`~pyg_attn.functional.latent_knn`), per head:

    .. math::
        \mathbf{g}_i &= \sum_{j \in \mathcal{N}(i)}
        \operatorname{softmax}_j\Big(\tfrac{(\mathbf{W}^G_q \mathbf{x}_i)^\top
        \mathbf{W}^G_k \mathbf{x}_j}{\sqrt{C}}\Big)\, \mathbf{W}^G_v
        \mathbf{x}_j \qquad \text{(graph)}

        \mathbf{l}_i &= \sum_{j \in \mathcal{L}(i)}
        \operatorname{softmax}_j\Big(\tfrac{(\mathbf{W}^L_q \mathbf{x}_i)^\top
        \mathbf{W}^L_k \mathbf{x}_j}{\sqrt{C}}\Big)\, \mathbf{W}^L_v
        \mathbf{x}_j \qquad \text{(latent)}

        \mathbf{c}_i &= \sum_{j \in \mathcal{L}(i)}
        \operatorname{softmax}_j\Big(\tfrac{(\mathbf{W}^X_q \mathbf{g}_i)^\top
        \mathbf{W}^X_k \mathbf{x}_j}{\sqrt{C}}\Big)\, \mathbf{W}^X_v
        \mathbf{x}_j \qquad \text{(cross)}

    where the cross query :math:`\mathbf{g}_i` is the graph attention's
    output with its heads concatenated.  Each of the three is a
    :class:`~pyg_attn.nn.conv.DotProductAttentionConv` without root weight
    (``graph_attention``, ``latent_attention``, ``cross_attention``, the last
    one bipartite from ``x`` to :math:`\mathbf{g}`); edge features
    (``edge_dim``) enter the graph attention only.  With heads concatenated
    (or averaged, ``concat=False``) into :math:`\mathbf{g}_i,
    \mathbf{l}_i, \mathbf{c}_i \in \mathbb{R}^D`, the fusion is

    .. math::
        \mathbf{x}'_i = \mathbf{W}_f [\mathbf{g}_i \,\|\, \mathbf{l}_i \,\|\,
        \mathbf{c}_i] + \mathbf{W}_s \mathbf{x}_i
        \quad (\texttt{fusion='linear'}), \qquad
        \mathbf{x}'_i = \sum_{s \in \{g, l, c\}} \pi_{i,s} \mathbf{s}_i +
        \mathbf{W}_s \mathbf{x}_i,\;
        \boldsymbol{\pi}_i = \operatorname{softmax}(\mathbf{W}_\pi
        [\mathbf{g}_i \,\|\, \mathbf{l}_i \,\|\, \mathbf{c}_i])
        \quad (\texttt{fusion='gate'}),

    the skip term :math:`\mathbf{W}_s \mathbf{x}_i` only with
    ``root_weight=True`` (``root_weight=False`` with the linear fusion is
    the seed's design).

    **Latent neighbours.**  They are chosen by cosine similarity of the
    layer's input ``x`` (the current embeddings; no learned projection, so
    the choice does not depend on the weights), within the graph of each
    node given by ``batch``, excluding the node itself; a node of a graph of
    :math:`n \le k` nodes gets the other :math:`n - 1`.  The search is exact
    and never holds an :math:`N \times N` matrix: blockwise in torch for
    graphs up to ``knn_threshold`` nodes, faiss above it (the ``hnsw``
    extra).  The selection is not differentiated (``x`` is detached for
    it); the attention over the selected neighbours is.

    * In training, the neighbours are recomputed at training forwards
      :math:`1, 1 + n, 1 + 2n, \ldots` for ``refresh_interval=n`` and
      reused in between (``None``: computed once), and also whenever the
      input is not the one they were computed for: a different number of
      nodes, ``batch`` or ``edge_index`` (compared by content).  Between
      refreshes they are those of the embeddings at the last refresh.  A
      cache is never reused for another node count.
    * In eval mode they are searched at every forward (the output is a
      function of the input alone) and the training cache is left alone;
      the one exception is exact: when ``x`` is the very tensor of the last
      eval forward, unmodified (same object, same version counter; e.g. the
      raw features of a first layer, evaluated every epoch) and ``batch`` is
      the same, the last result is reused.
    * ``latent_edge_index=`` passes precomputed latent edges (row 0 the
      neighbour, row 1 the node, e.g. from :func:`latent_knn`); the layer
      then does no search and touches no cache.
    * ``last_latent_edge_index`` holds the latent edges of the last forward;
      :meth:`clear_latent_cache` (and :meth:`reset_parameters`) forget the
      caches; a pickled or deep-copied layer starts without them.

    **torch.compile.**  The search (``topk``, ``tolist``, faiss) runs under
    :func:`torch.compiler.disable`: a documented graph break, everything
    around it compiles.  With ``latent_edge_index=`` given the layer has no
    graph break and runs under ``torch.compile(fullgraph=True)``.

    Time per forward is :math:`O((|\mathcal{E}| + N k) H C)` plus the search,
    :math:`O(\sum_g N_g^2 F)` per refresh; memory is
    :math:`O((|\mathcal{E}| + N k) H)` plus node-sized tensors.

    Args:
        in_channels (int): input size, or -1 to infer it at the first call.
            Bipartite input is not supported (latent neighbours are searched
            among the nodes of ``x``).
        out_channels (int): channels per head (C).
        heads (int, optional): number of heads H. (default: :obj:`1`)
        k (int, optional): latent neighbours per node. (default: :obj:`16`)
        concat (bool, optional): concatenate heads (:math:`D = HC`), else
            average them (:math:`D = C`). (default: :obj:`True`)
        dropout (float, optional): dropout on the attention weights of all
            three attentions. (default: :obj:`0.`)
        refresh_interval (int, optional): training forwards per search of the
            latent neighbours; :obj:`None` searches once per input.
            (default: :obj:`1`)
        fusion (str, optional): ``'linear'`` or ``'gate'``.
            (default: :obj:`'linear'`)
        knn_threshold (int, optional): graphs of more nodes are searched with
            faiss. (default: :obj:`50_000`)
        edge_dim (int, optional): edge feature size of the graph attention.
            (default: :obj:`None`)
        bias (bool, optional): biases of the projections.
            (default: :obj:`True`)
        root_weight (bool, optional): add the skip projection
            :math:`\mathbf{W}_s \mathbf{x}_i`. (default: :obj:`True`)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})`, edge
          indices :math:`(2, |\mathcal{E}|)`, batch vector
          :math:`(|\mathcal{V}|)` *(optional)*, edge features
          :math:`(|\mathcal{E}|, D_e)` *(optional)*, latent edge indices
          :math:`(2, |\mathcal{L}|)` *(optional)*
        - **output:** :math:`(|\mathcal{V}|, H \cdot C)` or
          :math:`(|\mathcal{V}|, C)` if ``concat=False``; with
          ``return_attention_weights=True`` also the graph attention
          :math:`((2, |\mathcal{E}|), (|\mathcal{E}|, H))` and the latent
          edges with the latent and cross attention weights
          :math:`((2, |\mathcal{L}|), (|\mathcal{L}|, H),
          (|\mathcal{L}|, H))`

    Raises:
        ValueError: ``k``, ``heads`` or ``out_channels`` below 1;
            ``refresh_interval`` below 1; unknown ``fusion``; tuple
            ``in_channels`` or ``x`` (bipartite); bad ``edge_index``,
            ``latent_edge_index``, ``batch`` or ``edge_attr``; features of a
            width other than ``in_channels``.
        ImportError: a graph above ``knn_threshold`` nodes without faiss.

    Example::

        >>> conv = DualSpaceAttentionConv(16, 8, heads=2, k=4)
        >>> x, edge_index = torch.randn(10, 16), torch.tensor([[0, 1, 2], [1, 2, 3]])
        >>> conv(x, edge_index).shape
        torch.Size([10, 16])
        >>> conv.last_latent_edge_index.shape  # 4 latent neighbours per node
        torch.Size([2, 40])
    """
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        heads: int = 1,
        k: int = 16,
        concat: bool = True,
        dropout: float = 0.,
        refresh_interval: Optional[int] = 1,
        fusion: str = 'linear',
        knn_threshold: int = DEFAULT_THRESHOLD,
        edge_dim: Optional[int] = None,
        bias: bool = True,
        root_weight: bool = True,
        **kwargs,
    ):
        check_k(k)
        check_heads(heads)
        check_channels(out_channels)
        check_dropout(dropout)
        if isinstance(in_channels, (tuple, list)):
            raise ValueError(
                f"'in_channels' ({in_channels}) must be an int: "
                "DualSpaceAttentionConv searches latent neighbours among the "
                "nodes of one set, so it takes no bipartite input")
        if refresh_interval is not None and (
                not isinstance(refresh_interval, int) or refresh_interval < 1):
            raise ValueError(f"'refresh_interval' ({refresh_interval}) must "
                             "be an integer >= 1, or None to search once")
        if fusion not in FUSIONS:
            raise ValueError(f"unknown 'fusion' ({fusion!r}); use one of "
                             f"{', '.join(map(repr, FUSIONS))}")
        if not isinstance(knn_threshold, int) or knn_threshold < 1:
            raise ValueError(f"'knn_threshold' ({knn_threshold}) must be an "
                             "integer >= 1")
        super().__init__(node_dim=0, **kwargs)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.k = k
        self.concat = concat
        self.dropout = dropout
        self.refresh_interval = refresh_interval
        self.fusion = fusion
        self.knn_threshold = knn_threshold
        self.edge_dim = edge_dim
        self.root_weight = root_weight

        def attention(channels, **extra):
            return DotProductAttentionConv(channels, out_channels, heads=heads,
                                           dropout=dropout, bias=bias,
                                           root_weight=False, **extra)

        self.graph_attention = attention(in_channels, edge_dim=edge_dim)
        self.latent_attention = attention(in_channels)
        self.cross_attention = attention((in_channels, heads * out_channels))
        out_size = heads * out_channels if concat else out_channels
        if fusion == 'linear':
            self.lin_fusion = Linear(3 * out_size, out_size, bias=bias)
            self.register_parameter('lin_gate', None)
        else:
            self.register_parameter('lin_fusion', None)
            self.lin_gate = Linear(3 * out_size, 3, bias=bias)
        if root_weight:
            self.lin_skip = Linear(in_channels, out_size, bias=bias)
        else:
            self.register_parameter('lin_skip', None)
        self.last_latent_edge_index: Optional[Tensor] = None
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        self.graph_attention.reset_parameters()
        self.latent_attention.reset_parameters()
        self.cross_attention.reset_parameters()
        for lin in (self.lin_fusion, self.lin_gate, self.lin_skip):
            if lin is not None:
                lin.reset_parameters()
        self.clear_latent_cache()

    def clear_latent_cache(self) -> None:
        """Forgets the cached latent neighbours: the next training forward
        searches them again."""
        # ((k, knn_threshold), num_nodes, batch, edge_index, latent edges)
        self._cache = None
        # ((k, knn_threshold), weakref to x, its version, batch, latent edges)
        self._eval_cache = None
        self._forwards_since_refresh = 0

    def __getstate__(self):
        # the caches are derived (and hold a weakref): a pickled or copied
        # layer starts without them
        state = super().__getstate__().copy()
        state.update(_cache=None, _eval_cache=None, _forwards_since_refresh=0)
        return state

    @torch.compiler.disable(reason='the latent neighbour search reads '
                            'the data (topk, tolist, faiss)')
    def latent_neighbours(self, x: Tensor, edge_index: Tensor,
                          batch: Optional[Tensor] = None) -> Tensor:
        """The latent edges ``[2, N k]`` a forward on this input uses,
        searched or from a cache by the rules of the class docstring.  A
        graph break under ``torch.compile``."""
        search = (self.k, self.knn_threshold)
        if not self.training:
            cache = self._eval_cache
            if (cache is not None and cache[0] == search and cache[1]() is x
                    and cache[2] == x._version and _same(cache[3], batch)):
                return cache[4]  # the same tensor, unchanged: exact
            latent = latent_knn(x, self.k, batch,
                                threshold=self.knn_threshold)[0]
            self._eval_cache = (search, weakref.ref(x), x._version, batch,
                                latent)
            return latent
        cache = self._cache
        valid = (cache is not None and cache[0] == search
                 and cache[1] == x.size(0) and _same(cache[2], batch)
                 and _same(cache[3], edge_index))
        due = (self.refresh_interval is not None
               and self._forwards_since_refresh >= self.refresh_interval)
        if not valid or due:
            latent = latent_knn(x, self.k, batch,
                                threshold=self.knn_threshold)[0]
            self._cache = (search, x.size(0), batch, edge_index, latent)
            self._forwards_since_refresh = 0
        self._forwards_since_refresh += 1
        return self._cache[4]

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_attr: Optional[Tensor] = None,
        batch: Optional[Tensor] = None,
        latent_edge_index: Optional[Tensor] = None,
        return_attention_weights: bool = False,
    ) -> Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor],
                             Tuple[Tensor, Tensor, Tensor]]]:
        """Returns ``out``, or with ``return_attention_weights=True``
        ``(out, (edge_index, alpha), (latent_edge_index, alpha_latent,
        alpha_cross))``, weights ``[E, H]`` and ``[L, H]`` before dropout.

        ``batch`` assigns nodes to graphs for the latent search (unsorted is
        fine); ``latent_edge_index`` skips the search (see the class
        docstring)."""
        if not isinstance(x, Tensor):
            raise ValueError(
                "'x' must be a tensor: DualSpaceAttentionConv searches latent "
                "neighbours among the nodes of one set, so it takes no "
                "bipartite (x_src, x_dst) input; pass the sampled subgraph's "
                "x with edge_index over it")
        if x.dim() != 2:
            raise ValueError(f"'x' must be 2-D [num_nodes, channels], got "
                             f"shape {tuple(x.shape)}")
        num_nodes = x.size(0)
        check_features((x, x), self.in_channels)
        check_edge_index(edge_index, num_nodes, num_nodes)
        check_batch(batch, num_nodes)
        if latent_edge_index is None:
            latent_edge_index = self.latent_neighbours(x, edge_index, batch)
        else:
            try:
                check_edge_index(latent_edge_index, num_nodes, num_nodes)
            except ValueError as error:
                raise ValueError(str(error).replace(
                    "'edge_index'", "'latent_edge_index'")) from None
        self.last_latent_edge_index = latent_edge_index

        graph, (_, alpha) = self.graph_attention(
            x, edge_index, edge_attr,
            return_attention_weights=True)  # [N, H * C]
        latent, (_, alpha_latent) = self.latent_attention(
            x, latent_edge_index, return_attention_weights=True)
        cross, (_, alpha_cross) = self.cross_attention(
            (x, graph), latent_edge_index, return_attention_weights=True)

        branches = [graph, latent, cross]
        if not self.concat:
            H, C = self.heads, self.out_channels
            branches = [b.view(-1, H, C).mean(dim=1)
                        for b in branches]  # [N, C] each
        fused = torch.cat(branches, dim=-1)  # [N, 3 D]
        if self.lin_fusion is not None:
            out = self.lin_fusion(fused)  # [N, D]
        else:
            gate = self.lin_gate(fused).softmax(dim=-1)  # [N, 3]
            out = (torch.stack(branches, dim=1) *
                   gate.unsqueeze(-1)).sum(dim=1)  # [N, D]
        if self.lin_skip is not None:
            out = out + self.lin_skip(x)
        if return_attention_weights:
            return out, (edge_index, alpha), (latent_edge_index, alpha_latent,
                                              alpha_cross)
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels}, heads={self.heads}, k={self.k})')
