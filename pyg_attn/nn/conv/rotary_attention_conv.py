import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from pyg_attn.functional import (edge_softmax, rope_angles, rope_frequencies,
                                 rope_rotate)
from pyg_attn.functional.online_softmax import EDGES
from pyg_attn.functional.recompute import edge_map
from pyg_attn.nn.conv._validate import check_inputs
from pyg_attn.nn.conv.dot_product_attention_conv import DotProductAttentionConv


def _check_pos(pos: Tensor, name: str, rows: int, what: str,
               pos_dim: int) -> Tensor:
    """``pos`` as ``[rows, pos_dim]`` (a 1-D tensor is one component)."""
    if not isinstance(pos, Tensor) or pos.dtype == torch.bool or \
            pos.is_complex():
        raise ValueError(f"'{name}' must be a real or integer tensor")
    if pos.dim() == 1:
        pos = pos.view(-1, 1)
    if pos.dim() != 2 or pos.size(0) != rows:
        raise ValueError(f"'{name}' has shape {tuple(pos.shape)} but there "
                         f"are {rows} {what}; pass [{rows}] or "
                         f"[{rows}, pos_dim]")
    if pos.size(1) != pos_dim:
        raise ValueError(f"'{name}' has {pos.size(1)} components but the "
                         f"layer was built with pos_dim={pos_dim}")
    return pos


class _Named:
    """A chunk's views (:func:`edge_map`) read by name; a view is made when
    it is read."""
    def __init__(self, names, views):
        self.index = {name: i for i, name in enumerate(names)}
        self.views = views

    def __contains__(self, name: str) -> bool:
        return name in self.index

    def __getitem__(self, name: str) -> Tensor:
        return self.views[self.index[name]]


class RotaryAttentionConv(DotProductAttentionConv):
    r"""Dot-product attention with rotary position embeddings on graph
    positions (`RoFormer <https://arxiv.org/abs/2104.09864>`_; seed §6): the
    key of edge :math:`j \to i` is rotated by the edge's position — a graph
    distance, hop count, HNSW layer or edge weight — before the score.

    .. math::
        \alpha_{ij} = \operatorname{softmax}_{j \in \mathcal{N}(i)}
        \frac{\mathbf{q}_i^\top R(\boldsymbol{\theta}(\mathbf{p}_{ij}))
        (\mathbf{k}_j + \mathbf{W}_e \mathbf{e}_{ij})}{\sqrt{C}},
        \qquad
        \mathbf{x}'_i = \mathbf{W}_s \mathbf{x}_i + \sum_{j \in \mathcal{N}(i)}
        \alpha_{ij} (\mathbf{v}_j + \mathbf{W}_e \mathbf{e}_{ij}),

    per head, where :math:`R(\boldsymbol{\theta})` rotates channel pair
    :math:`k` by :math:`\theta_k = p\, b^{-2k/C}` (see
    :mod:`pyg_attn.functional.rope`).  A position with :math:`P`
    components (``edge_pos`` ``[E, P]``) splits the :math:`C/2` pairs into
    :math:`P` groups, each rotated by one component.  With
    ``rotate_value=True`` the value :math:`\mathbf{v}_j +
    \mathbf{W}_e \mathbf{e}_{ij}` is rotated by the same angle.

    In node-position mode (``node_pos`` ``[N, P]``) queries and keys are
    rotated at the nodes, :math:`\mathbf{q}_i \mapsto R(\boldsymbol{\theta}
    (\mathbf{p}_i)) \mathbf{q}_i` and :math:`\mathbf{k}_j \mapsto
    R(\boldsymbol{\theta}(\mathbf{p}_j)) \mathbf{k}_j`, so the score depends
    on :math:`\mathbf{p}_j - \mathbf{p}_i` only (the form linear attention can
    use); the edge term :math:`\mathbf{W}_e \mathbf{e}_{ij}`, part of the
    key, turns with :math:`\mathbf{k}_j`.  With ``rotate_value`` the values
    are rotated by :math:`\mathbf{p}_j` and the aggregate back by
    :math:`-\mathbf{p}_i`.  Both modes may be combined (the angles add).
    No mode keeps an ``[E, H, C]`` tensor.  Node mode without edge features
    runs :class:`DotProductAttentionConv`'s fused kernels on rotated nodes.
    With edge positions or edge features each edge's key (and value) turns
    by its own angles: those are made a chunk of edges at a time and made
    again in backward (:func:`pyg_attn.functional.recompute.edge_map`):
    per edge only the ``[E, H]`` weights and the ``[E, C/2]`` angles are
    kept, at the price of a second pass.

    Parameter names are those of :class:`DotProductAttentionConv` (and of
    PyG's ``TransformerConv``), so ``load_state_dict`` from either works;
    with all positions zero the two layers compute the same function.
    ``learnable_freqs=True`` adds one parameter, ``freqs`` ``[C/2]``, in the
    module's dtype like any parameter; fixed frequencies are not state and
    are made at each call in the compute precision (float64 for float64
    input, float32 otherwise).

    Args:
        in_channels, out_channels, heads, concat, beta, dropout, edge_dim,
        bias, root_weight: as :class:`DotProductAttentionConv`;
            ``out_channels`` must be even unless ``rotary_dim`` is given.
        pos_dim (int, optional): position components P, at most
            ``rotary_dim / 2``. (default: :obj:`1`)
        base (float, optional): the RoPE base :math:`b`.
            (default: :obj:`10000.`)
        learnable_freqs (bool, optional): learn the frequencies, starting
            from :math:`b^{-2k/C}`. (default: :obj:`False`)
        rotate_value (bool, optional): rotate the values as well.
            (default: :obj:`False`)
        rotary_dim (int, optional): rotate only the first ``rotary_dim``
            channels of each head (even), the rest pass unrotated, as GPT-J
            and GPT-NeoX do; frequencies then use :math:`d =`
            ``rotary_dim``.  (default: :obj:`None`, all ``out_channels``)

    Shapes:
        - **input:** as :class:`DotProductAttentionConv`, plus edge positions
          :math:`(|\mathcal{E}|)` or :math:`(|\mathcal{E}|, P)` and/or node
          positions :math:`(|\mathcal{V}|, P)` (a pair
          ``(pos_src, pos_dst)`` for bipartite input)
        - **output:** as :class:`DotProductAttentionConv`

    Raises:
        ValueError: odd ``out_channels`` (without ``rotary_dim``); odd
            ``rotary_dim`` or one above ``out_channels``; ``pos_dim`` outside
            ``[1, rotary_dim / 2]``; neither ``edge_pos`` nor ``node_pos``
            given, or one of the wrong shape; and everything
            :class:`DotProductAttentionConv` raises.

    Example::

        >>> conv = RotaryAttentionConv(16, 8, heads=4, pos_dim=2)
        >>> x = torch.randn(5, 16)
        >>> edge_index = torch.tensor([[0, 1, 2], [1, 2, 3]])
        >>> edge_pos = torch.tensor([[1., 0.], [2., 1.], [1., 3.]])  # hop, layer
        >>> conv(x, edge_index, edge_pos=edge_pos).shape
        torch.Size([5, 32])
    """
    def __init__(self, *args, pos_dim: int = 1, base: float = 10000.0,
                 learnable_freqs: bool = False, rotate_value: bool = False,
                 rotary_dim: Optional[int] = None, **kwargs):
        super().__init__(*args, **kwargs)
        C = self.out_channels
        if rotary_dim is None:
            if C % 2:
                raise ValueError(
                    f"'out_channels' ({C}) must be even for rotary attention: "
                    f"channels rotate in pairs; use out_channels={C + 1}, or "
                    f"rotate the first rotary_dim={C - 1} channels only")
            rotary_dim = C
        if not isinstance(rotary_dim, int) or rotary_dim % 2 or \
                not 2 <= rotary_dim <= C:
            raise ValueError(f"'rotary_dim' ({rotary_dim}) must be an even "
                             f"integer in [2, out_channels = {C}]")
        if not isinstance(pos_dim, int) or not 1 <= pos_dim <= rotary_dim // 2:
            raise ValueError(f"'pos_dim' ({pos_dim}) must lie in [1, "
                             f"rotary_dim / 2 = {rotary_dim // 2}]: each "
                             "position component rotates at least one "
                             "channel pair")
        self.rotary_dim = rotary_dim
        self.pos_dim = pos_dim
        self.base = base
        self.learnable_freqs = learnable_freqs
        self.rotate_value = rotate_value
        freqs, component = rope_frequencies(rotary_dim, pos_dim, base)
        if learnable_freqs:
            self.freqs = torch.nn.Parameter(freqs)
        else:
            self.register_parameter('freqs', None)
        self.register_buffer('component', component, persistent=False)

    def reset_parameters(self):
        super().reset_parameters()
        if getattr(self, 'freqs', None) is not None:
            with torch.no_grad():
                self.freqs.copy_(rope_frequencies(self.rotary_dim,
                                                  self.pos_dim, self.base)[0])

    def angles(self, pos: Tensor, like: Tensor) -> Tensor:
        """``[rows, rotary_dim / 2]`` rotation angles of ``[rows, P]``
        positions, in the precision of ``like`` (at least float32).  Fixed
        frequencies are made in that precision at each call (a float32
        buffer would lose digits under ``.double()`` and most of them under
        ``.half()``)."""
        freqs = self.freqs
        if freqs is None:
            dtype = torch.promote_types(like.dtype, torch.float32)
            freqs = rope_frequencies(self.rotary_dim, self.pos_dim,
                                     self.base, dtype, pos.device)[0]
        return rope_angles(pos, freqs, self.component)

    def forward(
        self,
        x: Union[Tensor, Tuple[Tensor, Tensor]],
        edge_index: Tensor,
        edge_attr: Optional[Tensor] = None,
        edge_pos: Optional[Tensor] = None,
        node_pos: Optional[Union[Tensor, Tuple[Tensor, Tensor]]] = None,
        return_attention_weights: bool = False,
    ) -> Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor]]]:
        """Returns ``out``, or ``(out, (edge_index, alpha))`` with
        ``return_attention_weights=True`` (``alpha`` before dropout)."""
        H, C = self.heads, self.out_channels
        x_src, x_dst, edge_attr = check_inputs(x, edge_index, edge_attr,
                                               self.in_channels, self.edge_dim)
        if edge_pos is None and node_pos is None:
            raise ValueError("RotaryAttentionConv needs positions: pass "
                             "'edge_pos' [num_edges] or [num_edges, pos_dim] "
                             "(e.g. from pyg_attn.transforms.EdgePosition) "
                             "and/or 'node_pos' [num_nodes, pos_dim]")
        query = self.lin_query(x_dst).view(-1, H, C)
        key = self.lin_key(x_src).view(-1, H, C)
        value = self.lin_value(x_src).view(-1, H, C)

        src_angles = dst_angles = edge_angles = None
        if node_pos is not None:
            pos_src, pos_dst = (node_pos, node_pos) if isinstance(
                node_pos, Tensor) else node_pos
            pos_src = _check_pos(pos_src, 'node_pos', x_src.size(0),
                                 'source nodes', self.pos_dim)
            pos_dst = _check_pos(pos_dst, 'node_pos', x_dst.size(0),
                                 'destination nodes', self.pos_dim)
            # [N, 1, C/2] angles of the source and destination positions
            src_angles = self.angles(pos_src, query).unsqueeze(1)
            dst_angles = self.angles(pos_dst, query).unsqueeze(1)
            query = rope_rotate(query, dst_angles)
            key = rope_rotate(key, src_angles)
            if self.rotate_value:
                value = rope_rotate(value, src_angles)
        if edge_pos is not None:
            edge_pos = _check_pos(edge_pos, 'edge_pos', edge_index.size(1),
                                  'edges', self.pos_dim)
            edge_angles = self.angles(edge_pos, query).unsqueeze(1)
        if edge_angles is None and (src_angles is None or edge_attr is None):
            out, alpha = super()._attend(query, key, value, edge_attr,
                                         edge_index, x_dst.size(0),
                                         return_attention_weights)
        else:
            out, alpha = self._attend_rotated(query, key, value, edge_attr,
                                              edge_index, x_dst.size(0),
                                              edge_angles, src_angles)
        if dst_angles is not None and self.rotate_value:
            out = rope_rotate(out, -dst_angles)  # [N, H, C]

        out = self._combine_heads(out, x_dst)
        if return_attention_weights:
            return out, (edge_index, alpha)
        return out

    def _attend_rotated(self, query: Tensor, key: Tensor, value: Tensor,
                        edge_attr: Optional[Tensor], edge_index: Tensor,
                        num_dst: int, edge_angles: Optional[Tensor],
                        src_angles: Optional[Tensor]
                        ) -> Tuple[Tensor, Tensor]:
        """``[N, H, C]`` aggregates and ``[E, H]`` weights, each edge's key
        (and value) rotated by its ``[E, 1, C/2]`` angles.  Keys (and
        values) come already rotated by the source position; the edge term
        :math:`W_e e_{ij}`, part of the key, is turned by it here
        (``src_angles`` ``[N_src, 1, C/2]``).

        The rotated keys and values are ``[E, H, C]``: they are made a chunk
        of edges at a time by :func:`edge_map` and made again in backward,
        never kept whole."""
        H, C = self.heads, self.out_channels
        src, dst = edge_index[0], edge_index[1]
        num_edges = src.numel()
        # what a chunk of edges reads, by name: (tensor, its rows for the
        # chunk) with the rows an index (queries of the destinations, keys,
        # values and source angles of the sources), EDGES or None (all)
        edge_terms = {}
        if edge_attr is not None:
            edge_terms.update(edge_attr=(edge_attr, EDGES),
                              w_edge=(self.lin_edge.weight, None))
            if src_angles is not None:
                edge_terms['src_angles'] = (src_angles, src)
        if edge_angles is not None:
            edge_terms['edge_angles'] = (edge_angles, EDGES)

        def run(fn, first: dict, **kwargs) -> Tensor:
            inputs = {**first, **edge_terms}
            names = list(inputs)

            def chunk_fn(views, start: int, end: int) -> Tensor:
                return fn(_Named(names, views))

            return edge_map(chunk_fn, [t for t, _ in inputs.values()],
                            num_edges, [g for _, g in inputs.values()],
                            **kwargs)

        def turned(t: '_Named', rows: Tensor) -> Tensor:
            """A chunk's keys or values with the edge term, turned by the
            edge angles: ``[c, H, C]``."""
            if 'edge_attr' in t:
                emb = F.linear(t['edge_attr'], t['w_edge']).view(-1, H, C)
                if 'src_angles' in t:
                    emb = rope_rotate(emb, t['src_angles'])
                rows = rows + emb
            if 'edge_angles' in t:
                rows = rope_rotate(rows, t['edge_angles'])
            return rows

        logits = run(lambda t: torch.linalg.vecdot(
            t['query'], turned(t, t['key'])), dict(query=(query, dst),
                                                     key=(key, src)))
        alpha = edge_softmax(logits / math.sqrt(C), dst, num_dst)  # [E, H]
        weights = F.dropout(alpha, p=self.dropout, training=self.training)

        if not self.rotate_value:
            return self._aggregate(weights, value, edge_attr, edge_index,
                                   num_dst), alpha
        out = run(lambda t: t['weights'].unsqueeze(-1) *
                  turned(t, t['value']), dict(weights=(weights, EDGES),
                                              value=(value, src)),
                  dst=dst, num_dst=num_dst)
        return out.to(value.dtype), alpha

    def __repr__(self) -> str:
        rotary = '' if self.rotary_dim == self.out_channels else \
            f', rotary_dim={self.rotary_dim}'
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels}, heads={self.heads}, '
                f'pos_dim={self.pos_dim}{rotary})')
