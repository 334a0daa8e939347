"""Slow, obviously-correct references: a Python loop over destination
nodes, each one's incoming edges softmaxed on their own."""
import torch
from torch import Tensor


def reference_softmax(logits: Tensor, dst: Tensor, num_nodes: int) -> Tensor:
    """Softmax of ``logits`` ``[E, H]`` over each destination's edges, one
    node at a time, in float64."""
    out = torch.zeros_like(logits, dtype=torch.float64)
    for i in range(num_nodes):
        mask = dst == i
        if mask.any():
            out[mask] = torch.softmax(logits[mask].double(), dim=0)
    return out


def reference_attention(logits: Tensor, messages: Tensor, dst: Tensor,
                        num_nodes: int) -> Tensor:
    """:math:`o_i = \\sum_{e: d_e = i} \\operatorname{softmax}(s)_e m_e`
    for per-edge ``logits`` ``[E, H]`` and ``messages`` ``[E, H, C]``, one
    destination at a time; nodes without edges get zeros."""
    out = messages.new_zeros((num_nodes,) + tuple(messages.shape[1:]))
    for i in range(num_nodes):
        mask = dst == i
        if mask.any():
            alpha = torch.softmax(logits[mask], dim=0)  # [E_i, H]
            out[i] = (alpha.unsqueeze(-1) * messages[mask]).sum(dim=0)
    return out


def reference_dot_product_attention(query: Tensor, key: Tensor, value: Tensor,
                                    edge_index: Tensor, num_dst: int,
                                    edge_emb: Tensor = None) -> Tensor:
    """Scaled dot-product attention over edges from ``[N, H, C]`` queries,
    keys and values, with an optional ``[E, H, C]`` edge embedding added to
    keys and values."""
    src, dst = edge_index
    key_e, value_e = key[src], value[src]
    if edge_emb is not None:
        key_e, value_e = key_e + edge_emb, value_e + edge_emb
    logits = (query[dst] * key_e).sum(-1) / query.size(-1)**0.5  # [E, H]
    return reference_attention(logits, value_e, dst, num_dst)
