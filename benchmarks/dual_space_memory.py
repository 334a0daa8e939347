"""Peak memory of DualSpaceAttentionConv against the number of nodes N and
latent neighbours k: it should grow as O(N k) (plus the graph edges), never
as the N x N similarity matrix.

Two measurements per (N, k), each in a fresh child process: the latent
neighbour search alone (``latent_knn``) and one training forward+backward of
the layer (search included, ``refresh_interval=1``).  Peak resident memory
above the baseline, as in ``benchmarks/layers.py``: ``/proc/self/clear_refs``
resets the peak, ``MALLOC_MMAP_THRESHOLD_`` makes freed tensors leave the
resident set at once.  The child first runs one step on a 1,000-node graph
(lazy initialisation, thread pools), then measures.  The graph is random with
``--degree`` N edges.

    python -m benchmarks.dual_space_memory     # N 25k, 50k, 100k; k 4, 16, 64
    python -m benchmarks.dual_space_memory --nodes 100000 --k 16 \
        --backend torch
    python -m benchmarks.dual_space_memory --nodes 2000 --k 4 --out x.json
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch_geometric

from pyg_attn.functional import latent_knn
from pyg_attn.nn import DualSpaceAttentionConv

WARMUP_NODES = 1000


def make_graph(num_nodes: int, num_features: int, degree: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, num_features, generator=gen)
    edge_index = torch.randint(0, num_nodes, (2, degree * num_nodes),
                               generator=gen)
    return x, edge_index


def _status_kib(field: str) -> int:
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def _peak_above_baseline(fn) -> int:
    Path('/proc/self/clear_refs').write_text('5')  # reset the peak (VmHWM)
    base = _status_kib('VmRSS')
    fn()
    # the kernel's RSS counters lag by up to a few hundred KiB per thread,
    # so with nothing allocated the difference can come out slightly negative
    return max(_status_kib('VmHWM') - base, 0) * 1024


def probe(what: str, num_nodes: int, k: int, args) -> dict:
    """Peak bytes above baseline (run in a child process)."""
    threshold = {'auto': 50_000, 'torch': 1 << 62, 'faiss': 1}[args.backend]
    conv = DualSpaceAttentionConv(args.features, args.channels,
                                  heads=args.heads, k=k,
                                  knn_threshold=threshold).train()

    def search(x, edge_index):
        latent_knn(x, k, threshold=threshold)

    def step(x, edge_index):
        x = x.clone().requires_grad_()
        conv(x, edge_index).sum().backward()
        conv.zero_grad(set_to_none=True)

    fn = search if what == 'search' else step
    fn(*make_graph(WARMUP_NODES, args.features, args.degree, seed=1))
    graph = make_graph(num_nodes, args.features, args.degree)
    start = time.perf_counter()
    peak = _peak_above_baseline(lambda: fn(*graph))
    return dict(peak_bytes=peak, seconds=time.perf_counter() - start)


def measure(what: str, num_nodes: int, k: int, args) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536',
               MALLOC_TRIM_THRESHOLD_='65536')
    cmd = [sys.executable, '-m', 'benchmarks.dual_space_memory', '--probe',
           what, str(num_nodes), str(k), '--features', str(args.features),
           '--heads', str(args.heads), '--channels', str(args.channels),
           '--degree', str(args.degree), '--backend', args.backend]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--nodes', nargs='+', type=int,
                        default=[25_000, 50_000, 100_000])
    parser.add_argument('--k', nargs='+', type=int, default=[4, 16, 64])
    parser.add_argument('--features', type=int, default=64)
    parser.add_argument('--heads', type=int, default=4)
    parser.add_argument('--channels', type=int, default=16)
    parser.add_argument('--degree', type=int, default=10,
                        help='graph edges per node (default: 10)')
    parser.add_argument('--backend', choices=['auto', 'torch', 'faiss'],
                        default='auto', help="latent search: 'auto' (torch "
                        "up to 50,000 nodes, faiss above), or one for all")
    parser.add_argument('--out',
                        default='benchmarks/results/dual_space_memory.json')
    parser.add_argument('--probe', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        what, num_nodes, k = args.probe
        print(json.dumps(probe(what, int(num_nodes), int(k), args)))
        return

    print(f'{"N":>8} {"k":>4} {"search MiB":>11} {"layer MiB":>10} '
          f'{"layer B/(N k)":>14} {"N x N MiB":>10} {"layer s":>8}')
    rows = []
    for num_nodes in args.nodes:
        for k in args.k:
            search = measure('search', num_nodes, k, args)
            layer = measure('layer', num_nodes, k, args)
            row = dict(num_nodes=num_nodes, k=k,
                       num_edges=args.degree * num_nodes,
                       search_peak_bytes=search['peak_bytes'],
                       search_seconds=search['seconds'],
                       layer_peak_bytes=layer['peak_bytes'],
                       layer_seconds=layer['seconds'],
                       dense_similarity_bytes=4 * num_nodes**2)
            rows.append(row)
            print(f'{num_nodes:>8} {k:>4} '
                  f'{search["peak_bytes"] / 2**20:11.1f} '
                  f'{layer["peak_bytes"] / 2**20:10.1f} '
                  f'{layer["peak_bytes"] / (num_nodes * k):14.1f} '
                  f'{row["dense_similarity_bytes"] / 2**20:10.0f} '
                  f'{layer["seconds"]:8.1f}', flush=True)
    meta = dict(torch=torch.__version__,
                torch_geometric=torch_geometric.__version__,
                cpu=platform.processor() or platform.machine(),
                threads=torch.get_num_threads(), dtype='float32',
                features=args.features, heads=args.heads,
                channels=args.channels, degree=args.degree,
                backend=args.backend, warmup_nodes=WARMUP_NODES)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(meta=meta, rows=rows),
                                         indent=2))
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
