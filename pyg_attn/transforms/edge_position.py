from typing import List, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

COMPONENTS = ('hop', 'layer', 'distance', 'weight')


def k_hop_edges(edge_index: Tensor, num_nodes: int, num_hops: int):
    r"""The pairs :math:`(i, l)` whose directed shortest path along
    ``edge_index`` (source to destination) has :math:`2 \le d(i, l) \le K`
    hops, with :math:`d`.

    A breadth-first search from every node at once, by repeated
    propagation: the frontier :math:`F_h` (pairs at exactly :math:`h` hops)
    gives :math:`F_{h+1} = \{(i, l) : (i, j) \in F_h,\ j \to l\}
    \setminus \{\text{pairs seen}\}`, with the diagonal counted as seen (no
    self-pairs) — the pattern of the sparse product :math:`F_h A`, joined
    through the adjacency in CSR form.  Memory is that of the frontier's
    walks, never :math:`N \times N`.

    Returns:
        ``(edge_index [2, E'], hops [E'])`` sorted by hop count, then
        source, then destination.
    """
    n = num_nodes
    keys = torch.unique(edge_index[0] * n + edge_index[1])  # simple pairs
    src, dst = keys // n, keys % n  # sorted by source: CSR order
    ptr = torch.cumsum(torch.bincount(src, minlength=n), 0)
    deg = torch.bincount(src, minlength=n)
    start = ptr - deg
    seen = torch.cat([keys, torch.arange(n, device=keys.device) * (n + 1)])
    frontier = keys[src != dst]
    found, hops = [], []
    for hop in range(2, num_hops + 1):
        if frontier.numel() == 0:
            break
        f_src, f_dst = frontier // n, frontier % n
        counts = deg[f_dst]  # walks leaving each frontier pair
        first = torch.repeat_interleave(start[f_dst], counts)
        offset = torch.arange(first.numel(), device=keys.device) - \
            torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        walks = torch.repeat_interleave(f_src, counts) * n + \
            dst[first + offset]
        walks = torch.unique(walks)
        frontier = walks[~torch.isin(walks, seen)]
        found.append(frontier)
        hops.append(torch.full_like(frontier, hop))
        seen = torch.cat([seen, frontier])
    if not found:
        return edge_index.new_zeros(2, 0), edge_index.new_zeros(0)
    pairs = torch.cat(found)
    return torch.stack([pairs // n, pairs % n]), torch.cat(hops)


class EdgePosition(BaseTransform):
    r"""Edge positions for :class:`~pyg_attn.nn.RotaryAttentionConv`:
    stacks the chosen components into ``data.edge_pos`` ``[E, P]``
    (float32), one column per component in the order given.

    Components:

    * ``'hop'`` — the hop distance from source to destination: 0 for a
      self-loop, 1 for every other edge.  With ``num_hops = K > 1`` the
      graph is first widened to its :math:`K`-hop neighbourhood: an edge
      :math:`i \to l` is appended for every pair whose directed shortest path
      along the edges has :math:`2 \le d(i, l) \le K` hops, carrying
      :math:`d(i, l)` (see :func:`k_hop_edges`: repeated propagation in
      torch, no ``torch_sparse``), hop by hop.  The original edges keep
      their order and come first; every other edge tensor of ``data``
      (``edge_attr``, ``edge_type``, ``edge_weight``, …) is padded with
      zeros for the appended edges, so they count as local (type 0) edges.
    * ``'layer'`` — the HNSW layer, ``data.edge_type`` (see
      :class:`~pyg_attn.transforms.HNSWGraph`).
    * ``'distance'`` — the link distance, column ``attr_column`` of
      ``data.edge_attr`` (``HNSWGraph`` stores it in column 0).
    * ``'weight'`` — ``data.edge_weight``.

    The rotary layer turns channel pair :math:`k` of a component's group by
    :math:`p\, b^{-2k/d}`: positions of order 1–10 (hops, layers) suit the
    default base; rescale a distance of another order first, or learn the
    frequencies (``learnable_freqs=True``).

    Args:
        components (sequence of str, optional): which components, from
            ``'hop'``, ``'layer'``, ``'distance'``, ``'weight'``.
            (default: :obj:`('hop',)`)
        num_hops (int, optional): widen the graph to its ``num_hops``-hop
            neighbourhood (``'hop'`` only). (default: :obj:`1`)
        attr_column (int, optional): column of ``edge_attr`` read by
            ``'distance'``. (default: :obj:`0`)

    Raises:
        ValueError: an unknown or repeated component, ``num_hops < 1`` or
            ``num_hops > 1`` without ``'hop'``; at call time, a component
            whose source tensor ``data`` lacks.

    Example::

        >>> data = Data(edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]]),
        ...             num_nodes=4)
        >>> data = EdgePosition(num_hops=3)(data)
        >>> data.edge_index.tolist()
        [[0, 1, 2, 0, 1, 0], [1, 2, 3, 2, 3, 3]]
        >>> data.edge_pos.view(-1).tolist()
        [1.0, 1.0, 1.0, 2.0, 2.0, 3.0]
    """
    def __init__(self, components: Sequence[str] = ('hop', ),
                 num_hops: int = 1, attr_column: int = 0):
        if isinstance(components, str):
            components = (components, )
        components = list(components)
        unknown = [c for c in components if c not in COMPONENTS]
        if not components or unknown or len(set(components)) < len(
                components):
            raise ValueError(f"'components' ({components}) must be distinct "
                             f"names from {list(COMPONENTS)}")
        if not isinstance(num_hops, int) or num_hops < 1:
            raise ValueError(f"'num_hops' ({num_hops}) must be an integer "
                             ">= 1")
        if num_hops > 1 and 'hop' not in components:
            raise ValueError(f"'num_hops' ({num_hops}) widens the graph for "
                             "the 'hop' component; add 'hop' to 'components' "
                             "or use num_hops=1")
        self.components: List[str] = components
        self.num_hops = num_hops
        self.attr_column = attr_column

    def forward(self, data: Data) -> Data:
        num_nodes = data.num_nodes
        edge_index = data.edge_index
        num_edges = edge_index.size(1)
        if self.num_hops > 1:
            new_edges, new_hops = k_hop_edges(edge_index, num_nodes,
                                              self.num_hops)
            extra = new_edges.size(1)
            for key, value in list(data.items()):
                if key != 'edge_index' and isinstance(value, Tensor) and \
                        data.is_edge_attr(key) and value.size(0) == num_edges:
                    data[key] = torch.cat(
                        [value, value.new_zeros((extra, ) + value.shape[1:])])
            data.edge_index = torch.cat([edge_index, new_edges], dim=1)
        src, dst = edge_index[0], edge_index[1]
        columns = []
        for name in self.components:
            if name == 'hop':
                hop = (src != dst).to(torch.float32)  # 0 self-loop, else 1
                if self.num_hops > 1:
                    hop = torch.cat([hop, new_hops.to(torch.float32)])
                columns.append(hop)
            else:
                columns.append(self._read(data, name).to(torch.float32))
        data.edge_pos = torch.stack(columns, dim=-1)  # [E, P]
        return data

    def _read(self, data: Data, name: str) -> Tensor:
        source = {'layer': 'edge_type', 'distance': 'edge_attr',
                  'weight': 'edge_weight'}[name]
        value = data[source] if source in data else None
        if value is None:
            hint = {'layer': ' (pyg_attn.transforms.HNSWGraph writes it)',
                    'distance': ' (HNSWGraph writes the link distance there)',
                    'weight': ''}[name]
            raise ValueError(f"the '{name}' component reads "
                             f"'data.{source}', which is missing{hint}")
        if name == 'distance':
            value = value.view(-1, 1) if value.dim() == 1 else value
            if not -value.size(1) <= self.attr_column < value.size(1):
                raise ValueError(f"'attr_column' ({self.attr_column}) is out "
                                 f"of range for 'edge_attr' with "
                                 f"{value.size(1)} columns")
            value = value[:, self.attr_column]
        if value.dim() != 1:
            raise ValueError(f"'data.{source}' must be one value per edge, "
                             f"got shape {tuple(value.shape)}")
        return value

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(components={self.components}, '
                f'num_hops={self.num_hops})')
