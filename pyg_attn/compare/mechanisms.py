r"""The rows of the comparison: for each attention mechanism (and PyG's
baselines), how to build a two-layer node classifier with it, which data
transform it needs and which hyperparameters it trains with.

A name→spec table is what a benchmark script needs to pick mechanisms from
the command line (STYLE principle 8 allows scripts to map names to layers;
the layers themselves take modules, not names).  To add a mechanism, add one
:class:`Mechanism` to :func:`available_mechanisms`; a layer that this
installation lacks (not merged yet, a missing extra) is skipped.
"""
import functools
import importlib.util
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch_geometric.transforms as T
from torch import Tensor
from torch.nn import Module
from torch_geometric.data import Data
from torch_geometric.nn import GATConv, GCNConv, TransformerConv

import pyg_attn.nn
import pyg_attn.transforms
from pyg_attn.nn.models import AttentionNet
from pyg_attn.nn.models.adapters import (GlobalAttentionBlock,
                                         KeywordAttentionNet, OutputSlice)
from pyg_attn.nn.models.attention_net import accepted_kwargs

# The edge type HNSWGraph gives the input graph's own edges (above every HNSW
# layer of a graph of up to ~16^8 nodes).
KEPT_EDGE_TYPE = 8


@dataclass(frozen=True)
class Hyperparameters:
    r"""Training hyperparameters of the GAT paper's protocol (Veličković et
    al., 2018): two layers of :obj:`heads` × :obj:`hidden` channels, dropout
    on every layer's input and on the attention, Adam.

    Args:
        hidden (int): Channels per head of the hidden layer.
        heads (int): Heads of the hidden layer (the output layer has one).
        lr (float): Adam's learning rate.
        weight_decay (float): Adam's weight decay.
        dropout (float): Dropout on each layer's input.
        attn_dropout (float, optional): Dropout on the attention
            coefficients, passed as the layer's :obj:`dropout` where it takes
            one; :obj:`None` uses :obj:`dropout`.
        self_loops (bool): Add self-loops to the graph (for layers that do
            not add their own).
    """
    hidden: int = 8
    heads: int = 8
    lr: float = 0.005
    weight_decay: float = 5e-4
    dropout: float = 0.6
    attn_dropout: Optional[float] = None
    self_loops: bool = False

    def updated(self, **overrides: Any) -> 'Hyperparameters':
        r"""A copy with the entries of :obj:`overrides` that are not
        :obj:`None`."""
        names = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in overrides.items()
                                if k in names and v is not None})


@dataclass(frozen=True)
class Mechanism:
    r"""One row of the comparison.

    Args:
        name (str): The command-line name, e.g. :obj:`"edge_gat"`.
        layer (str): The layer's class name, shown in the table.
        conv (callable): The layer class, or a factory
            :obj:`(in_channels, out_channels, **kwargs) -> Module` that
            :class:`~pyg_attn.nn.models.AttentionNet` stacks.
        origin (str): :obj:`"pyg_attn"` or :obj:`"PyG"` (a baseline).
        model (type): The stack: :class:`~pyg_attn.nn.models.AttentionNet`,
            or :class:`~pyg_attn.nn.models.adapters.KeywordAttentionNet` when
            the layer needs :obj:`inputs`.
        inputs (tuple of str): Attributes of the data passed to the model by
            keyword, e.g. :obj:`("edge_type",)`.
        transform (callable, optional): A factory returning the transforms
            (a list) that build what the layer needs, applied after feature
            normalisation and self-loops.
        hparams (dict): Overrides of :class:`Hyperparameters`.
        conv_kwargs (dict): Extra arguments of every layer.
        note (str): One line for the table's notes.
    """
    name: str
    layer: str
    conv: Callable[..., Module]
    origin: str = 'pyg_attn'
    model: Callable[..., Module] = AttentionNet
    inputs: Tuple[str, ...] = ()
    transform: Optional[Callable[[], List[Callable]]] = None
    hparams: Dict[str, Any] = field(default_factory=dict)
    conv_kwargs: Dict[str, Any] = field(default_factory=dict)
    note: str = ''

    def hyperparameters(self, **overrides: Any) -> Hyperparameters:
        r"""The protocol's hyperparameters with this mechanism's defaults and
        then :obj:`overrides` (entries that are :obj:`None` are ignored)."""
        return Hyperparameters().updated(**self.hparams).updated(**overrides)

    def takes(self, argument: str) -> bool:
        r"""Whether the layer takes the constructor argument
        :obj:`argument`."""
        return bool(accepted_kwargs(self.conv, {argument: None}))

    def graph_transforms(self, self_loops: bool = False) -> List[Callable]:
        r"""Self-loops if :obj:`self_loops`, then the mechanism's own
        transforms: what builds the edges its layer passes messages along
        and the edge tensors it takes."""
        transforms = [T.AddSelfLoops()] if self_loops else []
        if self.transform is not None:
            transforms += self.transform()
        return transforms

    def data_transform(self, hp: Hyperparameters) -> T.Compose:
        r"""Row-normalised features, then :meth:`graph_transforms` with
        :obj:`hp.self_loops`."""
        return T.Compose([T.NormalizeFeatures()] +
                         self.graph_transforms(hp.self_loops))

    def message_graph(self, x: Tensor, edge_index: Tensor
                      ) -> Tuple[Tensor, Dict[str, Tensor]]:
        r"""The mechanism's own transforms applied to node features and
        edges alone (an example's own graph, e.g. its training edges, with
        any self-loops already added): the edges messages pass along and
        the tensors the layer takes by keyword (:obj:`inputs`, e.g.
        :obj:`edge_type`)."""
        transforms = self.graph_transforms()
        if not transforms:
            return edge_index, {}
        graph = T.Compose(transforms)(
            Data(x=x, edge_index=edge_index, num_nodes=x.size(0)))
        return graph.edge_index, {key: graph[key] for key in self.inputs}

    def build(self, in_channels: int, out_channels: int, hp: Hyperparameters,
              conv_kwargs: Optional[Dict[str, Any]] = None) -> Module:
        r"""The two-layer model: :obj:`hp.heads` × :obj:`hp.hidden` hidden
        channels, one output head.

        Args:
            in_channels (int): Input features.
            out_channels (int): Classes.
            hp (Hyperparameters): From :meth:`hyperparameters`.
            conv_kwargs (dict, optional): Extra layer arguments, over the
                mechanism's own. (default: :obj:`None`)
        """
        kwargs = dict(self.conv_kwargs, **(conv_kwargs or {}))
        if self.takes('dropout'):
            kwargs['dropout'] = hp.dropout if hp.attn_dropout is None else \
                hp.attn_dropout
        return self.model(in_channels, hp.hidden, out_channels, num_layers=2,
                          conv=self.conv, heads=hp.heads, out_heads=1,
                          dropout=hp.dropout, conv_kwargs=kwargs)


def rotary_conv(in_channels: int, out_channels: int, **kwargs) -> Module:
    r""":class:`~pyg_attn.nn.RotaryAttentionConv`, built one channel wider
    and sliced when :obj:`out_channels` is odd (channels rotate in pairs;
    Cora has 7 classes)."""
    conv = pyg_attn.nn.RotaryAttentionConv
    if out_channels % 2 == 0:
        return conv(in_channels, out_channels, **kwargs)
    return OutputSlice(conv(in_channels, out_channels + 1, **kwargs),
                       out_channels)


def linear_global_conv(in_channels: int, out_channels: int, heads: int = 1,
                       concat: bool = True, dropout: float = 0.,
                       num_features: int = 64, local: bool = False,
                       root_weight: bool = True) -> Module:
    r""":class:`~pyg_attn.nn.LinearAttentionConv` over the whole graph,
    alone or (:obj:`local=True`) summed with an
    :class:`~pyg_attn.nn.EdgeGATConv` over the edges, GPS-style.  With 8
    channels per head it draws 64 random features per head, not the layer's
    default 256 (sized for wider heads), which cuts its time per epoch on
    Cora by about half.  :obj:`root_weight` is the global layer's."""
    kwargs = dict(heads=heads, concat=concat, dropout=dropout)
    global_conv = pyg_attn.nn.LinearAttentionConv(
        in_channels, out_channels, num_features=num_features,
        root_weight=root_weight, **kwargs)
    local_conv = pyg_attn.nn.EdgeGATConv(in_channels, out_channels,
                                         **kwargs) if local else None
    return GlobalAttentionBlock(global_conv, local_conv)


def moe_conv(in_channels: int, out_channels: int, heads: int = 1,
             concat: bool = True, dropout: float = 0.,
             top_k: int = 2) -> Module:
    r""":class:`~pyg_attn.nn.MoEAttentionConv` routing each node to
    :obj:`top_k` of three experts: :class:`~pyg_attn.nn.EdgeGATConv`,
    :class:`~pyg_attn.nn.DotProductAttentionConv` (no root weight) and, when
    present, :class:`~pyg_attn.nn.PoincareAttentionConv` (Euclidean output).
    """
    kwargs = dict(heads=heads, concat=concat, dropout=dropout)
    nn = pyg_attn.nn
    experts = [nn.EdgeGATConv(in_channels, out_channels, **kwargs),
               nn.DotProductAttentionConv(in_channels, out_channels,
                                          root_weight=False, **kwargs)]
    if hasattr(nn, 'PoincareAttentionConv'):
        experts.append(nn.PoincareAttentionConv(in_channels, out_channels,
                                                euclidean_output=True,
                                                **kwargs))
    return nn.MoEAttentionConv(experts, in_channels,
                               top_k=min(top_k, len(experts)))


def _hnsw_available() -> bool:
    return hasattr(pyg_attn.transforms, 'HNSWGraph') and \
        importlib.util.find_spec('faiss') is not None


def _hnsw_transforms() -> List[Callable]:
    r"""HNSW links beside the graph's own edges (type
    :obj:`KEPT_EDGE_TYPE`); when :class:`~pyg_attn.transforms.HNSWGraph` or
    faiss is missing, only the graph's edges (all local)."""
    if _hnsw_available():
        return [pyg_attn.transforms.HNSWGraph(keep_edges=True, hub_edges=True,
                                              kept_edge_type=KEPT_EDGE_TYPE)]
    return [_GraphEdgeType()]


class _GraphEdgeType(T.BaseTransform):
    def forward(self, data):
        data.edge_type = data.edge_index.new_full(
            (data.edge_index.size(1), ), KEPT_EDGE_TYPE)
        return data


def _edge_position() -> List[Callable]:
    return [pyg_attn.transforms.EdgePosition(components=('hop', ),
                                             num_hops=2)]


def _has(*names: str, module=pyg_attn.nn) -> bool:
    return all(hasattr(module, name) for name in names)


def available_mechanisms() -> Dict[str, Mechanism]:
    r"""The mechanisms this installation has, by name, in table order: PyG's
    baselines, then this package's layers."""
    dot = dict(self_loops=True)  # GAT's neighbourhood: self plus neighbours
    no_root = dict(root_weight=False)
    nn = pyg_attn.nn
    specs = [
        Mechanism('gcn', 'GCNConv', GCNConv, origin='PyG',
                  hparams=dict(hidden=16, dropout=0.5, lr=0.01),
                  note="Kipf & Welling's settings: 16 hidden, dropout 0.5, "
                  'lr 0.01'),
        Mechanism('gat', 'GATConv', GATConv, origin='PyG'),
        Mechanism('transformer', 'TransformerConv', TransformerConv,
                  origin='PyG', hparams=dot, conv_kwargs=no_root,
                  note='self-loops in the graph, root_weight=False'),
        Mechanism('edge_gat', 'EdgeGATConv', nn.EdgeGATConv,
                  note='equals GATConv given the same weights'),
        Mechanism('dot_product', 'DotProductAttentionConv',
                  nn.DotProductAttentionConv, hparams=dot,
                  conv_kwargs=no_root,
                  note='equals TransformerConv given the same weights'),
        Mechanism('flash', 'FlashAttentionConv', nn.FlashAttentionConv,
                  hparams=dot, conv_kwargs=no_root,
                  note='the dot_product function in edge chunks'),
    ]
    if _has('PoincareAttentionConv'):
        specs.append(Mechanism(
            'poincare', 'PoincareAttentionConv', nn.PoincareAttentionConv,
            hparams=dot, conv_kwargs=dict(euclidean_output=True),
            note='ball of curvature 1; logmap0 output between layers'))
    if _has('LocalGlobalAttentionConv'):
        hnsw = _hnsw_available()
        specs.append(Mechanism(
            'local_global', 'LocalGlobalAttentionConv',
            nn.LocalGlobalAttentionConv, model=KeywordAttentionNet,
            inputs=('edge_type', ), transform=_hnsw_transforms, hparams=dot,
            conv_kwargs=dict(root_weight=False, partition_map=[1] * (
                KEPT_EDGE_TYPE) + [0]),
            note='local: the graph; global: HNSW links (HNSWGraph, m=16, '
            'hub edges)' if hnsw else 'no HNSWGraph or faiss: graph edges '
            'only, all local'))
    if _has('RotaryAttentionConv'):
        specs.append(Mechanism(
            'rotary', 'RotaryAttentionConv', rotary_conv,
            model=KeywordAttentionNet, inputs=('edge_pos', ),
            transform=_edge_position, hparams=dot, conv_kwargs=no_root,
            note='2-hop neighbourhood, hop distance as position'))
    if _has('LinearAttentionConv'):
        specs += [
            Mechanism('linear', 'LinearAttentionConv', linear_global_conv,
                      note='pure global, edges unused (an MLP plus global '
                      'context); 64 random features'),
            Mechanism('linear_gps', 'LinearAttentionConv + EdgeGATConv',
                      functools.partial(linear_global_conv, local=True),
                      note='GPS-style: global linear + local EdgeGAT, '
                      'summed'),
        ]
    if _has('MoEAttentionConv'):
        specs.append(Mechanism(
            'moe', 'MoEAttentionConv', moe_conv, hparams=dot,
            note='top-2 of EdgeGAT, DotProduct' + (
                ', Poincaré' if _has('PoincareAttentionConv') else '') +
            ' experts; load-balancing loss added'))
    if _has('DualSpaceAttentionConv'):
        specs.append(Mechanism(
            'dual_space', 'DualSpaceAttentionConv', nn.DualSpaceAttentionConv,
            conv_kwargs=dict(k=8, refresh_interval=10),
            note='graph + 8 latent kNN neighbours (searched every 10 '
            'training epochs and at every evaluation) + cross attention'))
    return {spec.name: spec for spec in specs}
