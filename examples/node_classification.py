r"""Semi-supervised node classification on Cora / CiteSeer with the GAT paper's
protocol (Veličković et al., 2018, https://arxiv.org/abs/1710.10903).

Public Planetoid split (140/500/1000), row-normalised features, two layers
(8 heads x 8 channels, then one averaged output head), dropout 0.6 on every
layer's input and on the attention, Adam (lr 0.005, weight decay 5e-4), and
GAT's early stopping: patience 100 epochs on validation loss *or* accuracy,
reporting the test accuracy of the last epoch that improved both.

Per-conv defaults (each overridable on the command line):

- ``gat``, ``edge_gat``: the GAT protocol above.
- ``dot_product``, ``transformer``: the GAT protocol with GAT's neighbourhood:
  self-loops added to the graph and ``root_weight=False``, so each node
  attends over itself and its neighbours instead of adding a separate skip
  projection.  Measured on Cora (seeds 0-3): 82.6 % this way; 80.8 % (10
  seeds) with the root weight and no loops; 61.7 % with ``beta=True``.
- ``gcn``: Kipf & Welling's settings (16 hidden channels, dropout 0.5,
  lr 0.01); GCNConv takes no heads.

Example::

    python examples/node_classification.py --dataset Cora --conv edge_gat
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torch_geometric
import torch_geometric.transforms as T
from torch_geometric.nn import GATConv, GCNConv, TransformerConv
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import pyg_attn  # noqa: E402
from pyg_attn.datasets import load_planetoid  # noqa: E402
from pyg_attn.nn import (  # noqa: E402
    AttentionNet,
    DotProductAttentionConv,
    EdgeGATConv,
)

CONVS = {
    'dot_product': DotProductAttentionConv,
    'edge_gat': EdgeGATConv,
    'gat': GATConv,
    'transformer': TransformerConv,
    'gcn': GCNConv,
}
DEFAULTS = dict(hidden=8, heads=8, lr=0.005, weight_decay=5e-4, dropout=0.6,
                self_loops=False)
CONV_DEFAULTS = {
    'dot_product': dict(self_loops=True, root_weight=False),
    'transformer': dict(self_loops=True, root_weight=False),
    'gcn': dict(hidden=16, dropout=0.5, lr=0.01),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dataset', choices=['Cora', 'CiteSeer'],
                        default='Cora')
    parser.add_argument('--conv', choices=list(CONVS), default='edge_gat')
    parser.add_argument('--seeds', type=int, default=10,
                        help='number of seeds, 0..seeds-1 (default: 10)')
    parser.add_argument('--epochs', type=int, default=1000,
                        help='maximum epochs per seed (default: 1000)')
    parser.add_argument('--patience', type=int, default=100)
    parser.add_argument('--root', default=None,
                        help='data root (default: $PYG_ATTN_DATA, else ./data)')
    parser.add_argument('--hidden', type=int, default=None,
                        help='channels per head (default: 8; gcn: 16)')
    parser.add_argument('--heads', type=int, default=None,
                        help='heads of the hidden layer (default: 8)')
    parser.add_argument('--lr', type=float, default=None,
                        help='learning rate (default: 0.005; gcn: 0.01)')
    parser.add_argument('--weight-decay', type=float, default=None,
                        help='weight decay (default: 5e-4)')
    parser.add_argument('--dropout', type=float, default=None,
                        help='input dropout (default: 0.6; gcn: 0.5)')
    parser.add_argument('--attn-dropout', type=float, default=None,
                        help='attention dropout (default: --dropout)')
    parser.add_argument('--beta', action=argparse.BooleanOptionalAction,
                        default=None, help='gated root weight of '
                        'dot_product/transformer (default: off)')
    parser.add_argument('--root-weight', action=argparse.BooleanOptionalAction,
                        default=None, help='skip projection of '
                        'dot_product/transformer (default: off)')
    parser.add_argument('--self-loops', action=argparse.BooleanOptionalAction,
                        default=None, help='add self-loops to the graph '
                        '(default: on for dot_product/transformer; gat, '
                        'edge_gat and gcn add their own)')
    parser.add_argument('--out', default=None, help='JSON results (default: '
                        'results/node_classification_<dataset>_<conv>.json)')
    parser.add_argument('--device', default=None,
                        help='default: cuda if available, else cpu')
    args = parser.parse_args(argv)
    for key, value in {**DEFAULTS, **CONV_DEFAULTS.get(args.conv, {})}.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for flag in ('beta', 'root_weight'):
        if getattr(args, flag) is not None and args.conv not in [
                'dot_product', 'transformer']:
            parser.error(f"--{flag.replace('_', '-')} applies to dot_product "
                         "and transformer only")
    if args.attn_dropout is None:
        args.attn_dropout = args.dropout
    if args.out is None:
        args.out = osp.join('results', f'node_classification_{args.dataset}_'
                            f'{args.conv}.json')
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    return args


def build_model(args, dataset) -> AttentionNet:
    conv_kwargs = {}
    if args.conv != 'gcn':
        conv_kwargs['dropout'] = args.attn_dropout
    for flag in ('beta', 'root_weight'):
        if getattr(args, flag) is not None:
            conv_kwargs[flag] = getattr(args, flag)
    return AttentionNet(dataset.num_features, args.hidden,
                        dataset.num_classes, num_layers=2,
                        conv=CONVS[args.conv], heads=args.heads, out_heads=1,
                        dropout=args.dropout, conv_kwargs=conv_kwargs)


def run_seed(args, dataset, seed: int, progress: tqdm) -> dict:
    r"""Trains one model with early stopping and returns its test and
    validation accuracy, the epoch they came from, the epochs run and the mean
    epoch time."""
    torch.manual_seed(seed)
    data = dataset[0].to(args.device)
    model = build_model(args, dataset).to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr,
                                 weight_decay=args.weight_decay)
    max_acc, min_loss, bad_epochs, times = 0.0, float('inf'), 0, []
    best = dict(test_acc=0.0, val_acc=0.0, best_epoch=0)
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        model.train()
        optimizer.zero_grad()
        out = model(data.x, data.edge_index)
        F.cross_entropy(out[data.train_mask], data.y[data.train_mask]).backward()
        optimizer.step()

        model.eval()
        with torch.no_grad():
            out = model(data.x, data.edge_index)
        times.append(time.perf_counter() - start)
        val_loss = F.cross_entropy(out[data.val_mask], data.y[data.val_mask])
        pred = out.argmax(dim=-1)
        val_acc = (pred[data.val_mask] == data.y[data.val_mask]).float().mean()
        val_loss, val_acc = float(val_loss), float(val_acc)

        # GAT's rule: keep the model that improves both, wait on either.
        if val_acc >= max_acc or val_loss <= min_loss:
            if val_acc >= max_acc and val_loss <= min_loss:
                test_acc = (pred[data.test_mask] == data.y[data.test_mask])
                best = dict(test_acc=float(test_acc.float().mean()),
                            val_acc=val_acc, best_epoch=epoch)
            max_acc, min_loss = max(val_acc, max_acc), min(val_loss, min_loss)
            bad_epochs = 0
        else:
            bad_epochs += 1
        progress.set_postfix(seed=seed, epoch=epoch, val=f'{max_acc:.3f}',
                             test=f"{best['test_acc']:.3f}")
        progress.update()
        if bad_epochs >= args.patience:
            break
    return dict(best, epochs=epoch, epoch_time=statistics.mean(times))


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        transform = T.NormalizeFeatures()
        if args.self_loops:
            transform = T.Compose([transform, T.AddSelfLoops()])
        dataset = load_planetoid(args.dataset, root=args.root,
                                 transform=transform)
    except FileNotFoundError as error:
        print(f'error: {error}', file=sys.stderr)
        return 1

    runs = []
    with tqdm(total=args.seeds * args.epochs, unit='epoch',
              desc=f'{args.dataset} {args.conv}') as progress:
        for seed in range(args.seeds):
            runs.append(run_seed(args, dataset, seed, progress))
            progress.total -= args.epochs - runs[-1]['epochs']
            progress.refresh()

    accs = [run['test_acc'] for run in runs]
    mean = statistics.mean(accs)
    std = statistics.pstdev(accs)
    epoch_time = statistics.mean(run['epoch_time'] for run in runs)
    print(f'{args.dataset} {args.conv}: test accuracy {100 * mean:.2f} ± '
          f'{100 * std:.2f} % over {len(accs)} seeds, '
          f'{1000 * epoch_time:.1f} ms/epoch')

    results = dict(
        dataset=args.dataset, conv=args.conv, seeds=list(range(args.seeds)),
        accuracies=accs, mean=mean, std=std, epoch_time_mean=epoch_time,
        val_accuracies=[run['val_acc'] for run in runs],
        best_epochs=[run['best_epoch'] for run in runs],
        epochs=[run['epochs'] for run in runs], args=vars(args),
        versions=dict(torch=torch.__version__,
                      torch_geometric=torch_geometric.__version__,
                      pyg_attn=pyg_attn.__version__),
    )
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(results, f, indent=2)
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
