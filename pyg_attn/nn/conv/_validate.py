"""Boundary checks shared by the layers: each raises a ValueError that names
the offending value and the fix."""
from typing import Optional, Tuple, Union

import torch
from torch import Tensor


def check_heads(heads: int) -> None:
    if not isinstance(heads, int) or heads < 1:
        raise ValueError(f"'heads' ({heads}) must be an integer >= 1")


def check_channels(out_channels: int) -> None:
    if not isinstance(out_channels, int) or out_channels < 1:
        raise ValueError(
            f"'out_channels' ({out_channels}) must be an integer >= 1")


def check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"'dropout' ({dropout}) must lie in [0, 1)")


def as_pair(x: Union[Tensor, Tuple[Tensor, Tensor]]) -> Tuple[Tensor, Tensor]:
    """``x`` or ``(x_src, x_dst)`` as a pair, each checked to be 2-D."""
    pair = (x, x) if isinstance(x, Tensor) else tuple(x)
    if len(pair) != 2 or not all(isinstance(t, Tensor) for t in pair):
        raise ValueError("'x' must be a tensor or a pair of tensors "
                         "(x_src, x_dst)")
    for name, t in zip(('x_src', 'x_dst'), pair):
        if t.dim() != 2:
            raise ValueError(f"'{name}' must be 2-D [num_nodes, channels], got "
                             f"shape {tuple(t.shape)}")
    return pair


def check_features(x: Tuple[Tensor, Tensor],
                   in_channels: Union[int, Tuple[int, int]]) -> None:
    """Feature widths against ``in_channels`` (-1 means lazy: not checked)."""
    sizes = (in_channels, in_channels) if isinstance(in_channels,
                                                     int) else in_channels
    for name, t, size in zip(('x_src', 'x_dst'), x, sizes):
        if size != -1 and t.size(-1) != size:
            raise ValueError(
                f"'{name}' has {t.size(-1)} features but the layer was built "
                f"with in_channels={in_channels}; build it with "
                f"in_channels={t.size(-1)} (or -1 to infer it)")


def check_edge_index(edge_index: Tensor, num_src: int, num_dst: int) -> None:
    """Shape and dtype always; the index range in eager mode only (it needs
    the data, which would break a compiled graph)."""
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or \
            edge_index.size(0) != 2:
        shape = tuple(edge_index.shape) if isinstance(edge_index,
                                                      Tensor) else None
        raise ValueError(f"'edge_index' must have shape [2, num_edges], got "
                         f"{shape}; transpose it if it is [num_edges, 2]")
    if edge_index.dtype not in (torch.long, torch.int):
        raise ValueError(f"'edge_index' must be an integer tensor, got "
                         f"{edge_index.dtype}; use edge_index.long()")
    if torch.compiler.is_compiling() or edge_index.numel() == 0:
        return
    for row, name, n in ((0, 'source', num_src), (1, 'destination', num_dst)):
        lo, hi = int(edge_index[row].min()), int(edge_index[row].max())
        if lo < 0 or hi >= n:
            raise ValueError(
                f"'edge_index' has {name} index {hi if hi >= n else lo} but "
                f"there are {n} {name} nodes; indices must lie in [0, {n})")


def check_edge_attr(edge_attr: Optional[Tensor], num_edges: int,
                    edge_dim: Optional[int]) -> Optional[Tensor]:
    """``edge_attr`` as ``[E, edge_dim]`` (a 1-D tensor is one feature)."""
    if edge_attr is None:
        return None
    if edge_dim is None:
        raise ValueError("'edge_attr' was given but the layer was built "
                         "without 'edge_dim'; build it with "
                         f"edge_dim={edge_attr.size(-1) if edge_attr.dim() > 1 else 1}"
                         " to use edge features, or do not pass them")
    if edge_attr.dim() == 1:
        edge_attr = edge_attr.view(-1, 1)
    if edge_attr.dim() != 2 or edge_attr.size(0) != num_edges:
        raise ValueError(f"'edge_attr' has shape {tuple(edge_attr.shape)} but "
                         f"'edge_index' has {num_edges} edges; pass one row "
                         "per edge")
    if edge_attr.size(1) != edge_dim:
        raise ValueError(f"'edge_attr' has {edge_attr.size(1)} features but "
                         f"the layer was built with edge_dim={edge_dim}")
    return edge_attr


def check_inputs(x: Union[Tensor, Tuple[Tensor, Tensor]], edge_index: Tensor,
                 edge_attr: Optional[Tensor], in_channels,
                 edge_dim: Optional[int]
                 ) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """The boundary checks of a layer over ``(x, edge_index, edge_attr)``:
    returns ``x_src``, ``x_dst`` and ``edge_attr`` as ``[E, edge_dim]``,
    which must be given when the layer was built with ``edge_dim``."""
    x_src, x_dst = as_pair(x)
    check_features((x_src, x_dst), in_channels)
    check_edge_index(edge_index, x_src.size(0), x_dst.size(0))
    edge_attr = check_edge_attr(edge_attr, edge_index.size(1), edge_dim)
    if edge_dim is not None and edge_attr is None:
        raise ValueError(f"the layer was built with edge_dim={edge_dim} but "
                         "no 'edge_attr' was given")
    return x_src, x_dst, edge_attr
