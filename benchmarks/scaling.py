r"""Forward+backward time and peak memory against the number of nodes N (at a
fixed average degree) and against the average degree (at a fixed N), for the
exact layer, the flash layer, linear attention and dense softmax attention.

Layers (``in_channels=32``, 2 heads of 16 channels, float32, no edge
features; linear attention with ``benchmarks.linear_attention.SCALING``):

- ``exact``: :class:`~pyg_attn.nn.DotProductAttentionConv`, O(E) time and
  memory (its fused kernels keep no ``[E, H, C]`` tensor, but it holds
  ``[E, H]`` logits and weights for backward).
- ``flash``: :class:`~pyg_attn.nn.FlashAttentionConv`, the same function in
  edge chunks: O(E) time, memory O(N) plus one chunk.
- ``linear``: :class:`~pyg_attn.nn.LinearAttentionConv` over all N nodes
  (``batch=None``), O(N) and blind to edges.
- ``dense``: PyTorch's ``nn.MultiheadAttention`` (the global attention in
  PyG's ``GPSConv``) over all N nodes with ``need_weights=True``, which
  materialises the ``[H, N, N]`` softmax: the O(N^2) reference that linear
  attention replaces, run only up to ``dense_max_nodes``.

Graphs: ``x`` ``[N, 32]`` and ``N * degree`` uniformly random directed edges
(a seeded multigraph).  Each case: one warm-up pass, then ``repeats`` timed
passes (median), in child processes (one per layer; ``one_child=True``
puts them all in one), smallest first.  Peak memory is the resident-set
peak above the baseline during one pass, measured in a second child with
the allocator returning freed blocks at once (as ``benchmarks.layers``), so
each case's peak is its live-tensor peak; the times come from the default
allocator, which that setting slows (see :func:`run_children`).  A case that
fails (out of memory) ends its layer's sweep: the larger cases are recorded
as skipped.

The log-log slope of time and memory is fitted by least squares over all
points and over the last three (the asymptotic regime; small graphs are
dominated by fixed costs).  Run it through the harness::

    python -m benchmarks.run --suite scaling
"""
import gc
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.layers import _status_kib
from benchmarks.linear_attention import SCALING, loglog_slope

LAYERS = ('exact', 'flash', 'linear', 'dense')
EDGE_LAYERS = ('exact', 'flash')  # the others ignore edges
IN_CHANNELS, CHANNELS, HEADS = (SCALING['in_channels'],
                                SCALING['out_channels'], SCALING['heads'])
FULL = dict(nodes=[1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000],
            degree=10, degree_nodes=10_000,
            degrees=[1, 3, 10, 30, 100, 300, 1000], dense_max_nodes=10_000,
            repeats=3)
QUICK = dict(nodes=[1_000, 3_000, 10_000], degree=10, degree_nodes=2_000,
             degrees=[2, 8, 32], dense_max_nodes=3_000, repeats=2)
ROOT = Path(__file__).resolve().parents[1]


def build(layer: str, num_nodes: int, degree: int, seed: int,
          chunk_size=None):
    """``(module, forward, x)`` for one case; ``forward(module, x)`` returns
    the output whose sum is backpropagated.  ``chunk_size``: the flash
    layer's edges per chunk (``None``: its default)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, IN_CHANNELS, generator=gen)
    torch.manual_seed(seed)
    if layer in EDGE_LAYERS:
        edge_index = torch.randint(0, num_nodes, (2, num_nodes * degree),
                                   generator=gen)
        from pyg_attn.nn import DotProductAttentionConv, FlashAttentionConv
        cls = DotProductAttentionConv if layer == 'exact' else \
            FlashAttentionConv
        kwargs = {} if layer == 'exact' or chunk_size is None else dict(
            chunk_size=chunk_size)
        conv = cls(IN_CHANNELS, CHANNELS, heads=HEADS, **kwargs)
        return conv, lambda m, x: m(x, edge_index), x
    if layer == 'linear':
        from pyg_attn.nn import LinearAttentionConv
        return LinearAttentionConv(**SCALING), lambda m, x: m(x), x
    if layer == 'dense':
        attn = torch.nn.MultiheadAttention(IN_CHANNELS, HEADS,
                                           batch_first=True)

        def forward(m, x):
            x = x.unsqueeze(0)  # [1, N, F]
            return m(x, x, x, need_weights=True)[0]

        return attn, forward, x
    raise ValueError(f"unknown layer {layer!r}; choose from {LAYERS}")


def step(module, forward, x) -> None:
    x = x.clone().requires_grad_()
    forward(module, x).sum().backward()
    module.zero_grad(set_to_none=True)


def measure(layer: str, num_nodes: int, degree: int, repeats: int,
            seed: int, chunk_size=None, what: str = 'both') -> dict:
    """After one warm-up pass: the median forward+backward seconds over
    ``repeats`` passes (``what='time'``), the peak resident bytes above the
    baseline during one pass (``'memory'``), or both from the same passes
    (``'both'``: the first timed pass is the measured one)."""
    case = build(layer, num_nodes, degree, seed, chunk_size)
    step(*case)  # lazy initialisation, one-off allocations
    gc.collect()
    Path('/proc/self/clear_refs').write_text('5')  # reset the peak (VmHWM)
    base = _status_kib('VmRSS')
    result, times = {}, []
    for i in range(1 if what == 'memory' else max(repeats, 1)):
        start = time.perf_counter()
        step(*case)
        times.append(time.perf_counter() - start)
        if i == 0 and what != 'time':  # approximate counters: clamp at 0
            result['mem_bytes'] = max(_status_kib('VmHWM') - base, 0) * 1024
    if what != 'memory':
        result['time_s'] = statistics.median(times)
    return result


def probe(cases: list) -> None:
    """Child process: measures ``cases`` in order, one JSON line each; after
    a failure the larger cases of the same layer and sweep are skipped."""
    failed = set()
    for case in cases:
        key = (case['layer'], case['sweep'])
        if key in failed:
            result = dict(error='skipped: a smaller case failed')
        else:
            try:
                result = measure(case['layer'], case['num_nodes'],
                                 case['degree'], case['repeats'],
                                 case['seed'], case.get('chunk_size'),
                                 case.get('what', 'both'))
            except (RuntimeError, MemoryError) as error:
                failed.add(key)
                result = dict(error=f'{type(error).__name__}: {error}'[:300])
        print(json.dumps(dict(case, **result)), flush=True)
        gc.collect()


def plan(nodes, degree, degree_nodes, degrees, dense_max_nodes, layers,
         repeats=3, seed=0, chunk_size=None) -> list:
    """The cases of both sweeps, by layer, smallest first; ``dense`` only up
    to ``dense_max_nodes``."""
    cases = []
    for layer in layers:
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; choose from {LAYERS}")
        points = [('nodes', n, degree) for n in sorted(nodes)]
        points += [('degree', degree_nodes, d) for d in sorted(degrees)]
        for sweep, n, d in points:
            if layer == 'dense' and n > dense_max_nodes:
                continue
            cases.append(dict(layer=layer, sweep=sweep, num_nodes=n,
                              degree=d, num_edges=n * d, repeats=repeats,
                              seed=seed))
            if layer == 'flash' and chunk_size is not None:
                cases[-1]['chunk_size'] = chunk_size
    return cases


def run_children(cases: list, one_child: bool = False,
                 timeout: float = 3600.0) -> list:
    """Runs ``cases`` in child processes (per layer, or all in one) and
    returns one row per case; the cases a child did not report (killed, out
    of memory, timed out) get an ``error``.

    Each group runs twice, in two children: one times the passes with the
    default allocator, the other measures the peak memory of one pass with
    the allocator returning freed blocks at once (large blocks from and
    back to mmap, small heaps trimmed), so that no case's peak is hidden by
    memory an earlier one freed.  The two are not one run because that
    allocator setting faults in every large temporary afresh, which
    inflates the times (linear attention at 100,000 nodes: 3x)."""
    groups = [cases] if one_child else [
        [c for c in cases if c['layer'] == layer]
        for layer in dict.fromkeys(c['layer'] for c in cases)]
    returning = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536',
                     MALLOC_TRIM_THRESHOLD_='65536')
    rows = []
    for group in groups:
        if not group:
            continue
        timed = _run_child([dict(c, what='time') for c in group],
                           dict(os.environ), timeout)
        peaks = _run_child([dict(c, what='memory') for c in group],
                           returning, timeout)
        for case, t, m in zip(group, timed, peaks):
            row = dict(case)
            if 'error' in t or 'error' in m:
                row['error'] = t.get('error') or m['error']
            else:
                row.update(time_s=t['time_s'], mem_bytes=m['mem_bytes'])
            _print_row(row)
            rows.append(row)
    return rows


def _run_child(group: list, env: dict, timeout: float) -> list:
    """The rows one child reports for ``group``, in order; an ``error`` for
    each case it did not report."""
    cmd = [sys.executable, '-m', 'benchmarks.scaling', json.dumps(group)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT)
        stdout, why = proc.stdout, (
            f'child exited with code {proc.returncode} (out of memory?)'
            f': {proc.stderr.strip()[-300:]}')
    except subprocess.TimeoutExpired as error:
        stdout = error.stdout or ''
        stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
        why = f'child timed out after {timeout:.0f} s'
    done = [json.loads(line) for line in stdout.splitlines()
            if line.startswith('{')]
    return done + [dict(case, error=why) for case in group[len(done):]]


def _print_row(row: dict) -> None:
    if 'error' in row:
        result = row['error']
    else:
        result = (f'{row["time_s"] * 1e3:10.1f} ms '
                  f'{row["mem_bytes"] / 2**20:9.1f} MiB')
    print(f'{row["layer"]:<7} {row["sweep"]:<7} N={row["num_nodes"]:<8} '
          f'degree={row["degree"]:<5} {result}', flush=True)


def slopes(rows: list) -> list:
    """Log-log slopes of time and memory per layer and sweep, over all
    points and over the last three."""
    out = []
    for sweep, axis in (('nodes', 'num_nodes'), ('degree', 'degree')):
        for layer in dict.fromkeys(r['layer'] for r in rows):
            ok = sorted((r for r in rows if r['layer'] == layer and
                         r['sweep'] == sweep and 'error' not in r),
                        key=lambda r: r[axis])
            if not ok:
                continue
            entry = dict(sweep=sweep, layer=layer, points=len(ok),
                         x_min=ok[0][axis], x_max=ok[-1][axis])
            for metric, key in (('time', 'time_s'), ('mem', 'mem_bytes')):
                xs = [r[axis] for r in ok]
                ys = [r[key] for r in ok]
                entry[f'{metric}_slope'] = loglog_slope(xs, ys)
                entry[f'{metric}_slope_last3'] = loglog_slope(xs[-3:],
                                                              ys[-3:])
            out.append(entry)
    return out


def run(nodes=None, degree=None, degree_nodes=None, degrees=None,
        dense_max_nodes=None, layers=LAYERS, repeats=None, seed=0,
        chunk_size=None, quick=False, one_child=False,
        timeout=3600.0) -> dict:
    """Both sweeps; unset arguments come from ``QUICK`` or ``FULL``
    (``chunk_size``: the flash layer's, default its own).  Returns
    ``dict(config=…, rows=…, slopes=…)``."""
    config = dict(QUICK if quick else FULL)
    given = dict(nodes=nodes, degree=degree, degree_nodes=degree_nodes,
                 degrees=degrees, dense_max_nodes=dense_max_nodes,
                 repeats=repeats)
    config.update({k: v for k, v in given.items() if v is not None})
    flash_chunk_size = chunk_size
    if chunk_size is None:
        from pyg_attn.nn import FlashAttentionConv
        default = inspect.signature(FlashAttentionConv).parameters.get(
            'chunk_size')
        flash_chunk_size = None if default is None else default.default
        if flash_chunk_size is None:
            # online_softmax_attention's rule; without edge features the
            # [c, H, C] messages are a chunk's widest view
            from pyg_attn.functional import sparse
            flash_chunk_size = sparse.chunk_rows(HEADS * CHANNELS)
    config.update(layers=list(layers), seed=seed, in_channels=IN_CHANNELS,
                  heads=HEADS, channels=CHANNELS,
                  linear_num_features=SCALING['num_features'],
                  flash_chunk_size=flash_chunk_size)
    cases = plan(config['nodes'], config['degree'], config['degree_nodes'],
                 config['degrees'], config['dense_max_nodes'], layers,
                 config['repeats'], seed, chunk_size)
    rows = run_children(cases, one_child=one_child, timeout=timeout)
    fits = slopes(rows)
    print(f'{"sweep":<7} {"layer":<7} {"time slope":>11} {"(last 3)":>9} '
          f'{"mem slope":>10} {"(last 3)":>9}')
    for f in fits:
        print(f'{f["sweep"]:<7} {f["layer"]:<7} '
              f'{_fmt(f["time_slope"]):>11} {_fmt(f["time_slope_last3"]):>9} '
              f'{_fmt(f["mem_slope"]):>10} {_fmt(f["mem_slope_last3"]):>9}')
    return dict(config=config, rows=rows, slopes=fits)


def _fmt(value) -> str:
    return '-' if value is None else f'{value:.2f}'


if __name__ == '__main__':
    probe(json.loads(sys.argv[1]))
