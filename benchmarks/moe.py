r"""Forward+backward time of MoEAttentionConv with sparse dispatch against the
same layer running every expert on every node (``dense=True``, GMoE's way).

One random graph (``--nodes`` nodes, ``--edges`` edges drawn uniformly, a
seeded multigraph), ``--experts`` DotProductAttentionConv experts
(``--heads`` heads of ``--channels`` channels each, concatenated;
``--features`` input channels), ``top_k`` experts per node.  Both modes are
the same module (the same weights) with ``conv.dense`` switched; the layer is
in training mode (noisy gating) and the loss is ``out.sum() + aux_loss``.
Time: median of ``--repeats`` forward+backward passes after one warm-up
pass each, the two modes interleaved.  The issue's target: sparse / dense
<= 0.4 with 4 experts, ``top_k=1``, 1M edges.

    python -m benchmarks.moe                                   # 50k nodes, 1M edges
    python -m benchmarks.moe --nodes 500 --edges 5000 --repeats 1   # smoke run
"""
import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch_geometric

from pyg_attn.nn import DotProductAttentionConv, MoEAttentionConv

TARGET_RATIO = 0.4


def make_graph(num_nodes: int, num_edges: int, num_features: int,
               seed: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, num_features, generator=gen)
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=gen)
    return x, edge_index


def build(args) -> MoEAttentionConv:
    torch.manual_seed(args.seed)
    experts = [DotProductAttentionConv(args.features, args.channels,
                                       heads=args.heads)
               for _ in range(args.experts)]
    return MoEAttentionConv(experts, args.features, top_k=args.top_k).train()


def step(conv: MoEAttentionConv, x, edge_index) -> torch.Tensor:
    x = x.clone().requires_grad_()
    out, aux_loss, counts = conv(x, edge_index, return_aux=True)
    (out.sum() + aux_loss).backward()
    conv.zero_grad(set_to_none=True)
    return counts


def time_modes(conv: MoEAttentionConv, x, edge_index, repeats: int):
    """Median forward+backward seconds of sparse and dense dispatch,
    interleaved, and the routing counts of the last sparse pass."""
    modes = (False, True)
    for dense in modes:
        conv.dense = dense
        step(conv, x, edge_index)
    times = {dense: [] for dense in modes}
    counts = None
    for _ in range(repeats):
        for dense in modes:
            conv.dense = dense
            start = time.perf_counter()
            c = step(conv, x, edge_index)
            times[dense].append(time.perf_counter() - start)
            if not dense:
                counts = c
    conv.dense = False
    return statistics.median(times[False]), statistics.median(
        times[True]), counts


def cpu_name() -> str:
    cpuinfo = Path('/proc/cpuinfo')
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    return platform.processor() or platform.machine()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--nodes', type=int, default=50_000)
    parser.add_argument('--edges', type=int, default=1_000_000)
    parser.add_argument('--features', type=int, default=64)
    parser.add_argument('--experts', type=int, default=4)
    parser.add_argument('--top-k', type=int, default=1)
    parser.add_argument('--heads', type=int, default=4)
    parser.add_argument('--channels', type=int, default=16)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', type=Path,
                        default=Path('benchmarks/results/moe.json'))
    args = parser.parse_args(argv)

    x, edge_index = make_graph(args.nodes, args.edges, args.features,
                               args.seed)
    conv = build(args)
    t_sparse, t_dense, counts = time_modes(conv, x, edge_index, args.repeats)
    ratio = t_sparse / t_dense
    print(f'MoEAttentionConv: {args.experts} x DotProductAttentionConv('
          f'{args.features}, {args.channels}, heads={args.heads}), '
          f'top_k={args.top_k}; {args.nodes} nodes, {args.edges} edges')
    print(f'routed nodes per expert (last sparse pass): {counts.tolist()}')
    print(f'{"sparse dispatch":<18} {t_sparse * 1e3:10.1f} ms')
    print(f'{"every expert":<18} {t_dense * 1e3:10.1f} ms')
    verdict = 'meets' if ratio <= TARGET_RATIO else 'misses'
    print(f'ratio sparse / every expert: {ratio:.3f} ({verdict} the target '
          f'<= {TARGET_RATIO})', flush=True)

    results = dict(
        meta=dict(torch=torch.__version__,
                  torch_geometric=torch_geometric.__version__,
                  cpu=cpu_name(), threads=torch.get_num_threads(),
                  dtype='float32', repeats=args.repeats, seed=args.seed,
                  mode='train (noisy gating), forward + backward of '
                  'out.sum() + aux_loss'),
        num_nodes=args.nodes, num_edges=args.edges,
        in_channels=args.features, num_experts=args.experts,
        top_k=args.top_k, heads=args.heads, channels=args.channels,
        expert='DotProductAttentionConv', routed_counts=counts.tolist(),
        time_sparse_s=t_sparse, time_dense_s=t_dense, time_ratio=ratio,
        target_ratio=TARGET_RATIO, meets_target=ratio <= TARGET_RATIO)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f'wrote {args.out}')
    return results


if __name__ == '__main__':
    main()
