r"""Time of the HNSWGraph transform against faiss's own index build, and the
edges it emits per layer.

On ``--nodes`` random Gaussian vectors of ``--dim`` features (seeded):

* ``faiss_build_s``: faiss's ``IndexHNSWFlat.add`` alone, as the transform
  configures it (same ``m``, ``ef_construction``, seed and threads);
* ``transform_s``: the whole ``HNSWGraph`` call (build, extraction of the
  links, distances), and ``overhead`` = (transform - build) / build;
* the parts of the overhead, timed on one built index: ``extract_s`` (the
  vectorised read of faiss's neighbour arrays), ``distance_s`` (the
  ``edge_attr`` distances) and ``hub_s`` (the greedy descent of
  ``hub_edges``);
* ``transform_hub_s`` (unless ``--no-hub``): the call with ``hub_edges``;
* edges per layer, without and with hub edges, and nodes per level.

Each time is the median of ``--repeats`` runs.  One faiss thread by default,
as the transform's default.

    python -m benchmarks.hnsw_transform                  # 100,000 x 128
    python -m benchmarks.hnsw_transform --nodes 5000 --out /tmp/h.json
"""
import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch_geometric
from torch_geometric.data import Data

from pyg_attn.transforms import HNSWGraph
from pyg_attn.transforms.hnsw_graph import (build_hnsw_index,
                                            faiss_edge_distance, hub_edges,
                                            hnsw_edges, import_faiss)


def timed(fn, repeats: int):
    """(median seconds, last result) of ``repeats`` calls."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def per_layer(edge_type: torch.Tensor):
    return torch.bincount(edge_type).tolist()


def cpu_name() -> str:
    path = Path('/proc/cpuinfo')
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    return platform.processor() or platform.machine()


def run(args) -> dict:
    faiss = import_faiss()
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.nodes, args.dim, generator=gen)
    kwargs = dict(m=args.m, ef_construction=args.ef_construction,
                  num_threads=args.threads, seed=args.seed)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(args.threads)
    try:
        build_s, index = timed(
            lambda: build_hnsw_index(x, args.m, args.ef_construction, 'l2',
                                     args.seed), args.repeats)
        extract_s, (edge_index, _, _) = timed(lambda: hnsw_edges(index),
                                              args.repeats)
        distance_s, _ = timed(
            lambda: faiss_edge_distance(x, edge_index, 'l2'), args.repeats)
        hub_s = None if args.no_hub else timed(
            lambda: hub_edges(index, x, 'l2'), args.repeats)[0]
    finally:
        faiss.omp_set_num_threads(threads)
    transform_s, data = timed(lambda: HNSWGraph(**kwargs)(Data(x=x)),
                              args.repeats)
    row = dict(num_nodes=args.nodes, dim=args.dim, m=args.m,
               ef_construction=args.ef_construction, faiss_build_s=build_s,
               transform_s=transform_s,
               overhead=(transform_s - build_s) / build_s,
               extract_s=extract_s, distance_s=distance_s, hub_s=hub_s,
               num_edges=data.edge_index.size(1),
               edges_per_layer=per_layer(data.edge_type),
               nodes_per_level=per_layer(data.node_level))
    if not args.no_hub:
        row['transform_hub_s'], hub = timed(
            lambda: HNSWGraph(hub_edges=True, **kwargs)(Data(x=x)),
            args.repeats)
        row['edges_per_layer_hub'] = per_layer(hub.edge_type)
    return row


def show(row: dict) -> None:
    print(f'HNSWGraph on {row["num_nodes"]} x {row["dim"]} random vectors, '
          f'm={row["m"]}, ef_construction={row["ef_construction"]}')
    print(f'{"":<22} {"s":>9} {"/ build":>9}')
    for name, key in [('faiss build alone', 'faiss_build_s'),
                      ('HNSWGraph', 'transform_s'),
                      ('  extraction', 'extract_s'),
                      ('  distances', 'distance_s'),
                      ('  hub descent', 'hub_s'),
                      ('HNSWGraph(hub_edges)', 'transform_hub_s')]:
        if row.get(key) is not None:
            print(f'{name:<22} {row[key]:9.3f} '
                  f'{row[key] / row["faiss_build_s"]:9.3f}')
    print(f'{"layer":>6} {"nodes":>9} {"edges":>10} {"edges+hub":>10}')
    hub = row.get('edges_per_layer_hub')
    for layer, edges in enumerate(row['edges_per_layer']):
        with_hub = '-' if hub is None else hub[layer]
        print(f'{layer:>6} {row["nodes_per_level"][layer]:>9} {edges:>10} '
              f'{with_hub:>10}', flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--nodes', type=int, default=100_000)
    parser.add_argument('--dim', type=int, default=128)
    parser.add_argument('--m', type=int, default=16)
    parser.add_argument('--ef-construction', type=int, default=40)
    parser.add_argument('--threads', type=int, default=1,
                        help='faiss threads (torch keeps its own setting)')
    parser.add_argument('--repeats', type=int, default=1)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no-hub', action='store_true',
                        help='skip the hub_edges timings')
    parser.add_argument('--out', type=Path,
                        default=Path('benchmarks/results/hnsw_transform.json'))
    args = parser.parse_args(argv)
    row = run(args)
    show(row)
    faiss = import_faiss()
    result = dict(meta=dict(torch=torch.__version__,
                            torch_geometric=torch_geometric.__version__,
                            faiss=faiss.__version__, cpu=cpu_name(),
                            faiss_threads=args.threads,
                            torch_threads=torch.get_num_threads(),
                            repeats=args.repeats, seed=args.seed),
                  **row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f'wrote {args.out}')
    return result


if __name__ == '__main__':
    main()
