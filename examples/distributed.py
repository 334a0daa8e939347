r"""Data-parallel mini-batch training on Cora / CiteSeer with
:class:`torch.nn.parallel.DistributedDataParallel` and PyG's
:class:`~torch_geometric.loader.NeighborLoader` (as
:class:`pyg_attn.loader.NeighborLoader`, which also samples without
``pyg-lib``).

Launch one process per worker with ``torchrun``; the gloo backend runs on
CPU, nccl when CUDA is present (one GPU per process)::

    torchrun --standalone --nproc_per_node=2 examples/distributed.py \
        --dataset Cora --conv edge_gat

Run without ``torchrun`` it trains in a single process.

Each rank takes an equal share of the (shuffled) training nodes; the few left
over when the count does not divide are dropped, so that every rank runs the
same number of steps per epoch and DDP's gradient all-reduce never waits on a
rank that has stopped.  Validation and test nodes are split among the ranks
too, and the correct counts are summed over them.

Mini-batches are bipartite: with ``L`` layers, layer ``i`` maps the nodes
within ``L - i`` hops of the batch's seed nodes to those within
``L - i - 1`` hops, over the edges of the first ``L - i`` hops, so each layer
receives ``(x_src, x_dst)`` and the last one outputs the seed nodes only.
Training samples ``--num-neighbors`` in-edges per node and hop; evaluation
takes every in-edge, so its accuracy is that of full-graph inference.

Sampling: PyG's :class:`~torch_geometric.sampler.NeighborSampler` calls
``pyg-lib`` or ``torch-sparse`` and raises ``ImportError`` when neither is
installed (PyPI ships only their sources).  :class:`pyg_attn.loader.
NeighborLoader` is PyG's loader with a sampler that, only when both are
missing, samples in plain torch with the same output layout.

The model is :class:`pyg_attn.nn.AttentionNet` with GAT's settings (8 heads x
8 channels, dropout 0.6, Adam with lr 0.005 and weight decay 5e-4) and the
layers' own defaults otherwise (``dot_product`` and ``transformer`` keep their
root weight: with sampled neighbourhoods a self-loop edge could be left out).

``poincare``, ``local_global``, ``rotary`` and ``moe`` are the ``pyg-attn
compare`` rows of the same name (:func:`pyg_attn.compare.
available_mechanisms`): their layer arguments, self-loops and graph
transforms, built once on the whole graph by rank 0 and sent to the others
(HNSW links with their ``edge_type``; the 2-hop neighbourhood with hop
positions in ``edge_pos``), before sampling, so each mini-batch carries the
edge tensors of its sampled edges; layers with a root weight keep it.
``moe`` adds its load-balancing loss, and DDP then looks for parameters
without a gradient (the experts a step routes no node to).

``linear``, ``linear_gps`` and ``dual_space`` (also comparison rows) attend
over all nodes of one node set (globally, or over latent neighbours searched
among them), so they take no bipartite input.  In training their layers run
on the whole sampled subgraph, every node of the mini-batch and every
sampled edge, and the seed nodes' outputs are kept: global attention spans
the mini-batch's nodes, and latent neighbours are searched among them (anew
at every step, as the node set changes).  Evaluation is full-graph
inference: each rank runs the model once on the whole graph and counts its
share of the validation and test nodes.  ``dual_space`` builds skip
projections it does not use (its attentions have no root weight), so DDP
looks for parameters without a gradient for it too.
"""
import argparse
import os
import os.path as osp
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
import torch_geometric.transforms as T
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch_geometric.nn import GATConv, TransformerConv
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from pyg_attn.compare import (  # noqa: E402
    available_mechanisms,
    environment,
    with_auxiliary_loss,
    write_json,
)
from pyg_attn.datasets import load_planetoid  # noqa: E402
from pyg_attn.loader import NeighborLoader  # noqa: E402
from pyg_attn.nn import (  # noqa: E402
    AttentionNet,
    DotProductAttentionConv,
    EdgeGATConv,
    FlashAttentionConv,
)
from pyg_attn.nn.models.adapters import KeywordAttentionNet  # noqa: E402


def flash_attention_conv(in_channels, out_channels, **kwargs):
    # A factory, not the class: AttentionNet keeps only the arguments a
    # class's own signature names, and FlashAttentionConv's is
    # (*args, chunk_size, **kwargs), which would drop heads/concat/dropout.
    return FlashAttentionConv(in_channels, out_channels, **kwargs)


CONVS = {
    'dot_product': DotProductAttentionConv,
    'edge_gat': EdgeGATConv,
    'flash': flash_attention_conv,
    'gat': GATConv,
    'transformer': TransformerConv,
}
# Rows of `pyg-attn compare` run here with their layer arguments, self-loops
# and graph transforms (those this installation has).
MECHANISMS = {name: mechanism
              for name, mechanism in available_mechanisms().items()
              if name in ('poincare', 'local_global', 'rotary', 'moe',
                          'linear', 'linear_gps', 'dual_space')}
CONVS.update({name: mechanism.conv for name, mechanism in MECHANISMS.items()})
# Layers over one node set: trained on whole sampled subgraphs, evaluated on
# the whole graph (see the module docstring).
ONE_NODE_SET = frozenset({'linear', 'linear_gps', 'dual_space'})
# Parameters without a gradient in some steps: unrouted experts; skip
# projections built but unused.
UNUSED_PARAMETERS = frozenset({'moe', 'dual_space'})


def bipartite(conv: str) -> bool:
    r"""Whether :obj:`conv` runs as bipartite layers over the hops of a
    mini-batch (else on its whole sampled subgraph)."""
    return conv not in ONE_NODE_SET


def conv_kwargs(conv: str) -> dict:
    r"""The layer arguments of :obj:`conv`'s comparison row, with the root
    weight kept where the layer has one."""
    mechanism = MECHANISMS.get(conv)
    if mechanism is None:
        return {}
    kwargs = dict(mechanism.conv_kwargs)
    if 'root_weight' in kwargs:
        kwargs['root_weight'] = True
    return kwargs


def edge_inputs(conv: str) -> tuple:
    r"""The edge tensors :obj:`conv` takes by keyword, e.g.
    :obj:`("edge_type",)`."""
    mechanism = MECHANISMS.get(conv)
    return () if mechanism is None else mechanism.inputs


def message_graph(conv: str, data):
    r""":obj:`data` with the self-loops and graph transforms of
    :obj:`conv`'s comparison row applied (unchanged for the others)."""
    mechanism = MECHANISMS.get(conv)
    if mechanism is None:
        return data
    self_loops = mechanism.hyperparameters().self_loops
    return T.Compose(mechanism.graph_transforms(self_loops))(data)


class SampledAttentionNet(torch.nn.Module):
    r"""Runs a :class:`~pyg_attn.nn.models.adapters.KeywordAttentionNet`
    on a :class:`NeighborLoader` mini-batch and returns the outputs of the
    seed nodes: hop by hop, as bipartite layers (see the module docstring
    and :meth:`pyg_attn.nn.AttentionNet.forward`), or with
    :obj:`bipartite=False` every layer on the whole mini-batch, keeping the
    seed nodes' rows.  Without hop counts it is the plain full-graph
    forward.  (One module for DDP to wrap, called with the batch's tensors.)
    """
    def __init__(self, net: AttentionNet, bipartite: bool = True):
        super().__init__()
        self.net = net
        self.bipartite = bipartite

    def forward(self, x: Tensor, edge_index: Tensor,
                num_sampled_nodes: Optional[List[int]] = None,
                num_sampled_edges: Optional[List[int]] = None,
                **tensors: Tensor) -> Tensor:
        r""":obj:`tensors` (one row per edge, e.g. :obj:`edge_type`) are
        passed to every layer by keyword, cut to the layer's edges."""
        if num_sampled_nodes is None:
            return self.net(x, edge_index, **tensors)
        if not self.bipartite:  # seed nodes come first
            return self.net(x, edge_index, **tensors)[:num_sampled_nodes[0]]
        return self.net(x, edge_index,
                        num_sampled_nodes_per_hop=num_sampled_nodes,
                        num_sampled_edges_per_hop=num_sampled_edges,
                        **tensors)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataset', choices=['Cora', 'CiteSeer'],
                        default='Cora')
    parser.add_argument('--root', default=None,
                        help='data root (default: $PYG_ATTN_DATA, else ./data)')
    parser.add_argument('--conv', choices=list(CONVS), default='edge_gat')
    parser.add_argument('--epochs', type=int, default=100)
    parser.add_argument('--batch-size', type=int, default=32,
                        help='seed nodes per step and rank (default: 32)')
    parser.add_argument('--eval-batch-size', type=int, default=512,
                        help='seed nodes per evaluation batch (default: 512); '
                        'one-node-set convs evaluate the whole graph at once')
    parser.add_argument('--num-neighbors', type=int, nargs='+',
                        default=[10, 10], help='in-edges sampled per node '
                        'and hop, -1 for all; one entry per layer '
                        '(default: 10 10)')
    parser.add_argument('--hidden', type=int, default=8,
                        help='channels per head (default: 8)')
    parser.add_argument('--heads', type=int, default=8)
    parser.add_argument('--lr', type=float, default=0.005)
    parser.add_argument('--weight-decay', type=float, default=5e-4)
    parser.add_argument('--dropout', type=float, default=0.6)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default=None, help='JSON results, written by '
                        'rank 0 (default: results/distributed_<dataset>_'
                        '<conv>.json)')
    parser.add_argument('--save-dir', default=None, help='each rank writes '
                        'rank<r>.pt there: its initial and final parameters '
                        'and the training nodes it drew (default: none)')
    args = parser.parse_args(argv)
    for flag in ('batch_size', 'eval_batch_size'):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} ({getattr(args, flag)})"
                         " must be at least 1")
    if args.epochs < 1:
        parser.error(f'--epochs ({args.epochs}) must be at least 1')
    if any(k < -1 or k == 0 for k in args.num_neighbors):
        parser.error(f'--num-neighbors ({args.num_neighbors}) takes positive '
                     'counts or -1 (all in-edges)')
    if args.out is None:
        args.out = osp.join('results', f'distributed_{args.dataset}_'
                            f'{args.conv}.json')
    return args


def init_process_group() -> torch.device:
    r"""Joins the group ``torchrun`` describes in the environment, or forms
    a group of one without it; returns this rank's device."""
    cuda = torch.cuda.is_available()
    backend = 'nccl' if cuda else 'gloo'
    if 'WORLD_SIZE' in os.environ:
        dist.init_process_group(backend)
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0,
                                world_size=1)
    if cuda:
        local_rank = int(os.environ.get('LOCAL_RANK', 0))
        torch.cuda.set_device(local_rank)
        return torch.device('cuda', local_rank)
    return torch.device('cpu')


def make_loader(data, nodes: Tensor, num_neighbors: List[int], batch_size: int,
                shuffle: bool) -> NeighborLoader:
    return NeighborLoader(data, num_neighbors, input_nodes=nodes,
                          batch_size=batch_size, shuffle=shuffle)


def step_inputs(batch, device: torch.device, keys: Sequence[str] = ()):
    r"""The model's positional inputs, its keyword edge tensors
    :obj:`keys` and the seed nodes' labels."""
    batch = batch.to(device)
    return (batch.x, batch.edge_index, batch.num_sampled_nodes,
            batch.num_sampled_edges), {key: batch[key] for key in keys}, \
        batch.y[:batch.batch_size]


@torch.no_grad()
def evaluate(model: SampledAttentionNet, loader: NeighborLoader,
             device: torch.device, keys: Sequence[str] = ()) -> Tensor:
    r"""Returns this rank's :obj:`[correct, total]` over the loader's
    seed nodes."""
    model.eval()
    counts = torch.zeros(2, dtype=torch.long)
    for batch in loader:
        inputs, tensors, y = step_inputs(batch, device, keys)
        pred = model(*inputs, **tensors).argmax(dim=-1)
        counts += torch.tensor([int((pred == y).sum()), y.numel()])
    return counts


@torch.no_grad()
def evaluate_graph(model: SampledAttentionNet, data, node_sets: List[Tensor],
                   device: torch.device, keys: Sequence[str] = ()) -> Tensor:
    r"""Full-graph inference: returns :obj:`[correct, total]` of each of
    :obj:`node_sets` in turn, from one forward over the whole graph."""
    model.eval()
    pred = model(data.x.to(device), data.edge_index.to(device),
                 **{key: data[key].to(device) for key in keys})
    correct = pred.argmax(dim=-1).cpu() == data.y
    return torch.tensor([[int(correct[nodes].sum()), nodes.numel()]
                         for nodes in node_sets]).view(-1)


def main(argv=None) -> int:
    args = parse_args(argv)
    device = init_process_group()
    rank, world_size = dist.get_rank(), dist.get_world_size()
    try:
        return train(args, device, rank, world_size)
    finally:
        dist.destroy_process_group()


def train(args, device: torch.device, rank: int, world_size: int) -> int:
    # the source as the run starts, for the results rank 0 writes
    versions = environment() if rank == 0 else None
    # Rank 0 writes the processed dataset before the others read it.
    error = None
    for turn in (0, 1):
        if (rank == 0) == (turn == 0):
            try:
                dataset = load_planetoid(args.dataset, root=args.root,
                                         transform=T.NormalizeFeatures())
            except FileNotFoundError as e:
                error = e
        dist.barrier()
    failed = torch.zeros(world_size, device=device)
    failed[rank] = float(error is not None)
    dist.all_reduce(failed)  # every rank stops if any failed
    if bool(failed.any()):
        if rank == int(failed.nonzero()[0]):
            print(f'error: {error}', file=sys.stderr)
        return 1
    # Rank 0 builds the message graph (an HNSW index need not come out the
    # same twice) and sends it to the others.
    graph = [message_graph(args.conv, dataset[0]) if rank == 0 else None]
    dist.broadcast_object_list(graph, src=0)
    data, keys = graph[0], edge_inputs(args.conv)

    # The same shuffled split on every rank; each takes an equal share.
    generator = torch.Generator().manual_seed(args.seed)
    train_idx = data.train_mask.nonzero().view(-1)
    train_idx = train_idx[torch.randperm(train_idx.numel(),
                                         generator=generator)]
    share = train_idx.numel() // world_size
    if share == 0:
        if rank == 0:
            print(f'error: {train_idx.numel()} training nodes cannot be '
                  f'shared among {world_size} processes; use fewer',
                  file=sys.stderr)
        return 1
    train_idx = train_idx[rank * share:(rank + 1) * share]
    val_idx = data.val_mask.nonzero().view(-1).tensor_split(world_size)[rank]
    test_idx = data.test_mask.nonzero().view(-1).tensor_split(world_size)[rank]

    torch.manual_seed(args.seed)  # identical initial parameters
    net = KeywordAttentionNet(
        dataset.num_features, args.hidden, dataset.num_classes,
        num_layers=len(args.num_neighbors), conv=CONVS[args.conv],
        heads=args.heads, out_heads=1, dropout=args.dropout,
        conv_kwargs=conv_kwargs(args.conv))
    model = SampledAttentionNet(net, bipartite(args.conv)).to(device)
    initial = {k: v.detach().cpu().clone()
               for k, v in model.state_dict().items()}
    ddp = DistributedDataParallel(
        model, device_ids=[device.index] if device.type == 'cuda' else None,
        find_unused_parameters=args.conv in UNUSED_PARAMETERS)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=args.lr,
                                 weight_decay=args.weight_decay)
    torch.manual_seed(args.seed + 1 + rank)  # own sampling and dropout

    train_loader = make_loader(data, train_idx, args.num_neighbors,
                               args.batch_size, shuffle=True)
    if model.bipartite:  # the others evaluate on the whole graph
        full = [-1] * len(args.num_neighbors)
        val_loader = make_loader(data, val_idx, full, args.eval_batch_size,
                                 False)
        test_loader = make_loader(data, test_idx, full, args.eval_batch_size,
                                  False)

    history = dict(train_loss=[], val_acc=[], test_acc=[], epoch_time=[])
    seen, steps = [], 0
    progress = tqdm(range(1, args.epochs + 1), unit='epoch',
                    desc=f'{args.dataset} {args.conv} x{world_size}',
                    disable=rank != 0)
    for epoch in progress:
        start = time.perf_counter()
        ddp.train()
        total = torch.zeros(2, dtype=torch.float64)  # [loss sum, steps]
        for batch in train_loader:
            seen.append(batch.n_id[:batch.batch_size])
            inputs, tensors, y = step_inputs(batch, device, keys)
            optimizer.zero_grad()
            loss = F.cross_entropy(ddp(*inputs, **tensors), y)
            with_auxiliary_loss(loss, model).backward()  # + moe's balancing
            optimizer.step()
            total += torch.tensor([float(loss.detach()), 1.0])
            steps += 1
        epoch_time = time.perf_counter() - start

        if model.bipartite:
            evaluated = torch.cat([
                evaluate(model, val_loader, device, keys),
                evaluate(model, test_loader, device, keys)])
        else:
            evaluated = evaluate_graph(model, data, [val_idx, test_idx],
                                       device, keys)
        counts = torch.cat([total, evaluated])
        counts = counts.to(device)  # nccl reduces CUDA tensors only
        dist.all_reduce(counts)  # sums over ranks
        counts = counts.cpu()
        history['train_loss'].append(float(counts[0] / counts[1]))
        history['val_acc'].append(float(counts[2] / counts[3]))
        history['test_acc'].append(float(counts[4] / counts[5]))
        history['epoch_time'].append(epoch_time)
        progress.set_postfix(loss=f"{history['train_loss'][-1]:.3f}",
                             val=f"{history['val_acc'][-1]:.3f}",
                             test=f"{history['test_acc'][-1]:.3f}")

    if args.save_dir is not None:
        os.makedirs(args.save_dir, exist_ok=True)
        torch.save(dict(initial=initial,
                        final={k: v.detach().cpu() for k, v in
                               model.state_dict().items()},
                        seed_nodes=torch.cat(seen), steps=steps),
                   osp.join(args.save_dir, f'rank{rank}.pt'))
    if rank != 0:
        return 0

    best = max(range(args.epochs), key=lambda i: history['val_acc'][i])
    epoch_time = sum(history['epoch_time']) / args.epochs
    print(f"{args.dataset} {args.conv}: {world_size} process(es) "
          f"({dist.get_backend()}), {steps} steps of {args.batch_size} seed "
          f"nodes per rank, train loss {history['train_loss'][0]:.3f} -> "
          f"{history['train_loss'][-1]:.3f}, test accuracy "
          f"{100 * history['test_acc'][best]:.2f} % at the best validation "
          f"epoch ({best + 1}), {1000 * epoch_time:.1f} ms per training "
          f"epoch")
    results = dict(
        dataset=args.dataset, conv=args.conv, world_size=world_size,
        backend=dist.get_backend(), train_nodes_per_rank=share,
        train_nodes_dropped=int(data.train_mask.sum()) - share * world_size,
        steps_per_epoch=steps // args.epochs, best_epoch=best + 1,
        best_test_acc=history['test_acc'][best],
        best_val_acc=history['val_acc'][best], epoch_time_mean=epoch_time,
        **history, args=vars(args),
        versions=versions,
    )
    write_json(results, args.out)
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
