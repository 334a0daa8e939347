"""The README's tables of measured numbers against the committed result
files, each row against its file and each file against its row:

- the ``pyg-attn compare`` tables (Cora, CiteSeer): accuracy, time per
  epoch, peak memory and parameters of each mechanism, from the
  ``compare_*`` folder the text above the table names;
- disease_lp: ROC AUC and AP of each ``--conv``;
- the speed and memory tables against the PyG peers: times, peaks and
  ratios from ``benchmarks.layers`` (``layers.json``,
  ``layers_heterophilous.json``) and from the harness's suites
  (``speed.json``, ``memory.json``; the rows marked † from
  ``poincare_recompute/``), and peak memory against the edge count;
- the scaling table: time and memory of each layer at each N, and the
  fitted slopes (``scaling.json``);
- the HNSW tables (``examples/hnsw_attention.py`` on Cora and
  CiteSeer-vectors): accuracy and edges of each layer on each edge set;
- the heterophilous reduced-protocol table: mean ± std and time per step;
- the full-protocol summary table: what ``python -m benchmarks.run
  --full-protocol-table`` prints;
- the split-by-split table: each run's test ROC AUC, best step, time per
  step and reduced-protocol value."""
import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / 'README.md').read_text()
RESULTS = ROOT / 'benchmarks' / 'results'
MIB = 2 ** 20
# | `edge_gat`, 0, **3 layers** (`--layers 3 …`) | **90.93** | 424 |
#   — (2 layers: 88.56) | 1477 |   (no "**N layers**": 2 layers)
SPLIT_ROW = re.compile(
    r'^\| `(\w+)`(?: \(root weight\))?, (\d+)(?:, \*\*(\d+) layers?\*\*)?'
    r'(?: \([^|]*\))? \| (?:\*\*)?([\d.]+)(?:\*\*)? \| (\d+) \| '
    r'(?:([\d.]+)|— \(2 layers: ([\d.]+)\)) \| (\d+) \|$', re.MULTILINE)


def tables(header: str):
    """(the README's text before each table under :obj:`header`, the
    table's rows as lists of stripped cells)."""
    header += '\n|' + '---|' * header.count(' | ') + '---|\n'
    parts = README.split(header)
    assert len(parts) > 1, f'no table {header!r} in the README'
    for before, after in zip(parts[:-1], parts[1:]):
        yield before, [[cell.strip() for cell in line.strip('|').split('|')]
                       for line in after.split('\n\n')[0].splitlines()]


def pm(result: dict, mean: str, std: str) -> str:
    return f'{100 * result[mean]:.2f} ± {100 * result[std]:.2f}'


def pairs(*names: str) -> dict:
    """(graph, layer, peer) -> row, over the named result files."""
    return {(row['graph'], row['layer'], row['peer']): row for name in names
            for row in json.loads((RESULTS / name).read_text())['rows']}


def ratios(row: dict) -> list:
    return [f"{row['time_ratio']:.2f}", f"{row['mem_ratio']:.2f}"]


def named(cell: str) -> str:
    """The first `code` name in a cell: a conv or mechanism."""
    return re.match(r'`(\w+)`', cell)[1]


def pair_of(cells: list) -> tuple:
    layer, peer = re.findall(r'`(\w+)`', ' '.join(cells[:2]))
    return layer, peer


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module('benchmarks.run')


def test_full_protocol_table_is_current(bench):
    found = re.search(r'<!-- full-protocol-table: python -m benchmarks.run '
                      r'--full-protocol-table -->\n(.*?)'
                      r'<!-- /full-protocol-table -->', README, re.DOTALL)
    assert found, 'the README has no marked full-protocol table'
    assert found.group(1) == bench.full_protocol_table(RESULTS), (
        'the README\'s full-protocol table is out of date: paste the output '
        'of python -m benchmarks.run --full-protocol-table')


def test_split_rows_match_results(bench):
    rows = {(r['conv'], r['layers'], r['split']): r
            for r in bench.full_protocol_splits(RESULTS)
            if r['dataset'] == 'minesweeper'}
    reduced = {}
    for path in (RESULTS / 'heterophilous_reduced').glob('minesweeper_*.json'):
        result = json.loads(path.read_text())
        reduced[result['conv']] = dict(zip(result['splits'],
                                           result['test_auc']))
    shown = set()
    for match in SPLIT_ROW.finditer(README):
        conv, split, layers, test, best, same_depth, two_layers, ms = \
            match.groups()
        key = conv, int(layers or 2), int(split)
        assert key in rows, f'no result file for the README row {match[0]}'
        assert key not in shown, f'a second README row for {key}'
        shown.add(key)
        row = rows[key]
        assert (test, best, ms) == (
            f"{100 * row['test_auc']:.2f}", str(row['best_step']),
            f"{row['ms_per_step']:.0f}"), match[0]
        # the reduced protocol ran 2 layers: a value of its own depth, or
        # the 2-layer one beside a deeper run
        assert (same_depth is None) == (key[1] != 2), match[0]
        assert (same_depth or two_layers) == \
            f"{100 * reduced[conv][key[2]]:.2f}", match[0]
    assert shown == set(rows), (
        f'result files without a README row: {sorted(set(rows) - shown)}')


def test_reduced_table_matches_results():
    [(_, rows)] = tables('| conv | minesweeper ROC AUC | ms / step | '
                         'tolokers ROC AUC | ms / step |')
    shown = set()
    for cells in rows:
        conv = named(cells[0])
        for dataset, auc, ms in (('minesweeper', *cells[1:3]),
                                 ('tolokers', *cells[3:5])):
            path = RESULTS / 'heterophilous_reduced' / f'{dataset}_{conv}.json'
            if auc.startswith('not run'):
                assert not path.exists(), f'{path.name} is not in the README'
                continue
            result = json.loads(path.read_text())
            # bold marks the best; a mark such as § follows the time
            assert (auc.strip('*'), ms.split()[0]) == (
                pm(result, 'mean', 'std'),
                f"{1e3 * result['epoch_time_mean']:.0f}"), (conv, dataset)
            shown.add(path.name)
    files = {path.name for path in
             (RESULTS / 'heterophilous_reduced').glob('*.json')}
    assert shown == files, f'not in the README: {sorted(files - shown)}'


def test_compare_tables_match_results():
    found = list(tables('| mechanism | layer | accuracy (%) | ms / epoch | '
                        'peak MiB | parameters |'))
    assert len(found) == 3  # Cora, Cora quick, CiteSeer
    for before, rows in found:
        folder = re.findall(r'benchmarks/results/(compare_\w+)/', before)[-1]
        runs = {}
        for path in sorted((RESULTS / folder).glob('*.json')):
            for run in json.loads(path.read_text())['rows']:
                assert run['mechanism'] not in runs, (folder, run)
                runs[run['mechanism']] = run
        shown = set()
        for cells in rows:
            mechanism = named(cells[0])
            run = runs[mechanism]
            shown.add(mechanism)
            assert [cells[1], cells[2].strip('*'), *cells[3:]] == [
                run['layer'], pm(run, 'accuracy_mean', 'accuracy_std'),
                f"{run['epoch_ms']:.0f}", f"{run['peak_mib']:.0f}",
                f"{run['parameters']:,}"], (folder, mechanism)
        assert shown == set(runs), (folder, sorted(set(runs) - shown))


def test_link_prediction_table_matches_results():
    [(_, rows)] = tables('| conv | ROC AUC | AP | published (Chami et al. '
                         '2019) |')
    shown = set()
    for cells in rows:
        conv = named(cells[0])
        path = RESULTS / f'link_prediction_disease_lp_{conv}.json'
        result = json.loads(path.read_text())
        assert [cells[1].strip('*'), cells[2]] == [
            pm(result, 'roc_auc_mean', 'roc_auc_std'),
            pm(result, 'ap_mean', 'ap_std')], conv
        shown.add(path.name)
    files = {path.name for path in
             RESULTS.glob('link_prediction_disease_lp_*.json')}
    assert shown == files, f'not in the README: {sorted(files - shown)}'


def test_layers_table_matches_results():
    [(_, rows)] = tables('| graph | layer (vs peer) | time ours / PyG | '
                         'time ratio | peak MiB ours / PyG | memory ratio |')
    runs = pairs('layers.json')
    shown = set()
    for cells in rows:
        key = (cells[0].split()[0], *pair_of(cells))
        run = runs[key]
        shown.add(key)
        assert [x.strip('*') for x in cells[2:]] == [
            f"{1e3 * run['time_ours_s']:.0f} / {1e3 * run['time_peer_s']:.0f}"
            ' ms', ratios(run)[0],
            f"{run['mem_ours_bytes'] / MIB:.0f} / "
            f"{run['mem_peer_bytes'] / MIB:.0f}", ratios(run)[1]], key
    assert shown == set(runs)


def test_suite_ratios_table_matches_results():
    """Time ratios from the harness's speed.json, memory ratios from its
    memory.json."""
    [(_, rows)] = tables('| layer | peer | Cora time | Cora memory | '
                         'synthetic time | synthetic memory |')
    suites = {}
    for folder in ('', 'poincare_recompute/'):
        suites[folder] = pairs(f'{folder}speed.json')
        for key, row in pairs(f'{folder}memory.json').items():
            suites[folder][key] = dict(suites[folder][key], **row)
    shown = set()
    for cells in rows:
        runs = suites['poincare_recompute/' if '†' in cells[0] else '']
        layer, peer = pair_of(cells)
        shown.add((layer, peer))
        assert [x.strip('*') for x in cells[2:]] == [
            ratio for graph in ('cora', 'synthetic')
            for ratio in ratios(runs[graph, layer, peer])], (layer, peer)
    assert shown == {key[1:] for key in suites['']}


def test_heterophilous_layers_table_matches_results():
    [(_, rows)] = tables('| layer | peer | minesweeper time | minesweeper '
                         'memory | tolokers time | tolokers memory | '
                         'tolokers ms | tolokers MiB |')
    runs = pairs('layers_heterophilous.json')
    shown = set()
    for cells in rows:
        layer, peer = pair_of(cells)
        shown.add((layer, peer))
        mine, tolo = (runs[graph, layer, peer]
                      for graph in ('minesweeper', 'tolokers'))
        assert [x.strip('*') for x in cells[2:]] == [
            *ratios(mine), *ratios(tolo),
            f"{1e3 * tolo['time_ours_s']:.0f} / "
            f"{1e3 * tolo['time_peer_s']:.0f}",
            f"{tolo['mem_ours_bytes'] / MIB:.0f} / "
            f"{tolo['mem_peer_bytes'] / MIB:.0f}"], (layer, peer)
    assert shown == {key[1:] for key in runs}


def test_hnsw_tables_match_results():
    found = list(tables('| graph | `LocalGlobalAttentionConv` | '
                        '`RotaryAttentionConv` | edges |'))
    assert len(found) == 2  # Cora, CiteSeer-vectors
    for before, rows in found:
        name = re.findall(r'benchmarks/results/(hnsw_attention_[\w-]+\.json)',
                          before)[-1]
        runs = {run['mechanism']: run for run in
                json.loads((RESULTS / name).read_text())['rows']}
        # a row per edge set, in the example's order: own, hnsw, keep
        variants = list(dict.fromkeys(m.split('/')[1] for m in runs))
        assert len(rows) == len(variants), name
        for variant, cells in zip(variants, rows):
            local, rotary = (runs[f'{layer}/{variant}']
                             for layer in ('local_global', 'rotary'))
            assert [cells[1].strip('*'), cells[2].split(' (')[0].strip('*')] \
                == [pm(run, 'accuracy_mean', 'accuracy_std')
                    for run in (local, rotary)], (name, variant)
            # the edges: the local layer's first, the rotary layer's
            # (2 hops on a graph) among them
            assert cells[3].startswith(f"{local['num_edges']:,}"), (
                name, variant)
            assert f"{rotary['num_edges']:,}" in cells[3], (name, variant)


def test_memory_against_edges_matches_results():
    [(_, rows)] = tables('| edges | `FlashAttentionConv` MiB | '
                         '`DotProductAttentionConv` MiB | `TransformerConv` '
                         'MiB |')
    runs = json.loads((RESULTS / 'layers_memory_vs_edges.json').read_text())
    assert rows == [[f"{run['num_edges']:,}"] + [
        f'{run[layer] / MIB:.0f}' for layer in (
            'FlashAttentionConv', 'DotProductAttentionConv',
            'TransformerConv')] for run in runs]


def test_scaling_table_matches_results():
    [(_, rows)] = tables('| layer | 10³ nodes | 10⁴ | 10⁵ | 10⁶ | time slope '
                         '(last 3) | memory slope (last 3) |')
    result = json.loads((RESULTS / 'scaling.json').read_text())

    def time(seconds: float) -> str:  # 9.0 ms, 75 ms, 912 ms, 1.05 s, 11.4 s
        if seconds >= 1:
            return f'{seconds:.3g} s'
        return f'{1e3 * seconds:.{1 if seconds < 0.01 else 0}f} ms'

    shown = set()
    for cells in rows:
        layer = cells[0].split()[0]  # exact, flash, linear, dense
        shown.add(layer)
        points = {run['num_nodes']: run for run in result['rows']
                  if run['layer'] == layer and run['sweep'] == 'nodes'}
        [slope] = [s for s in result['slopes']
                   if s['layer'] == layer and s['sweep'] == 'nodes']
        # the slope over the last 3 points where there are more
        last3 = slope['points'] > 3
        assert cells[1:] == [
            f"{time(points[n]['time_s'])}, "
            f"{points[n]['mem_bytes'] / MIB:.0f} MiB" if n in points
            else '—' for n in (10 ** 3, 10 ** 4, 10 ** 5, 10 ** 6)] + [
            f'{slope[key]:.2f}' + (f' ({slope[key + "_last3"]:.2f})'
                                   if last3 else '')
            for key in ('time_slope', 'mem_slope')], layer
    assert shown == {run['layer'] for run in result['rows']}
