r"""Binary node classification on the heterophilous graphs of Platonov et al.
(2023, "A critical look at the evaluation of GNNs under heterophily",
https://arxiv.org/abs/2302.11640): minesweeper, tolokers, questions, scored
by ROC AUC on their 10 given train/validation/test splits.

Their protocol: full-batch training, an input linear layer (then dropout and
GELU), ``--layers`` pre-norm residual blocks ``x + FF(conv(LayerNorm(x)))``
with a feed-forward part ``Linear -> dropout -> GELU -> Linear -> dropout``,
a final LayerNorm and linear output; hidden size 512, 8 heads, dropout 0.2,
AdamW with lr 3e-5 and no weight decay, 1000 steps, and the test ROC AUC of
the step of best validation ROC AUC.  Published on minesweeper: GAT 92.01,
GAT-sep 93.91, GT 91.85.

Convs (``--conv``): ``dual_space`` (:class:`~pyg_attn.nn.DualSpaceAttentionConv`,
``--k`` latent neighbours refreshed every ``--refresh-interval`` training
steps; in evaluation they are searched again at every step),
``dot_product`` (:class:`~pyg_attn.nn.DotProductAttentionConv`, Platonov's
GT), ``moe`` (:class:`~pyg_attn.nn.MoEAttentionConv` routing each node to
``--top-k`` of EdgeGAT, DotProduct and Poincaré experts, as in ``pyg-attn
compare``; its load-balancing loss is added to the task loss),
``edge_gat`` (:class:`~pyg_attn.nn.EdgeGATConv`), PyG's ``gat``
(``GATConv``), ``transformer`` (``TransformerConv``) and ``gcn``
(``GCNConv``), and ``mlp``, the control: a linear map of each node alone in
place of the graph layer (Platonov's ResNet).  ``flash``, ``poincare``,
``local_global``, ``rotary``, ``linear`` and ``linear_gps`` are the rows of
``pyg-attn compare`` of the same name (:func:`pyg_attn.compare.
available_mechanisms`): the same layer factory, layer arguments and graph
transforms (HNSW links beside the graph's edges for ``local_global``, the
2-hop neighbourhood with hop positions for ``rotary``), in this script's
model.  Layers with a root weight (a separate projection of the node's own
features, the "-sep" variants' idea) keep it unless ``--no-root-weight``;
no self-loops are added (``gat``, ``edge_gat`` and ``gcn`` add their own).

Example::

    python examples/heterophilous.py --dataset minesweeper --conv dual_space
    python examples/heterophilous.py --conv gat --splits 2 --epochs 200 --hidden 128
    python examples/heterophilous.py --conv edge_gat --split-ids 5 6 7 8 9
"""
import argparse
import os.path as osp
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import GATConv, GCNConv, TransformerConv
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from pyg_attn.compare import (  # noqa: E402
    available_mechanisms,
    environment,
    with_auxiliary_loss,
    write_json,
)
from pyg_attn.compare.mechanisms import moe_conv  # noqa: E402
from pyg_attn.datasets import load_heterophilous  # noqa: E402
from pyg_attn.nn import (  # noqa: E402
    DotProductAttentionConv,
    DualSpaceAttentionConv,
    EdgeGATConv,
)
from pyg_attn.nn.models.adapters import NodeLinear  # noqa: E402

DATASETS = ('minesweeper', 'tolokers', 'questions')  # the ROC AUC ones
# Rows of `pyg-attn compare` run here with their layer factory, layer
# arguments and graph transforms (those this installation has).
MECHANISMS = {name: mechanism
              for name, mechanism in available_mechanisms().items()
              if name in ('flash', 'poincare', 'local_global', 'rotary',
                          'linear', 'linear_gps')}
CONVS = ('dual_space', 'dot_product', 'edge_gat', 'gat', 'transformer',
         'gcn', 'moe', 'mlp', *MECHANISMS)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataset', choices=DATASETS, default='minesweeper')
    parser.add_argument('--conv', choices=CONVS, default='dual_space')
    parser.add_argument('--splits', type=int, default=10,
                        help='run the given splits 0..splits-1 (default: 10)')
    parser.add_argument('--split-ids', type=int, nargs='+', default=None,
                        metavar='ID', help='run these splits instead, e.g. '
                        '--split-ids 3 4 (to share the 10 among machines)')
    parser.add_argument('--epochs', type=int, default=1000,
                        help='full-batch training steps per split '
                        '(default: 1000)')
    parser.add_argument('--layers', type=int, default=2,
                        help='residual blocks (default: 2)')
    parser.add_argument('--hidden', type=int, default=512,
                        help='hidden size, split over the heads '
                        '(default: 512)')
    parser.add_argument('--heads', type=int, default=8)
    parser.add_argument('--dropout', type=float, default=0.2)
    parser.add_argument('--lr', type=float, default=3e-5)
    parser.add_argument('--weight-decay', type=float, default=0.)
    parser.add_argument('--k', type=int, default=16,
                        help='latent neighbours of dual_space (default: 16)')
    parser.add_argument('--refresh-interval', type=int, default=10,
                        help='training steps per latent search of dual_space '
                        '(default: 10)')
    parser.add_argument('--top-k', type=int, default=2,
                        help='experts per node of moe (default: 2)')
    parser.add_argument('--fusion', choices=['linear', 'gate'],
                        default='linear', help='fusion of dual_space')
    parser.add_argument('--root-weight', action=argparse.BooleanOptionalAction,
                        default=True, help='root weight of dual_space and '
                        'dot_product (default: on)')
    parser.add_argument('--eval-every', type=int, default=1,
                        help='evaluate every this many steps (default: 1)')
    parser.add_argument('--root', default=None,
                        help='data root (default: $PYG_ATTN_DATA, else ./data)')
    parser.add_argument('--out', default=None, help='JSON results (default: '
                        'results/heterophilous_<dataset>_<conv>.json)')
    parser.add_argument('--device', default=None,
                        help='default: cuda if available, else cpu')
    args = parser.parse_args(argv)
    if args.hidden % args.heads:
        parser.error(f'--hidden ({args.hidden}) must be divisible by '
                     f'--heads ({args.heads})')
    if not 1 <= args.splits <= 10:
        parser.error(f'--splits ({args.splits}) must lie in 1..10')
    if args.split_ids is not None:
        wrong = [i for i in args.split_ids if not 0 <= i <= 9]
        if wrong or len(set(args.split_ids)) < len(args.split_ids):
            parser.error(f'--split-ids ({args.split_ids}) must be distinct '
                         f'numbers in 0..9, the given splits')
    if args.out is None:
        args.out = osp.join('results', f'heterophilous_{args.dataset}_'
                            f'{args.conv}.json')
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    return args


def roc_auc(score: Tensor, target: Tensor) -> float:
    r"""Area under the ROC curve, the probability that a random positive
    scores above a random negative (ties count one half), from the ranks
    (Mann-Whitney U)."""
    score, target = score.detach().double().cpu(), target.bool().cpu()
    num_pos = int(target.sum())
    num_neg = target.numel() - num_pos
    if num_pos == 0 or num_neg == 0:
        raise ValueError('ROC AUC needs both classes')
    values, inverse, counts = torch.unique(score, return_inverse=True,
                                           return_counts=True)
    last = counts.cumsum(0).double()
    mean_rank = last - (counts.double() - 1) / 2  # 1-based, ties averaged
    ranks = mean_rank[inverse]
    u = ranks[target].sum() - num_pos * (num_pos + 1) / 2
    return float(u / (num_pos * num_neg))


def make_conv(args, dim: int) -> torch.nn.Module:
    heads, head_dim = args.heads, args.hidden // args.heads
    if args.conv == 'dual_space':
        return DualSpaceAttentionConv(dim, head_dim, heads=heads, k=args.k,
                                      refresh_interval=args.refresh_interval,
                                      fusion=args.fusion,
                                      root_weight=args.root_weight)
    if args.conv == 'dot_product':
        return DotProductAttentionConv(dim, head_dim, heads=heads,
                                       root_weight=args.root_weight)
    if args.conv == 'edge_gat':
        return EdgeGATConv(dim, head_dim, heads=heads)
    if args.conv == 'gat':
        return GATConv(dim, head_dim, heads=heads)
    if args.conv == 'transformer':
        return TransformerConv(dim, head_dim, heads=heads,
                               root_weight=args.root_weight)
    if args.conv == 'moe':
        return moe_conv(dim, head_dim, heads=heads, top_k=args.top_k)
    if args.conv == 'mlp':
        return NodeLinear(dim, dim)
    if args.conv in MECHANISMS:
        mechanism = MECHANISMS[args.conv]
        kwargs = dict(mechanism.conv_kwargs, heads=heads)
        if 'root_weight' in kwargs or mechanism.takes('root_weight'):
            kwargs['root_weight'] = args.root_weight
        return mechanism.conv(dim, head_dim, **kwargs)
    return GCNConv(dim, dim)


def message_graph(args, data):
    r"""The edges messages pass along and the tensors the layers take by
    keyword (e.g. :obj:`edge_type`): the graph's own edges, or what the
    mechanism's transforms build from them and the node features (which
    every split may see; no labels are used)."""
    mechanism = MECHANISMS.get(args.conv)
    if mechanism is None:
        return data.edge_index, {}
    return mechanism.message_graph(data.x, data.edge_index)


class Block(torch.nn.Module):
    """``x + FF(conv(LayerNorm(x)))``, Platonov et al.'s residual module."""
    def __init__(self, conv: torch.nn.Module, dim: int, dropout: float):
        super().__init__()
        self.norm = torch.nn.LayerNorm(dim)
        self.conv = conv
        self.lin1 = torch.nn.Linear(dim, dim)
        self.lin2 = torch.nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: Tensor, edge_index: Tensor, **inputs) -> Tensor:
        h = self.conv(self.norm(x), edge_index, **inputs)
        h = F.dropout(self.lin1(h), self.dropout, self.training)
        h = F.dropout(self.lin2(F.gelu(h)), self.dropout, self.training)
        return x + h


class Net(torch.nn.Module):
    def __init__(self, args, in_channels: int):
        super().__init__()
        dim = args.hidden
        self.input = torch.nn.Linear(in_channels, dim)
        self.blocks = torch.nn.ModuleList(
            Block(make_conv(args, dim), dim, args.dropout)
            for _ in range(args.layers))
        self.norm = torch.nn.LayerNorm(dim)
        self.output = torch.nn.Linear(dim, 1)
        self.dropout = args.dropout

    def forward(self, x: Tensor, edge_index: Tensor, **inputs) -> Tensor:
        x = F.gelu(F.dropout(self.input(x), self.dropout, self.training))
        for block in self.blocks:
            x = block(x, edge_index, **inputs)
        return self.output(self.norm(x)).squeeze(-1)  # [N] logits


def run_split(args, data, split: int, progress: tqdm,
              graph=None) -> dict:
    """Trains on one given split; returns the test ROC AUC at the step of
    best validation ROC AUC.  :obj:`graph` is :func:`message_graph`'s
    output (default: the graph's own edges)."""
    edge_index, inputs = graph or (data.edge_index, {})
    torch.manual_seed(split)
    train = data.train_mask[:, split]
    val, test = data.val_mask[:, split], data.test_mask[:, split]
    target = data.y.float()
    model = Net(args, data.num_features).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr,
                                  weight_decay=args.weight_decay)
    best = dict(val_auc=-1.0, test_auc=float('nan'), best_epoch=0)
    times = []
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        model.train()
        optimizer.zero_grad()
        logits = model(data.x, edge_index, **inputs)
        loss = F.binary_cross_entropy_with_logits(logits[train],
                                                  target[train])
        with_auxiliary_loss(loss, model).backward()  # + moe's balancing
        optimizer.step()
        times.append(time.perf_counter() - start)
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            model.eval()
            with torch.no_grad():
                score = model(data.x, edge_index, **inputs)
            val_auc = roc_auc(score[val], data.y[val])
            if val_auc > best['val_auc']:
                best = dict(val_auc=val_auc,
                            test_auc=roc_auc(score[test], data.y[test]),
                            best_epoch=epoch)
        progress.set_postfix(split=split, loss=f'{float(loss.detach()):.3f}',
                             val=f"{best['val_auc']:.4f}",
                             test=f"{best['test_auc']:.4f}")
        progress.update()
    return dict(best, epoch_time=statistics.mean(times))


def main(argv=None) -> int:
    args = parse_args(argv)
    versions = environment(args.device)  # the source as the run starts
    try:
        dataset = load_heterophilous(args.dataset, args.root)
    except FileNotFoundError as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    data = dataset[0].to(args.device)
    start = time.perf_counter()
    graph = message_graph(args, data)
    graph_time = time.perf_counter() - start

    splits = (list(range(args.splits)) if args.split_ids is None
              else args.split_ids)
    runs = []
    with tqdm(total=len(splits) * args.epochs, unit='step',
              desc=f'{args.dataset} {args.conv}') as progress:
        for split in splits:
            runs.append(run_split(args, data, split, progress, graph))

    aucs = [run['test_auc'] for run in runs]
    mean, std = statistics.mean(aucs), statistics.pstdev(aucs)
    epoch_time = statistics.mean(run['epoch_time'] for run in runs)
    print(f'{args.dataset} {args.conv}: test ROC AUC {100 * mean:.2f} ± '
          f'{100 * std:.2f} over {len(aucs)} splits, '
          f'{1000 * epoch_time:.1f} ms/step')
    results = dict(
        dataset=args.dataset, conv=args.conv, splits=splits,
        test_auc=aucs, mean=mean, std=std, epoch_time_mean=epoch_time,
        epoch_times=[run['epoch_time'] for run in runs],
        num_edges=graph[0].size(1), graph_time=graph_time,
        val_auc=[run['val_auc'] for run in runs],
        best_epochs=[run['best_epoch'] for run in runs], args=vars(args),
        versions=versions,
    )
    write_json(results, args.out)
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
