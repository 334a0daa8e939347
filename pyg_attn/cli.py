r"""The :obj:`pyg-attn` command (also :obj:`python -m pyg_attn`).

:obj:`pyg-attn compare` trains every available attention mechanism and
PyG's baselines (:obj:`GCNConv`, :obj:`GATConv`, :obj:`TransformerConv`) on
one dataset with the GAT paper's protocol and prints one table: test
accuracy (mean ± std over seeds), time per epoch, peak memory and
parameters.  It writes the table as :obj:`compare.csv` and
:obj:`compare.json` and a bar chart :obj:`compare.png` to :obj:`--out-dir`.

Example::

    pyg-attn compare                           # Cora, quick protocol
    pyg-attn compare --full                    # 10 seeds, 1000 epochs
    pyg-attn compare --dataset CiteSeer --mechanisms gat edge_gat rotary
"""
import argparse
import os
import re
import os.path as osp
import sys
from typing import List, Optional

import torch

from pyg_attn.compare import (DATASETS, FULL, QUICK, Protocol, compare,
                              environment, format_table, available_mechanisms,
                              plot,
                              write_csv, write_json)
from pyg_attn.compare.runner import worker_processes, worker_threads


def _compare_parser(subparsers) -> argparse.ArgumentParser:
    names = list(available_mechanisms())
    parser = subparsers.add_parser(
        'compare', help='train every mechanism and the PyG baselines on one '
        'dataset and print the comparison table',
        description=re.sub(r':obj:`([^`]*)`', r'\1', __doc__.split('\n\n')[1]))
    parser.add_argument('--dataset', choices=list(DATASETS), default='Cora')
    parser.add_argument('--root', default=None,
                        help='data root (default: $PYG_ATTN_DATA, else '
                        './data)')
    parser.add_argument('--mechanisms', nargs='+', choices=names,
                        default=None, metavar='NAME',
                        help=f"a subset, from: {' '.join(names)} "
                        '(default: all)')
    parser.add_argument('--full', action='store_true',
                        help=f'the published protocol: {FULL.seeds} seeds, '
                        f'{FULL.epochs} epochs, patience {FULL.patience} '
                        f'(default: quick, {QUICK.seeds} seeds, '
                        f'{QUICK.epochs} epochs, patience {QUICK.patience})')
    parser.add_argument('--seeds', type=int, default=None,
                        help='number of seeds, 0..seeds-1')
    parser.add_argument('--epochs', type=int, default=None,
                        help='maximum epochs per seed')
    parser.add_argument('--patience', type=int, default=None,
                        help='early-stopping patience in epochs')
    parser.add_argument('--out-dir', default=None,
                        help='default: results/compare_<dataset>/')
    parser.add_argument('--device', default=None,
                        help='default: cuda if available, else cpu')
    parser.add_argument('--jobs', type=int, default=None,
                        help='mechanisms trained at once, each in its own '
                        'process sharing the threads (default: the CPU '
                        'cores on cpu, 1 on cuda)')
    parser.add_argument('--no-progress', action='store_true',
                        help='hide the progress bar')
    return parser


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='pyg-attn', description='Graph attention layers for PyTorch '
        'Geometric: compare the mechanisms.')
    subparsers = parser.add_subparsers(dest='command', required=True)
    _compare_parser(subparsers)
    args = parser.parse_args(argv)
    base = FULL if args.full else QUICK
    args.protocol = Protocol(
        seeds=base.seeds if args.seeds is None else args.seeds,
        epochs=base.epochs if args.epochs is None else args.epochs,
        patience=base.patience if args.patience is None else args.patience)
    for name in ('seeds', 'epochs', 'patience'):
        if getattr(args.protocol, name) < 1:
            parser.error(f'--{name} must be at least 1')
    if args.out_dir is None:
        args.out_dir = osp.join('results', f'compare_{args.dataset}')
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    elif args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error(f'--device {args.device}: CUDA is not available here; '
                     'use --device cpu')
    if args.jobs is None:
        args.jobs = _cpu_cores() if args.device == 'cpu' else 1
    if args.jobs < 1:
        parser.error(f'--jobs ({args.jobs}) must be at least 1')
    return args


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_compare(args: argparse.Namespace) -> int:
    protocol = args.protocol
    versions = environment(args.device)  # the source as the run starts
    try:
        rows = compare(args.dataset, root=args.root, names=args.mechanisms,
                       protocol=protocol, device=args.device,
                       show_progress=not args.no_progress, jobs=args.jobs)
    except FileNotFoundError as error:
        print(f'error: {error}', file=sys.stderr)
        return 1

    seeds = f"{protocol.seeds} seed{'s' if protocol.seeds > 1 else ''}"
    jobs = worker_processes(args.jobs, len(rows))
    threads = worker_threads(jobs) if jobs > 1 else torch.get_num_threads()
    threads = f"{threads} thread{'s' if threads > 1 else ''}"
    if jobs > 1:
        threads = f'{jobs} processes of {threads}'
    title = (f'{args.dataset}: test accuracy over {seeds} '
             f'(max {protocol.epochs} epochs, patience {protocol.patience}), '
             f'on {args.device}' + (f' ({threads})'
                                   if args.device == 'cpu' else ''))
    print(format_table(rows, title))
    os.makedirs(args.out_dir, exist_ok=True)
    paths = {ext: osp.join(args.out_dir, f'compare.{ext}')
             for ext in ('csv', 'json', 'png')}
    write_csv(rows, paths['csv'])
    write_json(dict(dataset=args.dataset, protocol=vars(protocol),
                    jobs=jobs,
                    command=' '.join(['pyg-attn', 'compare', *args.argv]),
                    environment=versions, rows=rows),
               paths['json'])
    written = [paths['csv'], paths['json']]
    if plot(rows, paths['png'], title=f'{args.dataset} ({seeds}, max '
            f'{protocol.epochs} epochs)'):
        written.append(paths['png'])
    else:
        print('matplotlib is not installed (pip install "pyg_attn[bench]"): '
              'no bar chart', file=sys.stderr)
    print(f"wrote {', '.join(written)}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    r"""Runs the command line :obj:`argv` (default: :obj:`sys.argv[1:]`) and
    returns the exit code: 0, 1 when the data is missing, 2 for a usage
    error (from argparse)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    args.argv = argv[1:]
    return run_compare(args)


if __name__ == '__main__':
    sys.exit(main())
