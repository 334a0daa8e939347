r"""Forward+backward time and peak memory of LinearAttentionConv: its scaling
in the number of nodes, and against PyG's PerformerAttention on a batch.

``scaling``: one graph (``batch=None``) of N nodes, with the log-log slope of
time and of memory against N fitted by least squares (the issue asks for a
slope of at most 1.1).  ``performer``: a seeded batch of random graphs of 20
to 400 nodes, ours on ``(x, batch)`` and PyG's on ``to_dense_batch(x,
batch)``, with the ratios ours / PyG and the leak between graphs (max
|output of graph 0 in the batch - its output alone|).

Time: median of ``--repeats`` forward+backward passes after one warm-up pass
(in ``performer``, ours and PyG's interleaved in one process).  Memory: peak
resident memory above the baseline during one forward+backward pass, each
layer and size alone in a fresh child process, as in ``benchmarks.layers``.
Results of the suites run are merged into ``--out``.

    python -m benchmarks.linear_attention                    # both suites
    python -m benchmarks.linear_attention --suite scaling \
        --nodes 10000 100000 1000000
    python -m benchmarks.linear_attention --suite performer --graphs 64
    python -m benchmarks.linear_attention --nodes 1000 3000 --graphs 4 \
        --repeats 1 --no-memory                      # smoke run
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

import numpy as np
import torch
import torch_geometric
from torch_geometric.nn.attention import PerformerAttention
from torch_geometric.utils import to_dense_batch

from benchmarks.layers import _status_kib
from pyg_attn.nn.conv.linear_attention_conv import LinearAttentionConv

SCALING = dict(in_channels=32, out_channels=16, heads=2, num_features=64)
SLOPE_LIMIT = 1.1
# performer: ours and PyG's with the same heads H, per-head channels C (PyG's
# head_channels, our out_channels), input width IN = H * C (so both outputs
# are IN wide), the same kernel relu(W q) + 1e-3, no q/k/v biases (PyG's
# default qkv_bias=False, our bias=False), and the same number of random
# features per head, m = int(C ln C): PyG's PerformerProjection fixes m from
# head_channels, ours takes it as num_features.  What remains different:
# PyG's output Linear(H * C, IN) (attn_out; ours concatenates the heads and
# root_weight=False drops our skip), PyG's unscaled q, k (no cost), and PyG's
# to_dense_batch and mask gather, which its time and memory include since it
# needs them to map (x, batch) to node outputs.
HEADS, CHANNELS = 4, 32
IN_CHANNELS = HEADS * CHANNELS
NUM_FEATURES = int(CHANNELS * np.log(CHANNELS))
MIN_NODES, MAX_NODES = 20, 400
SUITES = ('scaling', 'performer')


def make_batch(num_graphs: int, seed: int):
    """``x``, sorted ``batch`` and the number of graphs, sizes uniform in
    [MIN_NODES, MAX_NODES]."""
    gen = torch.Generator().manual_seed(seed)
    sizes = torch.randint(MIN_NODES, MAX_NODES + 1, (num_graphs, ),
                          generator=gen)
    batch = torch.repeat_interleave(torch.arange(num_graphs), sizes)
    x = torch.randn(batch.numel(), IN_CHANNELS, generator=gen)
    return x, batch, num_graphs


def build(which: str):
    torch.manual_seed(0)
    if which == 'scaling':
        return LinearAttentionConv(**SCALING)
    if which == 'pyg':
        return PerformerAttention(IN_CHANNELS, heads=HEADS,
                                  head_channels=CHANNELS,
                                  kernel=torch.nn.ReLU())
    return LinearAttentionConv(IN_CHANNELS, CHANNELS, heads=HEADS,
                               num_features=NUM_FEATURES, kernel='relu',
                               bias=False, root_weight=False)


def ours_forward(conv, x, batch, num_graphs):
    return conv(x, batch, num_graphs=num_graphs)


def pyg_forward(attn, x, batch, num_graphs):
    """PyG's Performer on the padded dense batch, read back per node."""
    if batch is None:
        return attn(x.unsqueeze(0))[0]
    dense, mask = to_dense_batch(x, batch, batch_size=num_graphs)
    return attn(dense, mask)[mask]


def make_case(which: str, size: int, seed: int):
    """``(module, forward, (x, batch, num_graphs))``; ``which`` is
    ``'scaling'`` (``size`` nodes), ``'ours'`` or ``'pyg'`` (``size``
    graphs)."""
    if which == 'scaling':
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(size, SCALING['in_channels'], generator=gen)
        return build(which), ours_forward, (x, None, None)
    fwd = pyg_forward if which == 'pyg' else ours_forward
    return build(which), fwd, make_batch(size, seed)


def step(module, forward, data) -> None:
    x, batch, num_graphs = data
    x = x.clone().requires_grad_()
    forward(module, x, batch, num_graphs).sum().backward()
    module.zero_grad(set_to_none=True)


def time_cases(cases, repeats: int):
    """Median forward+backward seconds of each case, interleaved."""
    for case in cases:
        step(*case)
    times = [[] for _ in cases]
    for _ in range(repeats):
        for t, case in zip(times, cases):
            start = time.perf_counter()
            step(*case)
            t.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def memory_probe(which: str, size: int, seed: int) -> int:
    """Peak resident bytes above baseline during one forward+backward (run
    in a child process)."""
    case = make_case(which, size, seed)
    step(*case)  # one-off allocations
    Path('/proc/self/clear_refs').write_text('5')  # reset the peak (VmHWM)
    base = _status_kib('VmRSS')
    step(*case)
    # the kernel's RSS counters lag by up to a few hundred KiB per thread,
    # so with nothing allocated the difference can come out slightly negative
    return max(_status_kib('VmHWM') - base, 0) * 1024


def measure_memory(which: str, size: int, seed: int) -> int:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536',
               MALLOC_TRIM_THRESHOLD_='65536')
    cmd = [sys.executable, '-m', 'benchmarks.linear_attention', '--probe',
           which, str(size), str(seed)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parents[1])
    return int(out.stdout.strip().splitlines()[-1])


def loglog_slope(xs, ys):
    """Least-squares slope of log10(ys) against log10(xs); None with fewer
    than two points or a non-positive value."""
    if len(xs) < 2 or min(ys) <= 0:
        return None
    return float(np.polyfit(np.log10(xs), np.log10(ys), 1)[0])


@torch.no_grad()
def leak(module, forward, data) -> float:
    """max |output of graph 0 in the batch - its output alone|."""
    x, batch, num_graphs = data
    n0 = int((batch == 0).sum())
    in_batch = forward(module, x, batch, num_graphs)[:n0]
    alone = forward(module, x[:n0], None, None)
    return float((in_batch - alone).abs().max())


def run_scaling(args) -> dict:
    print(f'scaling: LinearAttentionConv({SCALING}), batch=None')
    print(f'{"nodes":>10} {"ms":>10} {"MiB":>9}')
    rows = []
    for n in args.nodes:
        t, = time_cases([make_case('scaling', n, args.seed)], args.repeats)
        mem = None if args.no_memory else measure_memory('scaling', n,
                                                         args.seed)
        rows.append(dict(num_nodes=n, time_s=t, mem_bytes=mem))
        mib = '-' if mem is None else f'{mem / 2**20:.1f}'
        print(f'{n:>10} {t * 1e3:10.2f} {mib:>9}', flush=True)
    nodes = [r['num_nodes'] for r in rows]
    time_slope = loglog_slope(nodes, [r['time_s'] for r in rows])
    mem_slope = None if args.no_memory else loglog_slope(
        nodes, [r['mem_bytes'] for r in rows])
    print(f'log-log slope: time {_fmt(time_slope)}, memory '
          f'{_fmt(mem_slope)} (limit {SLOPE_LIMIT})')
    return dict(layer=SCALING, rows=rows, time_slope=time_slope,
                mem_slope=mem_slope, slope_limit=SLOPE_LIMIT)


def run_performer(args) -> dict:
    cases = [make_case(w, args.graphs, args.seed) for w in ('ours', 'pyg')]
    assert cases[0][0].num_features == cases[1][0].fast_attn.num_rows
    x, batch, num_graphs = cases[0][2]
    t_ours, t_pyg = time_cases(cases, args.repeats)
    m_ours, m_pyg = (None, None) if args.no_memory else (
        measure_memory(w, args.graphs, args.seed) for w in ('ours', 'pyg'))
    leak_ours, leak_pyg = (leak(*case) for case in cases)
    max_nodes = int(torch.bincount(batch).max())
    row = dict(num_graphs=num_graphs, num_nodes=x.size(0),
               padded_positions=num_graphs * max_nodes, heads=HEADS,
               channels=CHANNELS, in_channels=IN_CHANNELS,
               num_features=NUM_FEATURES, time_ours_s=t_ours,
               time_pyg_s=t_pyg, time_ratio=t_ours / t_pyg,
               mem_ours_bytes=m_ours, mem_pyg_bytes=m_pyg,
               mem_ratio=None if m_ours is None else m_ours / m_pyg,
               leak_ours=leak_ours, leak_pyg=leak_pyg)
    print_performer(row)
    return dict(rows=[row])


def print_performer(row: dict) -> None:
    mib = [None if row[k] is None else row[k] / 2**20
           for k in ('mem_ours_bytes', 'mem_pyg_bytes')]
    print(f'performer: {row["num_graphs"]} graphs, {row["num_nodes"]} nodes '
          f'({row["padded_positions"]} padded), H={HEADS}, C={CHANNELS}, '
          f'm={NUM_FEATURES}, relu kernel')
    print(f'{"":<6} {"ours":>10} {"PyG":>10} {"ours/PyG":>9}')
    print(f'{"ms":<6} {row["time_ours_s"] * 1e3:10.2f} '
          f'{row["time_pyg_s"] * 1e3:10.2f} {row["time_ratio"]:9.3f}')
    print(f'{"MiB":<6} {_fmt(mib[0], ".1f"):>10} {_fmt(mib[1], ".1f"):>10} '
          f'{_fmt(row["mem_ratio"], ".3f"):>9}')
    print(f'{"leak":<6} {row["leak_ours"]:10.2e} {row["leak_pyg"]:10.2e}',
          flush=True)


def _fmt(value, spec='.3f') -> str:
    return '-' if value is None else format(value, spec)


def cpu_name() -> str:
    for line in Path('/proc/cpuinfo').read_text().splitlines():
        if line.startswith('model name'):
            return line.split(':', 1)[1].strip()
    return platform.processor() or platform.machine()


def meta(args) -> dict:
    return dict(torch=torch.__version__,
                torch_geometric=torch_geometric.__version__, cpu=cpu_name(),
                threads=torch.get_num_threads(), dtype='float32',
                repeats=args.repeats, seed=args.seed,
                memory=not args.no_memory)


def write(out: Path, results: dict) -> None:
    """Merges ``results`` (one entry per suite run) into ``out``."""
    old = json.loads(out.read_text()) if out.is_file() else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**old, **results}, indent=2))
    print(f'wrote {out}')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--suite', choices=SUITES + ('all', ), default='all')
    parser.add_argument('--nodes', nargs='+', type=int,
                        default=[10_000, 100_000, 1_000_000])
    parser.add_argument('--graphs', type=int, default=64)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the peak-memory child processes')
    parser.add_argument('--out', type=Path, default=Path(
        'benchmarks/results/linear_attention.json'))
    parser.add_argument('--probe', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        which, size, seed = args.probe
        print(memory_probe(which, int(size), int(seed)))
        return
    suites = SUITES if args.suite == 'all' else (args.suite, )
    runners = dict(scaling=run_scaling, performer=run_performer)
    results = {s: dict(meta=meta(args), **runners[s](args)) for s in suites}
    write(args.out, results)
    return results


if __name__ == '__main__':
    main()
