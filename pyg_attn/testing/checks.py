"""Property checks every layer test calls (STYLE.md principle 9).

Each check takes a layer and a :class:`~torch_geometric.data.Data` and calls
the layer as ``conv(x, edge_index, **tensors)``, passing whichever of
``edge_attr``, ``edge_type``, ``edge_pos`` and ``batch`` the data holds and the
layer's ``forward`` accepts.  The layer is put in eval mode so dropout and
noise do not make the comparison random.
"""
import inspect
from collections import Counter
from typing import Any, Dict, Optional

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

EDGE_KEYS = ('edge_attr', 'edge_type', 'edge_pos')
NODE_KEYS = ('batch',)

TOLERANCES = {  # (rtol, atol) per dtype
    torch.float64: (1e-9, 1e-10),
    torch.float32: (1e-5, 1e-5),
    torch.bfloat16: (5e-2, 5e-2),
    torch.float16: (1e-2, 1e-2),
}


def assert_close(actual: Tensor, expected: Tensor, msg: str = '') -> None:
    rtol, atol = TOLERANCES[expected.dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol,
                               msg=lambda m: f'{msg}\n{m}' if msg else m)


def layer_inputs(conv: torch.nn.Module, data: Data) -> Dict[str, Any]:
    """The keyword tensors of ``data`` that ``conv.forward`` accepts."""
    params = inspect.signature(conv.forward).parameters
    return {
        key: data[key]
        for key in EDGE_KEYS + NODE_KEYS
        if key in params and key in data and data[key] is not None
    }


def run(conv: torch.nn.Module, data: Data, **kwargs):
    return conv(data.x, data.edge_index, **layer_inputs(conv, data), **kwargs)


def assert_output_shape(conv: torch.nn.Module, data: Data,
                        out_channels: int) -> Tensor:
    conv.eval()
    out = run(conv, data)
    assert isinstance(out, Tensor), 'forward must return only out'
    assert out.shape == (data.num_nodes, out_channels), out.shape
    assert torch.isfinite(out).all(), 'non-finite output'
    return out


def assert_edge_permutation_invariant(conv: torch.nn.Module, data: Data,
                                      seed: int = 0) -> None:
    conv.eval()
    perm = torch.randperm(data.num_edges,
                          generator=torch.Generator().manual_seed(seed))
    permuted = data.clone()
    permuted.edge_index = data.edge_index[:, perm]
    for key in EDGE_KEYS:
        if key in data and data[key] is not None:
            permuted[key] = data[key][perm]
    assert_close(run(conv, permuted), run(conv, data),
                 'edge permutation changed the output')


def assert_node_permutation_equivariant(conv: torch.nn.Module, data: Data,
                                        seed: int = 0) -> None:
    """Relabelling nodes by a permutation relabels the output rows."""
    conv.eval()
    n = data.num_nodes
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)  # old id -> new id
    permuted = data.clone()
    permuted.x = data.x[perm]
    permuted.edge_index = inverse[data.edge_index]
    for key in NODE_KEYS:
        if key in data and data[key] is not None:
            permuted[key] = data[key][perm]
    assert_close(run(conv, permuted), run(conv, data)[perm],
                 'node permutation is not equivariant')


def assert_batch_independent(conv: torch.nn.Module, first: Data,
                             second: Data) -> None:
    """Two graphs batched together give each one's output alone."""
    conv.eval()
    batch = Batch.from_data_list([first, second])
    out = run(conv, batch)
    alone = torch.cat([run(conv, first), run(conv, second)])
    assert_close(out, alone, 'batching graphs changed their outputs')


def assert_alpha_sums_to_one(conv: torch.nn.Module, data: Data,
                             num_dst: Optional[int] = None) -> Tensor:
    """``alpha`` is ``[E, H]``, each destination's weights sum to 1 (0 for a
    destination without edges), ``False`` returns ``out`` alone."""
    conv.eval()
    num_dst = data.num_nodes if num_dst is None else num_dst
    out, (edge_index, alpha) = run(conv, data, return_attention_weights=True)
    assert isinstance(run(conv, data, return_attention_weights=False), Tensor)
    assert alpha.dim() == 2 and alpha.size(0) == edge_index.size(1)
    assert (alpha >= 0).all()
    sums = alpha.new_zeros(num_dst, alpha.size(1)).index_add_(
        0, edge_index[1], alpha)
    has_edges = torch.zeros(num_dst, dtype=torch.bool)
    has_edges[edge_index[1]] = True
    assert_close(sums[has_edges], torch.ones_like(sums[has_edges]),
                 'attention weights do not sum to 1')
    assert (sums[~has_edges] == 0).all()
    return alpha


def assert_finite_gradients(conv: torch.nn.Module, data: Data) -> None:
    """Gradients reach ``x`` and every parameter, all finite."""
    conv.train()
    x = data.x.clone().requires_grad_()
    out = conv(x, data.edge_index, **layer_inputs(conv, data))
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, param in conv.named_parameters():
        if param.grad is not None:
            assert torch.isfinite(param.grad).all(), name
    conv.zero_grad()


def assert_compile_matches_eager(conv: torch.nn.Module, data: Data,
                                 backward: bool = True) -> None:
    """``torch.compile(fullgraph=True)`` traces with zero graph breaks (a
    break raises) and gives the eager output and gradients."""
    conv.eval()
    torch._dynamo.reset()
    compiled = torch.compile(conv, fullgraph=True)
    inputs = layer_inputs(conv, data)
    x_eager = data.x.clone().requires_grad_()
    x_compiled = data.x.clone().requires_grad_()
    eager = conv(x_eager, data.edge_index, **inputs)
    out = compiled(x_compiled, data.edge_index, **inputs)
    assert_close(out, eager, 'compiled output differs from eager')
    if backward:
        grad = torch.randn_like(eager)
        eager.backward(grad)
        out.backward(grad)
        assert_close(x_compiled.grad, x_eager.grad,
                     'compiled gradient differs from eager')
    torch._dynamo.reset()


def assert_bipartite(conv: torch.nn.Module, x: tuple, edge_index: Tensor,
                     out_channels: int, **kwargs) -> Tensor:
    """Bipartite input ``(x_src, x_dst)`` with ``N_src != N_dst`` gives one
    finite row per destination, with gradients to both sides."""
    conv.eval()
    x = tuple(t.clone().requires_grad_() for t in x)
    assert x[0].size(0) != x[1].size(0)
    out = conv(x, edge_index, **kwargs)
    assert out.shape == (x[1].size(0), out_channels)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in x)
    return out


def assert_local_attention_properties(conv: torch.nn.Module, data: Data,
                                      out_channels: int) -> None:
    """The PyG-native checks of an attention layer over ``edge_index``:
    output shape, edge-permutation invariance, node-permutation
    equivariance, attention weights summing to 1, finite gradients."""
    assert_output_shape(conv, data, out_channels)
    assert_edge_permutation_invariant(conv, data)
    assert_node_permutation_equivariant(conv, data)
    assert_alpha_sums_to_one(conv, data)
    assert_finite_gradients(conv, data)


def assert_same_function(conv: torch.nn.Module, reference: torch.nn.Module,
                         x, edge_index: Tensor, *args, **kwargs) -> Tensor:
    """``conv`` and ``reference`` (a PyG peer or slow reference loaded with
    the same weights) give the same output and the same gradients for the
    input features and for every parameter, matched by name.  ``x`` may be
    a pair ``(x_src, x_dst)``.  Returns ``conv``'s output."""
    def call(module):
        leaves = [t.clone().requires_grad_()
                  for t in (x if isinstance(x, tuple) else (x, ))]
        inputs = tuple(leaves) if isinstance(x, tuple) else leaves[0]
        return leaves, module(inputs, edge_index, *args, **kwargs)

    (leaves, out), (ref_leaves, expected) = call(conv), call(reference)
    assert_close(out, expected, 'output differs from the reference')
    grad = torch.randn_like(out)
    params = dict(conv.named_parameters())
    ref_params = dict(reference.named_parameters())
    assert params.keys() == ref_params.keys()
    names = list(params)
    grads = torch.autograd.grad(out, leaves + [params[n] for n in names],
                                grad, allow_unused=True)
    ref_grads = torch.autograd.grad(
        expected, ref_leaves + [ref_params[n] for n in names], grad,
        allow_unused=True)
    labels = [f'x[{i}]' for i in range(len(leaves))] + names
    for label, ours, theirs in zip(labels, grads, ref_grads):
        assert (ours is None) == (theirs is None), label
        if ours is not None:
            assert_close(ours, theirs, f'gradient of {label} differs')
    return out


def assert_reset_parameters(conv: torch.nn.Module) -> None:
    """``reset_parameters()`` redraws every parameter that is not
    initialised to a constant, and keeps shapes."""
    before = {k: v.clone() for k, v in conv.state_dict().items()}
    conv.reset_parameters()
    after = conv.state_dict()
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    random = [k for k, v in before.items() if v.numel() > 1 and v.std() > 0]
    assert set(random) <= set(changed), set(random) - set(changed)


def assert_neighbor_batch(batch, data: Data, num_neighbors,
                          seeds: Tensor) -> None:
    r"""A :class:`NeighborLoader` mini-batch is a true, hop-ordered sample:
    seeds first, each edge a real edge named by its id, each hop's edges
    ending at the previous hop's nodes, :obj:`min(k, in-degree)` of them per
    node, sources already reached."""
    n_id, (row, col) = batch.n_id, batch.edge_index
    assert torch.equal(n_id[:batch.batch_size], seeds)
    assert n_id.unique().numel() == n_id.numel()
    assert sum(batch.num_sampled_nodes) == n_id.numel()
    assert sum(batch.num_sampled_edges) == row.numel()
    assert batch.e_id.unique().numel() == batch.e_id.numel()
    assert torch.equal(data.edge_index[:, batch.e_id], n_id[batch.edge_index])
    if data.edge_attr is not None:
        assert torch.equal(batch.edge_attr, data.edge_attr[batch.e_id])

    in_degree = Counter(data.edge_index[1].tolist())
    node_end = torch.tensor(batch.num_sampled_nodes).cumsum(0).tolist()
    edge_end = torch.tensor(batch.num_sampled_edges).cumsum(0).tolist()
    for hop, k in enumerate(num_neighbors):
        first, last = ([0] + node_end)[hop], node_end[hop]
        edges = slice(([0] + edge_end)[hop], edge_end[hop])
        assert bool((col[edges] >= first).all() and (col[edges] < last).all())
        assert bool((row[edges] < node_end[hop + 1]).all())
        counts = Counter(col[edges].tolist())
        for v in range(first, last):
            deg = in_degree[int(n_id[v])]
            assert counts[v] == (deg if k < 0 else min(k, deg))
