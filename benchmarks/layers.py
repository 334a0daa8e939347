"""Forward+backward time and peak memory of our layers against their PyG
peers, as ratios (ours / PyG).

Time: median of ``--repeats`` forward+backward passes, ours and the peer
interleaved in one process, after one warm-up pass each.  Memory: peak
resident memory above the baseline during one forward+backward pass, each
layer measured alone in a fresh child process (``/proc/self/clear_refs``
resets the peak; ``MALLOC_MMAP_THRESHOLD_`` makes freed tensors leave the
resident set at once, so the peak is the live-tensor peak).

    python -m benchmarks.layers                     # Cora and 50k/1M synthetic
    python -m benchmarks.layers --graphs cora --repeats 3
    python -m benchmarks.layers --graphs large --pairs flash dot_product
    python -m benchmarks.layers --sweep-edges 500000 1000000 2000000 4000000
    python -m benchmarks.layers --pairs edge_gat --profile 8   # where it goes
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch_geometric
from torch_geometric.nn import GATConv, TransformerConv

from pyg_attn.nn import (DotProductAttentionConv, DualSpaceAttentionConv,
                         EdgeGATConv, FlashAttentionConv,
                         LocalGlobalAttentionConv, PoincareAttentionConv,
                         RotaryAttentionConv)

HEADS, CHANNELS, EDGE_DIM = 8, 32, 16
PAIRS = {  # name: (ours, PyG peer); both built with the same arguments
    'dot_product': (DotProductAttentionConv, TransformerConv),
    'edge_gat': (EdgeGATConv, GATConv),
    'flash': (FlashAttentionConv, TransformerConv),
    'local_global': (LocalGlobalAttentionConv, TransformerConv),
    'local_global_dot': (LocalGlobalAttentionConv, DotProductAttentionConv),
    'rotary': (RotaryAttentionConv, TransformerConv),
    'rotary_dot': (RotaryAttentionConv, DotProductAttentionConv),
    # no same-weight peer for these: the ratio is the price of the mechanism
    'poincare': (PoincareAttentionConv, TransformerConv),
    'poincare_dot': (PoincareAttentionConv, DotProductAttentionConv),
    'dual_space': (DualSpaceAttentionConv, TransformerConv),
}


def edge_inputs(layer, edge_index) -> dict:
    """Seeded per-edge inputs a layer takes besides ``edge_attr``:
    ``edge_type`` in {0, 1} for LocalGlobalAttentionConv (half the edges
    global, two partitions), ``edge_pos`` a hop count in {1, 2, 3} for
    RotaryAttentionConv."""
    gen = torch.Generator().manual_seed(1)
    num_edges = edge_index.size(1)
    if layer is LocalGlobalAttentionConv:
        return dict(edge_type=torch.randint(0, 2, (num_edges, ),
                                            generator=gen))
    if layer is RotaryAttentionConv:
        return dict(edge_pos=torch.randint(1, 4, (num_edges, ),
                                           generator=gen).float())
    return {}


SYNTHETIC = {'synthetic': (50_000, 1_000_000), 'large': (100_000, 2_000_000)}
HETEROPHILOUS = ('minesweeper', 'tolokers')  # 8 and 88 edges per node
GRAPHS = ('cora', ) + HETEROPHILOUS + tuple(SYNTHETIC)


def make_graph(name: str, root=None):
    """``x``, ``edge_index``, ``edge_attr`` (random, ``EDGE_DIM`` wide)."""
    gen = torch.Generator().manual_seed(0)
    if name == 'cora':
        from pyg_attn.datasets import load_planetoid
        data = load_planetoid('Cora', root)[0]
        x, edge_index = data.x, data.edge_index
    elif name in HETEROPHILOUS:
        from pyg_attn.datasets import load_heterophilous
        data = load_heterophilous(name, root)[0]
        x, edge_index = data.x, data.edge_index
    elif name in SYNTHETIC or name.startswith('random-'):
        # 'random-N-E': N nodes, E uniformly random edges
        num_nodes, num_edges = SYNTHETIC.get(name) or map(
            int, name.split('-')[1:])
        x = torch.randn(num_nodes, 128, generator=gen)
        edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    else:
        raise ValueError(f'unknown graph {name!r}; choose from {GRAPHS}')
    edge_attr = torch.randn(edge_index.size(1), EDGE_DIM, generator=gen)
    return x, edge_index, edge_attr


def make_layer(pair: str, which: int, in_channels: int):
    torch.manual_seed(0)
    return PAIRS[pair][which](in_channels, CHANNELS, heads=HEADS,
                              edge_dim=EDGE_DIM)


def step(conv, x, edge_index, edge_attr, extra=None) -> None:
    x = x.clone().requires_grad_()
    conv(x, edge_index, edge_attr=edge_attr, **(extra or {})).sum().backward()
    conv.zero_grad(set_to_none=True)


def time_pair(pair: str, graph, repeats: int):
    x, edge_index, edge_attr = graph
    ours, peer = (make_layer(pair, i, x.size(1)) for i in (0, 1))
    if ours.state_dict().keys() == peer.state_dict().keys():
        ours.load_state_dict(peer.state_dict())
    extras = [edge_inputs(PAIRS[pair][i], edge_index) for i in (0, 1)]
    times = ([], [])
    for i, conv in enumerate((ours, peer)):
        step(conv, *graph, extras[i])
    for _ in range(repeats):
        for i, conv in enumerate((ours, peer)):
            start = time.perf_counter()
            step(conv, *graph, extras[i])
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def profile_pair(pair: str, graph, top: int) -> list:
    """Where the time of one forward+backward pass goes, ours then the
    peer: ``torch.profiler``'s table of the ``top`` operators by self CPU
    time, after one warm-up pass each."""
    x, edge_index, _ = graph
    tables = []
    for which in (0, 1):
        conv = make_layer(pair, which, x.size(1))
        extra = edge_inputs(PAIRS[pair][which], edge_index)
        step(conv, *graph, extra)
        with torch.profiler.profile() as prof:
            step(conv, *graph, extra)
        tables.append(prof.key_averages().table(
            sort_by='self_cpu_time_total', row_limit=top))
    return tables


def _status_kib(field: str) -> int:
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def memory_probe(pair: str, which: int, graph_name: str, root) -> int:
    """Peak resident bytes above baseline during one forward+backward (run
    in a child process)."""
    graph = make_graph(graph_name, root)
    conv = make_layer(pair, which, graph[0].size(1))
    extra = edge_inputs(PAIRS[pair][which], graph[1])
    step(conv, *graph, extra)  # lazy initialisation, one-off allocations
    Path('/proc/self/clear_refs').write_text('5')  # reset the peak (VmHWM)
    base = _status_kib('VmRSS')
    step(conv, *graph, extra)
    # the kernel's RSS counters lag by up to a few hundred KiB per thread,
    # so with nothing allocated the difference can come out slightly negative
    return max(_status_kib('VmHWM') - base, 0) * 1024


def measure_memory(pair: str, which: int, graph_name: str, root) -> int:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536',
               MALLOC_TRIM_THRESHOLD_='65536')
    cmd = [sys.executable, '-m', 'benchmarks.layers', '--probe', pair,
           str(which), graph_name] + (['--root', root] if root else [])
    out = subprocess.run(cmd, env=env, check=True, capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parents[1])
    return int(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--graphs', nargs='+', default=['cora', 'synthetic'],
                        choices=GRAPHS)
    parser.add_argument('--sweep-edges', nargs='+', type=int, default=None,
                        help='peak memory only, at 100,000 nodes and each of '
                        'these edge counts')
    parser.add_argument('--pairs', nargs='+', default=list(PAIRS),
                        choices=list(PAIRS))
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--root', default=None, help='dataset root')
    parser.add_argument('--out', default='benchmarks/results/layers.json')
    parser.add_argument('--profile', type=int, metavar='N', default=None,
                        help='instead of measuring, print the N operators '
                        'that take most of each layer\'s time')
    parser.add_argument('--probe', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.profile is not None and args.profile < 1:
        parser.error(f'--profile ({args.profile}) must be at least 1: the '
                     'number of operators to list per layer')
    if args.probe:
        pair, which, graph_name = args.probe
        print(memory_probe(pair, int(which), graph_name, args.root))
        return

    if args.sweep_edges:
        return sweep_edges(args)
    if args.profile is not None:
        for graph_name in args.graphs:
            graph = make_graph(graph_name, args.root)
            for pair in args.pairs:
                for cls, table in zip(PAIRS[pair],
                                      profile_pair(pair, graph, args.profile)):
                    print(f'{graph_name}: {cls.__name__}\n{table}')
        return
    rows = []
    print(f'{"graph":<10} {"layer":<26} {"peer":<24} {"ours ms":>9} '
          f'{"peer ms":>9} {"time":>6} {"ours MiB":>9} {"peer MiB":>9} '
          f'{"mem":>6}')
    for graph_name in args.graphs:
        graph = make_graph(graph_name, args.root)
        for pair in args.pairs:
            t_ours, t_peer = time_pair(pair, graph, args.repeats)
            m_ours, m_peer = (measure_memory(pair, i, graph_name, args.root)
                              for i in (0, 1))
            row = dict(graph=graph_name, layer=PAIRS[pair][0].__name__,
                       peer=PAIRS[pair][1].__name__,
                       num_nodes=graph[0].size(0),
                       num_edges=graph[1].size(1), time_ours_s=t_ours,
                       time_peer_s=t_peer, time_ratio=t_ours / t_peer,
                       mem_ours_bytes=m_ours, mem_peer_bytes=m_peer,
                       mem_ratio=m_ours / m_peer)
            rows.append(row)
            print(f'{graph_name:<10} {row["layer"]:<26} {row["peer"]:<24} '
                  f'{t_ours * 1e3:9.1f} {t_peer * 1e3:9.1f} {row["time_ratio"]:6.2f} '
                  f'{m_ours / 2**20:9.1f} {m_peer / 2**20:9.1f} '
                  f'{row["mem_ratio"]:6.2f}', flush=True)
    meta = dict(torch=torch.__version__, torch_geometric=torch_geometric
                .__version__, cpu=platform.processor() or platform.machine(),
                threads=torch.get_num_threads(), dtype='float32',
                heads=HEADS, channels=CHANNELS, edge_dim=EDGE_DIM,
                repeats=args.repeats)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(meta=meta, rows=rows),
                                         indent=2))
    print(f'wrote {args.out}')


def sweep_edges(args):
    """Peak memory of each layer against E at N = 100,000: the attention
    part of the flash layer should stay flat."""
    names = [PAIRS[p][0].__name__ for p in args.pairs] + sorted(
        {PAIRS[p][1].__name__ for p in args.pairs})
    print('edges      ' + ' '.join(f'{n:>24}' for n in names) + '   (MiB)')
    rows = []
    for num_edges in args.sweep_edges:
        graph_name = f'random-100000-{num_edges}'
        mems = [measure_memory(p, 0, graph_name, args.root)
                for p in args.pairs]
        peers = {PAIRS[p][1].__name__: p for p in args.pairs}
        mems += [measure_memory(peers[n], 1, graph_name, args.root)
                 for n in names[len(args.pairs):]]
        rows.append(dict(num_edges=num_edges, **dict(zip(names, mems))))
        print(f'{num_edges:<10} ' + ' '.join(f'{m / 2**20:24.1f}'
                                             for m in mems), flush=True)
    out = Path(args.out).with_name('layers_memory_vs_edges.json')
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
