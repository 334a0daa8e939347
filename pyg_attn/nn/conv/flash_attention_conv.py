import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from pyg_attn.functional import sparse
from pyg_attn.functional.online_softmax import (EDGES, attention_weights,
                                                online_softmax_attention)
from pyg_attn.nn.conv.dot_product_attention_conv import DotProductAttentionConv


class FlashAttentionConv(DotProductAttentionConv):
    r"""Memory-efficient exact dot-product attention: the function of
    :class:`DotProductAttentionConv`, computed in chunks of edges with an
    online softmax (`FlashAttention <https://arxiv.org/abs/2205.14135>`_ on a
    sparse graph).

    .. math::
        \mathbf{x}'_i = \mathbf{W}_s \mathbf{x}_i + \sum_{j \in \mathcal{N}(i)}
        \operatorname{softmax}_j\left(\frac{\mathbf{q}_i^\top
        (\mathbf{k}_j + \mathbf{W}_e \mathbf{e}_{ij})}{\sqrt{C}}\right)
        (\mathbf{v}_j + \mathbf{W}_e \mathbf{e}_{ij})

    Each chunk of ``chunk_size`` edges updates a per-destination running
    maximum, sum and accumulator (see
    :func:`pyg_attn.functional.online_softmax.online_softmax_attention`);
    backward keeps only node-sized tensors and the per-destination
    log-sum-exp and recomputes each chunk.  Memory is
    :math:`O(N H C + \text{chunk} \cdot H C)`: no ``[E, H, C]`` tensor and
    no ``[E, H]`` tensor either (unless attention weights are asked for).
    Parameters and state_dict are those of :class:`DotProductAttentionConv`
    (and so of PyG's ``TransformerConv``).  Attention dropout draws its mask
    per chunk from a seed and replays it in backward.  Under
    ``torch.compile`` the edges form one chunk, which the compiler fuses.

    Args:
        in_channels, out_channels, heads, concat, beta, dropout, edge_dim,
        bias, root_weight: as :class:`DotProductAttentionConv`.
        chunk_size (int, optional): edges per chunk; peak memory falls and
            Python overhead grows as it shrinks.  (default: :obj:`None`,
            :func:`~pyg_attn.functional.online_softmax_attention`'s rule: as
            many edges as keep the ``[c, H, C]`` messages and the
            ``[c, edge_dim]`` edge features each within
            :data:`pyg_attn.functional.sparse.CHUNK_ELEMENTS` values, 4096
            at 8 heads of 32)

    Shapes:
        as :class:`DotProductAttentionConv`.

    Raises:
        ValueError: ``chunk_size < 1``, and everything
            :class:`DotProductAttentionConv` raises.

    Example::

        >>> conv = FlashAttentionConv(16, 8, heads=4, edge_dim=3, chunk_size=2)
        >>> x, edge_index = torch.randn(5, 16), torch.tensor([[0, 1, 2], [1, 2, 3]])
        >>> conv(x, edge_index, torch.randn(3, 3)).shape
        torch.Size([5, 32])
    """
    def __init__(self, *args, chunk_size: Optional[int] = None, **kwargs):
        sparse.check_chunk_size(chunk_size)
        self.chunk_size = chunk_size
        super().__init__(*args, **kwargs)

    def _attend(self, query: Tensor, key: Tensor, value: Tensor,
                edge_attr: Optional[Tensor], edge_index: Tensor, num_dst: int,
                need_weights: bool) -> Tuple[Tensor, Optional[Tensor]]:
        H, C = self.heads, self.out_channels
        src, dst = edge_index[0], edge_index[1]
        scale = 1.0 / math.sqrt(C)
        tensors, gather = [query, key, value], [dst, src, src]
        if edge_attr is not None:
            tensors += [edge_attr, self.lin_edge.weight]
            gather += [EDGES, None]

        # each chunk sees its rows: t[0] queries of its destinations, t[1]
        # and t[2] keys and values of its sources, t[3] its edge features
        def with_edges(t, rows: Tensor) -> Tensor:
            if len(t) == 3:
                return rows
            return rows + F.linear(t[3], t[4]).view(-1, H, C)

        def score_fn(t, start: int, end: int) -> Tensor:
            key_e = with_edges(t, t[1])  # [c, H, C]
            return torch.linalg.vecdot(t[0], key_e) * scale  # [c, H]

        def message_fn(t, start: int, end: int) -> Tensor:
            return with_edges(t, t[2])  # [c, H, C]

        out, lse = online_softmax_attention(score_fn, message_fn, tensors,
                                            dst, num_dst, self.chunk_size,
                                            self.dropout, self.training,
                                            gather)
        alpha = None
        if need_weights:
            alpha = attention_weights(score_fn, tensors, lse, dst,
                                      self.chunk_size, gather)
        return out, alpha

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels}, heads={self.heads}, '
                f'chunk_size={self.chunk_size})')
