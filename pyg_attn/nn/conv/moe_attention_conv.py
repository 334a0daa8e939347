import inspect
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Module, ModuleList
from torch_geometric.nn.dense.linear import (Linear,
                                             is_uninitialized_parameter)

from pyg_attn.functional import stat_dtype
from pyg_attn.nn.conv._validate import (as_pair, check_channels,
                                        check_edge_index, check_features)

EDGE_KEYS = ('edge_attr', 'edge_type', 'edge_pos')
NODE_KEYS = ('batch', )
NOISE_EPS = 1e-2  # floor of the noise scale, as Shazeer et al.'s code


def cv_squared(t: Tensor, eps: float = 1e-10) -> Tensor:
    r"""Squared coefficient of variation :math:`\operatorname{Var}(t) /
    (\operatorname{mean}(t)^2 + \epsilon)` of a 1-D tensor (unbiased
    variance, as Shazeer et al.'s code); 0 for fewer than two entries.
    Zero exactly when all entries are equal."""
    if t.numel() < 2:
        return t.new_zeros(())
    return t.var() / (t.mean()**2 + eps)


def prob_in_top_k(clean: Tensor, noisy: Tensor, noise_std: Tensor,
                  top_values: Tensor, k: int) -> Tensor:
    r"""Smooth estimate of :math:`P(e \in \operatorname{TopK}(H(x_i)))`
    under a redraw of expert :math:`e`'s own noise, the others' fixed
    (Shazeer et al. 2017, appendix A):

    .. math::
        P_{ie} = \Phi\left(\frac{(\mathbf{x}_i \mathbf{W}_g)_e -
        \operatorname{kth\_excluding}(H(\mathbf{x}_i), k, e)}
        {\operatorname{softplus}((\mathbf{x}_i \mathbf{W}_n)_e) +
        \epsilon}\right)

    where the threshold :math:`\operatorname{kth\_excluding}` is the k-th
    largest noisy logit among the other experts: the (k+1)-th largest of
    all if :math:`e` is in the top k, else the k-th largest.  Averaged over
    the others' noise it is the probability itself, and it is differentiable
    in both the clean logits and the noise scale.

    Args:
        clean (Tensor): router logits :math:`\mathbf{x} \mathbf{W}_g`
            ``[N, X]``.
        noisy (Tensor): ``clean`` plus noise, ``[N, X]``.
        noise_std (Tensor): the noise scale ``[N, X]``.
        top_values (Tensor): the ``k + 1`` largest noisy logits per row,
            descending, ``[N, k + 1]``.
        k (int): experts per node.

    Returns:
        ``[N, X]`` probabilities.
    """
    threshold_if_in = top_values[:, k:k + 1]  # [N, 1]
    threshold_if_out = top_values[:, k - 1:k]  # [N, 1]
    is_in = noisy > threshold_if_in  # [N, X]
    prob_if_in = torch.special.ndtr((clean - threshold_if_in) / noise_std)
    prob_if_out = torch.special.ndtr((clean - threshold_if_out) / noise_std)
    return torch.where(is_in, prob_if_in, prob_if_out)


class EuclideanWrapper(Module):
    r"""An expert that maps its input and output, so an expert that works in
    another space (the Poincaré ball) takes and returns Euclidean features
    inside a :class:`MoEAttentionConv` whose other experts are Euclidean.

    .. math::
        \mathbf{x}'  = \phi_{\text{out}}\big(f(\phi_{\text{in}}(\mathbf{x}),
        \ldots)\big)

    For a hyperbolic expert :math:`\phi_{\text{in}} = \exp_0^c` and
    :math:`\phi_{\text{out}} = \log_0^c`; any pair of callables works (a map
    that reads the expert's learnable curvature can close over the expert).
    :class:`PoincareAttentionConv` maps Euclidean input in itself, so it
    needs only the output map,
    ``EuclideanWrapper(conv, output_map=lambda y: logmap0(y, c=conv.c))``,
    which is what its own ``euclidean_output=True`` computes (a lambda makes
    the module unpicklable by ``torch.save(model)``; its state_dict is
    unaffected).
    A pair input ``(x_src, x_dst)`` is mapped element-wise.  Every keyword
    argument is passed through to the expert; :class:`MoEAttentionConv`
    inspects the wrapped expert's ``forward`` and output size, not the
    wrapper's.

    Args:
        expert (Module): the wrapped layer.
        input_map (callable, optional): applied to each input feature tensor.
            (default: :obj:`None`, identity)
        output_map (callable, optional): applied to the expert's output.
            (default: :obj:`None`, identity)

    Example::

        >>> expert = EuclideanWrapper(DotProductAttentionConv(16, 8),
        ...                           input_map=torch.tanh,
        ...                           output_map=torch.sinh)
        >>> x, edge_index = torch.randn(5, 16), torch.tensor([[0, 1], [1, 2]])
        >>> expert(x, edge_index).shape
        torch.Size([5, 8])
    """
    def __init__(self, expert: Module,
                 input_map: Optional[Callable[[Tensor], Tensor]] = None,
                 output_map: Optional[Callable[[Tensor], Tensor]] = None):
        super().__init__()
        if not isinstance(expert, Module):
            raise ValueError(f"'expert' must be a torch.nn.Module, got "
                             f"{type(expert).__name__}")
        self.expert = expert
        self.input_map = input_map
        self.output_map = output_map

    def reset_parameters(self):
        if hasattr(self.expert, 'reset_parameters'):
            self.expert.reset_parameters()

    def forward(self, x: Union[Tensor, Tuple[Tensor, Tensor]], *args,
                **kwargs) -> Tensor:
        if self.input_map is not None:
            x = self.input_map(x) if isinstance(x, Tensor) else tuple(
                self.input_map(t) for t in x)
        out = self.expert(x, *args, **kwargs)
        return out if self.output_map is None else self.output_map(out)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.expert})'


def _unwrap(expert: Module) -> Module:
    while isinstance(expert, EuclideanWrapper):
        expert = expert.expert
    return expert


def _output_size(expert: Module) -> Optional[int]:
    """Width of the expert's output from its PyG-style attributes
    (``out_channels``, ``heads``, ``concat``), or None if it has none."""
    expert = _unwrap(expert)
    out = getattr(expert, 'out_channels', None)
    if not isinstance(out, int) or out < 1:
        return None
    heads = getattr(expert, 'heads', 1)
    concat = getattr(expert, 'concat', True)
    return out * heads if concat and isinstance(heads, int) else out


def _accepts_pair(param: inspect.Parameter) -> bool:
    """Whether a ``forward``'s ``x`` annotation admits ``(x_src, x_dst)``
    (PyG's ``Union[Tensor, OptPairTensor]``, ``PairTensor``, a Tuple)."""
    text = str(param.annotation)
    return any(word in text for word in ('Pair', 'Tuple', 'tuple'))


def _expert_spec(expert: Module) -> Tuple[Tuple[str, ...], bool, bool]:
    """The keyword tensors the expert's ``forward`` accepts, whether it
    takes ``edge_index`` by that name, and whether it gets sparse dispatch:
    it must accept a bipartite pair and no node-level ``batch``."""
    inner = _unwrap(expert)
    params = inspect.signature(inner.forward).parameters
    keys = tuple(k for k in EDGE_KEYS + NODE_KEYS if k in params)
    if 'edge_attr' in keys and getattr(inner, 'edge_dim', 0) is None:
        keys = tuple(k for k in keys if k != 'edge_attr')  # built without
    first = next(iter(params.values()))
    sparse = _accepts_pair(first) and 'batch' not in keys
    return keys, 'edge_index' in params, sparse


class MoEAttentionConv(Module):
    r"""Mixture of graph attention experts with noisy top-k gating and
    sparse dispatch (seed §8; gating and load balancing of `"Outrageously
    Large Neural Networks: The Sparsely-Gated Mixture-of-Experts Layer"
    <https://arxiv.org/abs/1701.06538>`_, on graphs as in `"Graph
    Mixture of Experts" <https://arxiv.org/abs/2304.02806>`_).

    A router scores the experts for each destination node,

    .. math::
        H(\mathbf{x}_i)_e = (\mathbf{x}_i \mathbf{W}_g)_e + \varepsilon_{ie}
        \left(\operatorname{softplus}((\mathbf{x}_i \mathbf{W}_n)_e) +
        10^{-2}\right), \quad \varepsilon_{ie} \sim \mathcal{N}(0, 1),

    (the noise only in training with ``noisy_gating``), keeps each node's
    top :math:`k` and mixes those experts' outputs with a softmax over their
    logits:

    .. math::
        g_{ie} = \operatorname{softmax}_{e \in T_i} H(\mathbf{x}_i)_e,
        \qquad T_i = \operatorname{TopK}(H(\mathbf{x}_i), k), \qquad
        \mathbf{x}'_i = \sum_{e \in T_i} g_{ie}\, f_e(\mathbf{x},
        \mathcal{E})_i .

    The load-balancing loss is

    .. math::
        \mathcal{L}_{\text{aux}} = w \left(\operatorname{CV}(\mathbf{I})^2 +
        \operatorname{CV}(\mathbf{L})^2\right), \quad
        I_e = \sum_i g_{ie}, \quad L_e = \sum_i P(e \in T_i),

    with :math:`P` the normal-CDF estimate of :func:`prob_in_top_k` when the
    gating is noisy (the routing counts otherwise).  It is 0 exactly when
    importance and load are equal across experts.

    **Sparse dispatch.**  Expert :math:`e` computes only the destinations
    routed to it: it is called on the bipartite input
    ``(x_src, x_dst[routed])`` with only the edges into routed nodes, their
    edge tensors sliced alike, and its rows are scattered back.  The sources
    are relabelled so that the routed nodes come first (``x_src`` permuted),
    so an expert that adds self-loops for the first
    :math:`\min(N_s, N_t)` nodes (``GATConv``, :class:`EdgeGATConv`) adds
    the right ones; a node's output is exactly what the expert computes for
    it on the whole graph.  Its edge work is therefore over about
    :math:`k/X` of the edges, its destination work over about :math:`k/X`
    of the nodes; the sources (keys and values) stay all :math:`N_s` nodes.
    Finding each expert's nodes and edges needs ``nonzero``, so under
    ``torch.compile`` the forward breaks the graph there: compile it without
    ``fullgraph``.  ``dense=True`` runs every expert on every node instead
    (GMoE's way: no saving, one static graph, fine for small graphs) with
    the same result.

    An expert gets sparse dispatch when the annotation of its ``forward``'s
    first argument admits a pair (as every bipartite PyG layer's does) and
    it takes no ``batch``.  Any other expert (``GCNConv``, whose degree
    normalisation needs the whole graph; a layer with a node-level
    ``batch``) runs on the whole graph and only its routed rows are kept:
    exact, without the saving.  Each expert gets the tensors among
    ``edge_attr``, ``edge_type``, ``edge_pos`` and ``batch`` that its
    ``forward`` names (not ``edge_attr`` if it has ``edge_dim=None``).
    Attention weights are not returned (there is one set per expert).  Wrap
    a hyperbolic expert in :class:`EuclideanWrapper`.

    Letter legend: N nodes, E edges, X experts, C output channels.

    **Auxiliary outputs.**  ``forward(..., return_aux=True)`` returns
    ``(out, aux_loss, expert_counts)``; every forward also leaves them as
    ``conv.aux_loss`` (0-dim, with gradient) and ``conv.expert_counts``
    (``[X]`` long, nodes routed to each expert), the way MoE libraries hand
    the loss to a training loop that only sees a model's output::

        loss = task_loss + sum(m.aux_loss for m in model.modules()
                               if isinstance(m, MoEAttentionConv))

    Args:
        experts (sequence of Module): the experts, each mapping
            ``(x, edge_index, ...)`` to ``[N_dst, out_channels]``.
        in_channels (int or tuple): input size, ``(src, dst)`` sizes for
            bipartite input (the router reads the destinations), or -1.
        top_k (int, optional): experts per node, 1 to the number of
            experts. (default: :obj:`2`)
        noisy_gating (bool, optional): add learned-scale Gaussian noise to
            the router logits in training. (default: :obj:`True`)
        aux_loss_coef (float, optional): weight :math:`w` of the
            load-balancing loss. (default: :obj:`1e-2`)
        dense (bool, optional): run every expert on every node.
            (default: :obj:`False`)
        out_channels (int, optional): the experts' common output width;
            needed only when no expert has ``out_channels`` attributes.
            (default: :obj:`None`)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F_{in})` or
          :math:`((|\mathcal{V}_s|, F_s), (|\mathcal{V}_t|, F_t))` with
          :math:`|\mathcal{V}_s| \geq |\mathcal{V}_t|` in sparse mode, edge
          indices :math:`(2, |\mathcal{E}|)`, edge tensors
          :math:`(|\mathcal{E}|, \ldots)`, ``batch`` :math:`(|\mathcal{V}|)`
          *(optional)*
        - **output:** :math:`(|\mathcal{V}_t|, F_{out})`; with
          ``return_aux=True`` also :math:`()` and :math:`(X)`

    Raises:
        ValueError: no experts, or one that is not a Module; ``top_k``
            outside 1..number of experts; experts of different output
            sizes (from their attributes at construction, from their outputs
            in forward); ``aux_loss_coef < 0``; bad ``edge_index``; edge
            tensors with a row count other than the number of edges;
            features of a width other than ``in_channels``; a bipartite
            input with fewer sources than destinations in sparse mode.

    Example::

        >>> experts = [DotProductAttentionConv(16, 8, heads=2),
        ...            EdgeGATConv(16, 8, heads=2),
        ...            DotProductAttentionConv(16, 16, concat=False)]
        >>> conv = MoEAttentionConv(experts, 16, top_k=2)
        >>> x, edge_index = torch.randn(5, 16), torch.tensor([[0, 1, 2], [1, 2, 3]])
        >>> out, aux_loss, counts = conv(x, edge_index, return_aux=True)
        >>> out.shape, counts.sum().item()
        (torch.Size([5, 16]), 10)
    """
    def __init__(
        self,
        experts: Sequence[Module],
        in_channels: Union[int, Tuple[int, int]],
        top_k: int = 2,
        noisy_gating: bool = True,
        aux_loss_coef: float = 1e-2,
        dense: bool = False,
        out_channels: Optional[int] = None,
    ):
        super().__init__()
        experts = list(experts) if not isinstance(experts, Module) else \
            list(experts.children())
        if len(experts) == 0:
            raise ValueError("'experts' is empty; pass at least one expert "
                             "module")
        for i, expert in enumerate(experts):
            if not isinstance(expert, Module):
                raise ValueError(f"expert {i} ({type(expert).__name__}) is "
                                 "not a torch.nn.Module")
        num_experts = len(experts)
        if not isinstance(top_k, int) or not 1 <= top_k <= num_experts:
            raise ValueError(f"'top_k' ({top_k}) must be an integer in "
                             f"1..{num_experts} (the number of experts)")
        if aux_loss_coef < 0:
            raise ValueError(f"'aux_loss_coef' ({aux_loss_coef}) must be "
                             ">= 0")
        if out_channels is not None:
            check_channels(out_channels)
        self.out_channels = self._common_size(experts, out_channels)

        self.in_channels = in_channels
        self.num_experts = num_experts
        self.top_k = top_k
        self.noisy_gating = noisy_gating
        self.aux_loss_coef = aux_loss_coef
        self.dense = dense
        self.experts = ModuleList(experts)
        specs = [_expert_spec(expert) for expert in experts]
        self.expert_keys: List[Tuple[str, ...]] = [s[0] for s in specs]
        self._edge_index_by_name = [s[1] for s in specs]
        self.sparse_dispatch: List[bool] = [s[2] for s in specs]

        dst_channels = in_channels if isinstance(in_channels,
                                                 int) else in_channels[1]
        self.router = Linear(dst_channels, num_experts, bias=False)
        if noisy_gating:
            self.router_noise = Linear(dst_channels, num_experts, bias=False)
        else:
            self.register_module('router_noise', None)
        self.aux_loss: Optional[Tensor] = None
        self.expert_counts: Optional[Tensor] = None
        self.reset_parameters()

    @staticmethod
    def _common_size(experts: List[Module],
                     out_channels: Optional[int]) -> int:
        sizes = {i: _output_size(e) for i, e in enumerate(experts)}
        known = {i: s for i, s in sizes.items() if s is not None}
        if out_channels is not None:
            known = {'out_channels': out_channels, **known}
        if not known:
            raise ValueError("no expert has an 'out_channels' attribute to "
                             "read its output size from; pass "
                             "out_channels=<their common output width>")
        if len(set(known.values())) > 1:
            listing = ', '.join(f'{k}: {v}' for k, v in known.items())
            raise ValueError(f"experts have different output sizes ({listing}"
                             "); every expert must return the same width "
                             "(out_channels * heads if concat, else "
                             "out_channels)")
        return next(iter(known.values()))

    def reset_parameters(self):
        self.router.reset_parameters()
        if self.router_noise is not None:
            self.router_noise.reset_parameters()
            if not is_uninitialized_parameter(self.router_noise.weight):
                # zero, as Shazeer et al.: noise scale softplus(0) + eps
                torch.nn.init.zeros_(self.router_noise.weight)
        for expert in self.experts:
            if hasattr(expert, 'reset_parameters'):
                expert.reset_parameters()

    def forward(
        self,
        x: Union[Tensor, Tuple[Tensor, Tensor]],
        edge_index: Tensor,
        edge_attr: Optional[Tensor] = None,
        edge_type: Optional[Tensor] = None,
        edge_pos: Optional[Tensor] = None,
        batch: Optional[Tensor] = None,
        return_aux: bool = False,
    ) -> Union[Tensor, Tuple[Tensor, Tensor, Tensor]]:
        """Returns ``out``, or ``(out, aux_loss, expert_counts)`` with
        ``return_aux=True``; sets ``self.aux_loss`` and
        ``self.expert_counts`` either way."""
        x_src, x_dst = as_pair(x)
        check_features((x_src, x_dst), self.in_channels)
        check_edge_index(edge_index, x_src.size(0), x_dst.size(0))
        tensors = dict(edge_attr=edge_attr, edge_type=edge_type,
                       edge_pos=edge_pos)
        for key, value in tensors.items():
            if value is not None and value.size(0) != edge_index.size(1):
                raise ValueError(
                    f"'{key}' has {value.size(0)} rows but 'edge_index' has "
                    f"{edge_index.size(1)} edges; pass one row per edge")
        tensors['batch'] = batch

        gates, chosen, aux_loss = self._route(x_dst)  # [N, X], [N, X], []
        if self.dense:
            out = self._combine_dense(x, edge_index, tensors, gates)
        else:
            out = self._combine_sparse(x, x_src, x_dst, edge_index, tensors,
                                       gates, chosen)
        counts = chosen.sum(dim=0)  # [X]
        self.aux_loss, self.expert_counts = aux_loss, counts
        if return_aux:
            return out, aux_loss, counts
        return out

    def _route(self, x_dst: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Gates ``[N, X]`` (0 off the top k), the top-k mask ``[N, X]`` and
        the load-balancing loss."""
        k, num_experts = self.top_k, self.num_experts
        dtype = stat_dtype(x_dst.dtype)
        clean = self.router(x_dst).to(dtype)  # [N, X]
        noisy = self.noisy_gating and self.training
        if noisy:
            noise_std = F.softplus(self.router_noise(x_dst).to(dtype)) + \
                NOISE_EPS  # [N, X]
            logits = clean + torch.randn_like(clean) * noise_std
        else:
            logits = clean
        smooth_load = noisy and k < num_experts
        top_values, top_index = logits.topk(k + 1 if smooth_load else k,
                                            dim=-1)  # [N, k(+1)]
        top_gates = top_values[:, :k].softmax(dim=-1)  # [N, k]
        gates = torch.zeros_like(logits).scatter(1, top_index[:, :k],
                                                 top_gates)  # [N, X]
        chosen = torch.zeros_like(logits, dtype=torch.bool).scatter(
            1, top_index[:, :k], True)  # [N, X]
        if smooth_load:
            load = prob_in_top_k(clean, logits, noise_std, top_values,
                                 k).sum(dim=0)  # [X]
        else:
            load = chosen.sum(dim=0).to(dtype)  # [X]
        importance = gates.sum(dim=0)  # [X]
        aux_loss = self.aux_loss_coef * (cv_squared(importance) +
                                         cv_squared(load))
        return gates, chosen, aux_loss

    def _call(self, i: int, x, edge_index: Tensor,
              tensors: Dict[str, Optional[Tensor]],
              num_dst: int) -> Tensor:
        kwargs = {key: tensors.get(key) for key in self.expert_keys[i]
                  if tensors.get(key) is not None}
        if self._edge_index_by_name[i]:
            out = self.experts[i](x, edge_index=edge_index, **kwargs)
        else:
            out = self.experts[i](x, edge_index, **kwargs)
        if out.dim() != 2 or out.size(0) != num_dst or \
                out.size(1) != self.out_channels:
            raise ValueError(
                f"expert {i} ({_unwrap(self.experts[i]).__class__.__name__}) "
                f"returned shape {tuple(out.shape)}, expected ({num_dst}, "
                f"{self.out_channels}); every expert must return "
                "[num_dst_nodes, out_channels] (a single tensor)")
        return out

    def _combine_dense(self, x, edge_index: Tensor,
                       tensors: Dict[str, Optional[Tensor]],
                       gates: Tensor) -> Tensor:
        """Every expert on every node, gated (GMoE)."""
        num_dst = gates.size(0)
        out = None
        for i in range(self.num_experts):
            h = self._call(i, x, edge_index, tensors, num_dst)  # [N, C]
            h = gates[:, i:i + 1].to(h.dtype) * h
            out = h if out is None else out + h
        return out

    def _combine_sparse(self, x, x_src: Tensor, x_dst: Tensor,
                        edge_index: Tensor,
                        tensors: Dict[str, Optional[Tensor]], gates: Tensor,
                        chosen: Tensor) -> Tensor:
        """Each expert on its routed destinations and their incoming edges
        only; data-dependent shapes (``nonzero``)."""
        num_src, num_dst = x_src.size(0), x_dst.size(0)
        square = isinstance(x, Tensor)
        if num_src < num_dst:
            raise ValueError(
                f"sparse dispatch needs at least as many source nodes as "
                f"destination nodes, got {num_src} < {num_dst}; use "
                "dense=True for such bipartite input")
        out = x_dst.new_zeros(num_dst, self.out_channels)
        routed_edges = chosen.index_select(0, edge_index[1])  # [E, X]
        for i in range(self.num_experts):
            routed = chosen[:, i].nonzero().view(-1)  # [n]
            if routed.numel() == 0:
                continue
            if not self.sparse_dispatch[i]:
                h = self._call(i, x, edge_index, tensors, num_dst)
                h = h.index_select(0, routed)  # [n, C]
            else:
                h = self._call_routed(i, x_src, x_dst, square, edge_index,
                                      tensors, chosen[:, i], routed,
                                      routed_edges[:, i])  # [n, C]
            gate = gates[routed, i].unsqueeze(-1).to(h.dtype)  # [n, 1]
            out = out.to(h.dtype).index_add(0, routed, gate * h)
        return out

    def _call_routed(self, i: int, x_src: Tensor, x_dst: Tensor,
                     square: bool, edge_index: Tensor,
                     tensors: Dict[str, Optional[Tensor]], is_routed: Tensor,
                     routed: Tensor, edge_is_routed: Tensor) -> Tensor:
        """Expert ``i`` on ``(x_src, x_dst[routed])`` and the edges into
        ``routed``, the sources permuted so that routed nodes come first
        (source ``j < n`` is destination ``j``, as self-loops assume)."""
        num_src, n = x_src.size(0), routed.numel()
        is_first = is_routed if num_src == is_routed.numel() else torch.cat(
            [is_routed, is_routed.new_zeros(num_src - is_routed.numel())])
        order = torch.cat([routed, (~is_first).nonzero().view(-1)])  # [N_s]
        position = torch.empty_like(order)
        position[order] = torch.arange(num_src, device=order.device)
        edges = edge_is_routed.nonzero().view(-1)  # [E_i]
        local = position[edge_index.index_select(1, edges)]  # [2, E_i]
        x_src_i = x_src.index_select(0, order)  # [N_s, F]
        x_dst_i = x_src_i[:n] if square else x_dst.index_select(0, routed)
        sliced = {key: None if t is None else t.index_select(0, edges)
                  for key, t in tensors.items() if key != 'batch'}
        return self._call(i, (x_src_i, x_dst_i), local, sliced, n)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels}, num_experts={self.num_experts}, '
                f'top_k={self.top_k})')
