"""Slow, obviously-correct references: a Python loop over destination
nodes, each one's incoming edges softmaxed on their own."""
import math

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


def reference_local_global_attention(query: Tensor, key: Tensor,
                                     value: Tensor, edge_index: Tensor,
                                     partition: Tensor, num_dst: int,
                                     edge_emb: Tensor = None) -> Tensor:
    """Separate masked attentions, one per edge set: partition ``p`` runs
    :func:`reference_dot_product_attention` on ``query[:, p]``,
    ``key[:, p]``, ``value[:, p]`` (``[N, P, H, C]``) over its own edges
    only, with ``edge_emb[:, p]`` (``[E, P, H, C]``) if given.  Returns
    ``[num_dst, P, H, C]``; a node without edges of a partition gets zeros
    there."""
    outs = []
    for p in range(query.size(1)):
        mask = partition == p
        emb = None if edge_emb is None else edge_emb[mask][:, p]
        outs.append(reference_dot_product_attention(
            query[:, p], key[:, p], value[:, p], edge_index[:, mask], num_dst,
            emb))
    return torch.stack(outs, dim=1)


def reference_rotation(pos, dim: int, base: float = 10000.0,
                       dtype=torch.float64, rotary_dim: int = None) -> Tensor:
    r"""The ``[dim, dim]`` block-diagonal RoPE matrix of one position
    ``pos`` (a number or ``P`` components), built entry by entry: the
    ``dim / 2`` channel pairs form ``P`` consecutive groups (the first
    ``(dim / 2) mod P`` one pair larger); pair ``k`` of group ``g`` (size
    ``m``) turns by ``pos[g] * base ** (-2 k / (2 m))``.  With
    ``rotary_dim`` only the first ``rotary_dim`` channels turn (in its
    ``rotary_dim / 2`` pairs) and the matrix is the identity on the rest."""
    pos = torch.as_tensor(pos, dtype=torch.float64).reshape(-1).tolist()
    half, num = (rotary_dim or dim) // 2, len(pos)
    rot = torch.eye(dim, dtype=torch.float64)
    pair = 0
    for g in range(num):
        size = half // num + (1 if g < half % num else 0)
        for k in range(size):
            theta = pos[g] / base**(2 * k / (2 * size))
            c, s = math.cos(theta), math.sin(theta)
            a, b = 2 * pair, 2 * pair + 1
            rot[a, a], rot[a, b], rot[b, a], rot[b, b] = c, -s, s, c
            pair += 1
    return rot.to(dtype)


def reference_rotary_attention(query: Tensor, key: Tensor, value: Tensor,
                               edge_index: Tensor, num_dst: int,
                               edge_pos: Tensor = None,
                               node_pos: Tensor = None,
                               base: float = 10000.0,
                               rotate_value: bool = False,
                               edge_emb: Tensor = None,
                               rotary_dim: int = None) -> Tensor:
    r"""Rotary attention with explicit rotation matrices
    (:func:`reference_rotation`), edge by edge: the key
    :math:`\mathbf{k}_j + \mathbf{e}_{ij}` of edge ``e`` is multiplied by
    :math:`R(\mathbf{p}_e)` (``edge_pos`` ``[E, P]``) and, with ``node_pos``
    ``[N, P]`` (source and destination nodes shared), by
    :math:`R(\mathbf{p}_j)`, the query by :math:`R(\mathbf{p}_i)`.  With
    ``rotate_value`` the value turns as the key does, and the output of node
    ``i`` back by :math:`R(\mathbf{p}_i)^\top`.  ``[N, H, C]`` inputs,
    ``[num_dst, H, C]`` output; ``rotary_dim`` as in
    :func:`reference_rotation`."""
    src, dst = edge_index
    E, C = src.numel(), query.size(-1)
    eye = torch.eye(C, dtype=query.dtype)
    rot_q = [eye] * num_dst
    rot_k = [eye] * E
    if node_pos is not None:
        rot_q = [reference_rotation(node_pos[i], C, base, query.dtype,
                                    rotary_dim)
                 for i in range(num_dst)]
        rot_k = [reference_rotation(node_pos[j], C, base, query.dtype,
                                    rotary_dim)
                 for j in src.tolist()]
    if edge_pos is not None:
        rot_k = [reference_rotation(edge_pos[e], C, base, query.dtype,
                                    rotary_dim) @ r
                 for e, r in zip(range(E), rot_k)]
    rot_q = torch.stack(rot_q)  # [N, C, C]
    rot_k = torch.stack(rot_k) if E else eye.new_zeros(0, C, C)  # [E, C, C]
    q = torch.einsum('ncd,nhd->nhc', rot_q, query)
    key_e, value_e = key[src], value[src]
    if edge_emb is not None:
        key_e, value_e = key_e + edge_emb, value_e + edge_emb
    key_e = torch.einsum('ecd,ehd->ehc', rot_k, key_e)
    if rotate_value:
        value_e = torch.einsum('ecd,ehd->ehc', rot_k, value_e)
    logits = (q[dst] * key_e).sum(-1) / C**0.5  # [E, H]
    out = reference_attention(logits, value_e, dst, num_dst)
    if rotate_value and node_pos is not None:
        out = torch.einsum('ndc,nhd->nhc', rot_q, out)  # R^T
    return out


def reference_dense_attention(query: Tensor, key: Tensor, value: Tensor,
                              edge_index: Tensor, num_dst: int) -> Tensor:
    """Scaled dot-product attention of ``[N_dst, H, C]`` queries over
    ``[N_src, H, C]`` keys and values as dense ``[H, N_dst, N_src]``
    matrices: each pair weighted by its number of edges ``j -> i``
    (repeated edges count as often as they appear), destinations without
    edges get zeros."""
    src, dst = edge_index
    counts = query.new_zeros(num_dst, key.size(0)).index_put_(
        (dst, src), query.new_ones(src.numel()), accumulate=True)
    logits = torch.einsum('ihc,jhc->hij', query, key) / math.sqrt(
        query.size(-1))  # [H, N_dst, N_src]
    logits = logits.masked_fill(counts == 0, float('-inf'))
    top = logits.amax(dim=-1, keepdim=True).clamp(
        min=torch.finfo(logits.dtype).min)
    weights = counts * (logits - top).exp()  # [H, N_dst, N_src]
    total = weights.sum(dim=-1, keepdim=True)
    weights = weights / torch.where(total > 0, total, torch.ones_like(total))
    return torch.einsum('hij,jhc->ihc', weights, value)  # [N_dst, H, C]


def reference_dual_space_attention(conv, x: Tensor, edge_index: Tensor,
                                   latent_edge_index: Tensor,
                                   edge_attr: Tensor = None) -> Tensor:
    """:class:`~pyg_attn.nn.DualSpaceAttentionConv` (without dropout) with
    its own weights, from dense attention matrices over the given graph and
    latent edges: graph attention, latent attention, cross attention whose
    queries are the graph attention's output, fused.  With ``edge_attr`` the
    graph attention is the per-destination loop of
    :func:`reference_dot_product_attention` instead (an edge feature belongs
    to an edge, not to a node pair)."""
    N, H, C = x.size(0), conv.heads, conv.out_channels

    def project(attention, x_dst, x_src):
        return (attention.lin_query(x_dst).view(-1, H, C),
                attention.lin_key(x_src).view(-1, H, C),
                attention.lin_value(x_src).view(-1, H, C))

    qkv = project(conv.graph_attention, x, x)
    if edge_attr is None:
        graph = reference_dense_attention(*qkv, edge_index, N)
    else:
        edge_emb = conv.graph_attention.lin_edge(edge_attr).view(-1, H, C)
        graph = reference_dot_product_attention(*qkv, edge_index, N, edge_emb)
    graph = graph.reshape(N, H * C)
    latent = reference_dense_attention(*project(conv.latent_attention, x, x),
                                       latent_edge_index, N).reshape(N, H * C)
    cross = reference_dense_attention(
        *project(conv.cross_attention, graph, x), latent_edge_index,
        N).reshape(N, H * C)
    branches = [graph, latent, cross]
    if not conv.concat:
        branches = [b.view(N, H, C).mean(dim=1) for b in branches]
    if conv.fusion == 'linear':
        out = conv.lin_fusion(torch.cat(branches, dim=-1))
    else:
        gate = torch.softmax(conv.lin_gate(torch.cat(branches, dim=-1)), -1)
        out = sum(gate[:, s:s + 1] * b for s, b in enumerate(branches))
    if conv.root_weight:
        out = out + conv.lin_skip(x)
    return out
