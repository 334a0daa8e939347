"""Tiny runs of each suite of ``benchmarks.run`` (no gate) into a temporary
folder, and the harness's pieces: metadata, files, gate, accuracy sources,
scaling children."""
import csv
import importlib
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
META_KEYS = {'torch', 'torch_geometric', 'pyg_attn', 'cpu', 'gpu', 'dtype',
             'threads', 'date', 'command', 'git_commit', 'gate', 'quick'}


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module('benchmarks.run')


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> str:
    r"""A writable root with copies of Cora's and disease_lp's raw files."""
    from conftest import copy_raw
    return copy_raw(tmp_path_factory, ['Cora', 'disease_lp'])


def read(out: Path, suite: str):
    result = json.loads((out / f'{suite}.json').read_text())
    assert META_KEYS <= set(result['meta'])
    assert result['meta']['suite'] == suite
    assert result['meta']['gate'] == 'skipped'
    lines = (out / f'{suite}.csv').read_text().splitlines()
    comments = [line for line in lines if line.startswith('# ')]
    assert '# dtype: float32' in comments
    assert any(line.startswith('# command: python -m benchmarks.run ')
               for line in comments)
    rows = list(csv.DictReader(line for line in lines
                               if not line.startswith('#')))
    assert len(rows) == len(result['rows'])
    return result


def test_accuracy_through_compare_and_example(bench, data_root, tmp_path,
                                              monkeypatch):
    pytest.importorskip('pyg_attn.compare')
    monkeypatch.setitem(bench.TASKS, 'nowhere', ('missing_script.py', 'x'))
    code = bench.main(['--suite', 'accuracy', '--quick', '--no-gate',
                       '--out-dir', str(tmp_path), '--root', data_root,
                       '--datasets', 'Cora', 'disease_lp', 'nowhere',
                       '--convs', 'gcn', '--seeds', '1', '--epochs', '2'])
    assert code == 0
    result = read(tmp_path, 'accuracy')
    cora, disease = result['rows']
    assert cora['script'] == 'pyg_attn.compare'
    assert cora['command'] == ('pyg-attn compare --dataset Cora --seeds 1 '
                               '--epochs 2 --mechanisms gcn')
    assert cora['metric'] == 'accuracy' and cora['origin'] == 'PyG'
    assert cora['parameters'] > 0 and cora['epoch_time_s'] > 0
    assert disease['script'] == 'examples/link_prediction.py'
    assert disease['metric'] == 'roc_auc'
    assert disease['command'] == ('python examples/link_prediction.py '
                                  '--dataset disease_lp --conv gcn --root '
                                  f'{data_root} --seeds 1 --epochs 2')
    for row in (cora, disease):
        assert row['conv'] == 'gcn' and row['num_runs'] == 1
        assert 0.0 <= row['mean'] <= 1.0 and len(row['values']) == 1
    assert result['notes'] == [
        'nowhere: examples/missing_script.py does not exist yet; skipped']


def test_accuracy_records_missing_data(bench, tmp_path):
    code = bench.main(['--suite', 'accuracy', '--no-gate', '--out-dir',
                       str(tmp_path), '--root', str(tmp_path / 'empty'),
                       '--datasets', 'disease_lp', '--convs', 'gcn'])
    assert code == 1
    row, = read(tmp_path, 'accuracy')['rows']
    assert row['conv'] == 'gcn' and 'data missing' in row['error']


def test_example_options_read_each_script(bench):
    options = bench.example_options(bench.load_example(
        'node_classification.py'))
    assert {'--dataset', '--conv', '--seeds', '--epochs'} <= set(options)
    assert 'Cora' in options['--dataset'].choices
    assert bench.load_example('missing_script.py') is None
    for script in {s for s, _ in bench.TASKS.values()}:
        module = bench.load_example(script)
        if module is not None:
            options = bench.example_options(module)
            assert options['--conv'].choices and '--out' in options


@pytest.mark.parametrize('result, expected', [
    (dict(accuracies=[0.8, 0.9], mean=0.85, std=0.05, epoch_time_mean=0.1),
     dict(metric='accuracy', mean=0.85, num_runs=2, epoch_time_s=0.1)),
    (dict(roc_auc=[0.7], roc_auc_mean=0.7, roc_auc_std=0.0, ap=[0.6],
          ap_mean=0.6, ap_std=0.0), dict(metric='roc_auc', mean=0.7)),
    (dict(test_auc=[0.9, 0.8], mean=0.85, std=0.05),
     dict(metric='roc_auc', mean=0.85, num_runs=2)),
])
def test_summarise(bench, result, expected):
    summary = bench.summarise(result)
    assert {k: summary[k] for k in expected} == expected
    with pytest.raises(ValueError, match='no known metric'):
        bench.summarise(dict(mean=0.5))


def test_example_rows_read_scripts_and_compare(bench, tmp_path):
    def write(path, result):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result))

    def compare_row(mechanism, accuracies):
        return dict(mechanism=mechanism, layer='L', origin='pyg_attn',
                    accuracy_mean=sum(accuracies) / len(accuracies),
                    accuracy_std=0.01, accuracies=accuracies, epoch_ms=20.0,
                    peak_mib=3.0, parameters=100)

    write(tmp_path / 'node_classification_Cora_gcn.json',
          dict(dataset='Cora', conv='gcn', accuracies=[0.8] * 10, mean=0.8,
               std=0.0))
    write(tmp_path / 'node_classification_Cora_gat.json',
          dict(dataset='Cora', conv='gat', accuracies=[0.7] * 5, mean=0.7,
               std=0.0))
    write(tmp_path / 'hetero' / 'minesweeper_moe.json',
          dict(dataset='minesweeper', conv='moe', test_auc=[0.9, 0.91],
               mean=0.905, std=0.005))
    write(tmp_path / 'run1' / 'compare.json', dict(dataset='Cora', rows=[
        compare_row('gcn', [0.5, 0.5]), compare_row('gat', [0.6] * 5),
        compare_row('moe', [0.75, 0.85])]))
    # a rerun of one mechanism, saved after the run in path order
    write(tmp_path / 'run2' / 'compare.json', dict(dataset='Cora', rows=[
        compare_row('gat', [0.6] * 5)]))
    write(tmp_path / 'link_prediction_disease_lp_mlp.json',
          dict(dataset='disease_lp', conv='mlp', roc_auc=[0.8, 0.9],
               roc_auc_mean=0.85, roc_auc_std=0.05))
    write(tmp_path / 'notes_not_results.json', dict(text='no metric'))
    # the full protocol's runs stay out of a table of reduced runs, even
    # over more splits
    write(tmp_path / 'heterophilous_full' / 'minesweeper_moe_splits0-2.json',
          dict(dataset='minesweeper', conv='moe', test_auc=[0.5] * 3,
               mean=0.5, std=0.0))

    rows = {(r['dataset'], r['conv']): r
            for r in bench.example_rows(tmp_path)}
    assert set(rows) == {('Cora', 'gcn'), ('Cora', 'gat'), ('Cora', 'moe'),
                         ('minesweeper', 'moe'), ('disease_lp', 'mlp')}
    # who made each layer, for the chart's colours
    assert [rows[k]['origin'] for k in [
        ('Cora', 'gcn'), ('minesweeper', 'moe'), ('disease_lp', 'mlp')]] == [
        'PyG', 'pyg_attn', 'control']
    # the most seeds win; on a tie compare's rows, and of two compare
    # files the later one's
    assert rows['Cora', 'gcn']['source'] == 'node_classification_Cora_gcn.json'
    assert rows['Cora', 'gcn']['num_runs'] == 10
    assert rows['Cora', 'gat']['source'] == 'run2/compare.json'
    assert rows['Cora', 'moe']['source'] == 'run1/compare.json'
    assert rows['Cora', 'moe']['mean'] == pytest.approx(0.8)
    assert rows['Cora', 'moe']['epoch_time_s'] == pytest.approx(0.02)
    assert rows['Cora', 'moe']['peak_mem_bytes'] == 3 * 2**20
    assert rows['minesweeper', 'moe']['metric'] == 'roc_auc'
    assert rows['minesweeper', 'moe']['source'] == \
        'hetero/minesweeper_moe.json'


def test_full_protocol_splits(bench, tmp_path):
    def write(path, result):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result))

    def run(conv, splits, test, layers=2, **extra):
        return dict(dataset='minesweeper', conv=conv, splits=splits,
                    test_auc=test, val_auc=[t - 0.01 for t in test],
                    best_epochs=[100 + s for s in splits],
                    epoch_time_mean=2.0, args=dict(layers=layers), **extra)

    full = tmp_path / 'heterophilous_full'
    write(full / 'minesweeper_gat_split0.json',
          run('gat', [0], [0.90], epoch_times=[2.0]))
    write(full / 'minesweeper_gat_split3.json',
          run('gat', [3], [0.80], epoch_times=[1.0]))
    # the merged file repeats its parts' splits: they count once
    write(full / 'minesweeper_gat_splits0-3.json',
          run('gat', [0, 3], [0.90, 0.80], epoch_times=[2.0, 1.0]))
    # another depth: its own rows, and no reduced run of that depth
    write(full / 'minesweeper_gat_layers4_split0.json',
          run('gat', [0], [0.95], layers=4, epoch_times=[4.0]))
    # a file from before epoch_times, and one without a reduced run
    write(full / 'minesweeper_moe_split1.json', run('moe', [1], [0.7]))
    write(full / 'notes.json', dict(text='no results'))
    write(tmp_path / 'heterophilous_reduced' / 'minesweeper_gat.json',
          run('gat', [3, 0], [0.75, 0.5]))  # looked up by split, not place

    rows = bench.full_protocol_splits(tmp_path)
    assert [(r['conv'], r['layers'], r['split']) for r in rows] == [
        ('gat', 2, 0), ('gat', 2, 3), ('gat', 4, 0), ('moe', 2, 1)]
    gat0, gat3, deep0, moe1 = rows
    assert (deep0['test_auc'], deep0['reduced_test_auc']) == (0.95, None)
    assert (gat0['test_auc'], gat0['reduced_test_auc']) == (0.90, 0.5)
    assert (gat3['test_auc'], gat3['reduced_test_auc']) == (0.80, 0.75)
    assert gat3['val_auc'] == pytest.approx(0.79)
    assert (gat3['best_step'], gat3['ms_per_step']) == (103, 1000.0)
    assert gat3['source'] == 'heterophilous_full/minesweeper_gat_split3.json'
    assert moe1['reduced_test_auc'] is None
    assert moe1['ms_per_step'] == 2000.0
    # the published mean of the nearest model, at every depth
    assert [(r['published_model'], r['published_test_auc']) for r in rows] == [
        ('GAT', 0.9201), ('GAT', 0.9201), ('GAT', 0.9201), (None, None)]
    assert bench.full_protocol_splits(tmp_path / 'missing') == []


def test_full_protocol_summary_and_table(bench, tmp_path, capsys):
    def write(name, conv, splits, test, layers=2):
        path = tmp_path / 'heterophilous_full' / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(
            dataset='minesweeper', conv=conv, splits=splits, test_auc=test,
            val_auc=[t - 0.01 for t in test], best_epochs=[100] * len(test),
            epoch_times=[1.0 + s for s in splits], epoch_time_mean=0.0,
            args=dict(layers=layers))))

    write('minesweeper_gat_split0.json', 'gat', [0], [0.90])
    write('minesweeper_gat_split1.json', 'gat', [1, 2], [0.80, 0.70])
    write('minesweeper_gat_layers4_split3.json', 'gat', [3, 5], [0.9, 0.9],
          layers=4)
    write('minesweeper_moe_split1.json', 'moe', [1], [0.7])
    gat, deep, moe = bench.full_protocol_summary(tmp_path)
    assert (gat['conv'], gat['layers'], gat['splits']) == ('gat', 2,
                                                           [0, 1, 2])
    # as merge_splits: mean and population std of the test ROC AUC
    assert gat['test_auc_mean'] == pytest.approx(0.80)
    assert gat['test_auc_std'] == pytest.approx((2 / 300) ** 0.5)
    assert gat['val_auc_mean'] == pytest.approx(0.79)
    assert gat['ms_per_step_median'] == 2000.0
    assert (deep['layers'], deep['splits']) == (4, [3, 5])
    assert (moe['published_model'], moe['splits']) == (None, [1])

    assert bench.full_protocol_table(tmp_path).splitlines()[2:] == [
        '| minesweeper | `gat` | 2 | 0–2 | 80.00 ± 8.16 | 79.00 | 2000 | '
        'GAT 92.01 |',
        '| minesweeper | `gat` | 4 | 3, 5 | 90.00 ± 0.00 | 89.00 | 5000 | '
        'GAT 92.01 |',
        '| minesweeper | `moe` | 2 | 1 | 70.00 | 69.00 | 2000 | — |']
    assert bench.main(['--full-protocol-table', '--out-dir',
                       str(tmp_path)]) == 0
    assert capsys.readouterr().out == bench.full_protocol_table(tmp_path)


def test_speed_every_pair(bench, tmp_path):
    assert bench.main(['--suite', 'speed', '--no-gate', '--out-dir',
                       str(tmp_path), '--graphs', 'random-60-300',
                       '--repeats', '1']) == 0
    result = read(tmp_path, 'speed')
    assert [r['pair'] for r in result['rows']] == list(bench.layers.PAIRS)
    for row in result['rows']:
        assert row['num_nodes'] == 60 and row['num_edges'] == 300
        assert row['time_ratio'] == pytest.approx(
            row['time_ours_s'] / row['time_peer_s'])
    assert result['meta']['heads'] == bench.layers.HEADS


def test_memory_ratio_and_failed_probe(bench, tmp_path, monkeypatch):
    def fake(pair, which, graph_name, root):
        if pair == 'bad':
            raise subprocess.CalledProcessError(1, 'probe', stderr='boom')
        return 300 if which == 0 else 400

    good = next(iter(bench.layers.PAIRS))
    monkeypatch.setitem(bench.layers.PAIRS, 'bad', bench.layers.PAIRS[good])
    monkeypatch.setattr(bench.layers, 'measure_memory', fake)
    code = bench.main(['--suite', 'memory', '--no-gate', '--out-dir',
                       str(tmp_path), '--graphs', 'random-30-90',
                       '--pairs', good, 'bad'])
    assert code == 1
    ok, bad = read(tmp_path, 'memory')['rows']
    assert ok['mem_ratio'] == 0.75 and 'error' not in ok
    assert bad['error'] == 'memory probe failed (exit code 1): boom'


def test_unknown_names_stop_early(bench, tmp_path):
    with pytest.raises(SystemExit, match='unknown pair'):
        bench.main(['--suite', 'speed', '--no-gate', '--pairs', 'nope'])
    with pytest.raises(SystemExit, match='unknown graph'):
        bench.main(['--suite', 'speed', '--no-gate', '--graphs', 'nope'])
    with pytest.raises(SystemExit, match='unknown dataset'):
        bench.main(['--suite', 'accuracy', '--no-gate', '--datasets', 'x'])
    assert not list(tmp_path.iterdir())


def test_scaling_one_child(bench, tmp_path):
    assert bench.main(['--suite', 'scaling', '--quick', '--no-gate',
                       '--out-dir', str(tmp_path), '--layers', 'exact',
                       'linear', 'dense', '--nodes', '100', '200', '400',
                       '--degree-nodes', '100', '--degrees', '2', '4',
                       '--dense-max-nodes', '200', '--repeats', '1']) == 0
    result = read(tmp_path, 'scaling')
    points = {(r['layer'], r['sweep'], r['num_nodes'], r['degree'])
              for r in result['rows']}
    assert points == {
        ('exact', 'nodes', 100, 10), ('exact', 'nodes', 200, 10),
        ('exact', 'nodes', 400, 10), ('exact', 'degree', 100, 2),
        ('exact', 'degree', 100, 4), ('linear', 'nodes', 100, 10),
        ('linear', 'nodes', 200, 10), ('linear', 'nodes', 400, 10),
        ('linear', 'degree', 100, 2), ('linear', 'degree', 100, 4),
        ('dense', 'nodes', 100, 10), ('dense', 'nodes', 200, 10),
        ('dense', 'degree', 100, 2), ('dense', 'degree', 100, 4)}
    assert all(r['time_s'] > 0 and r['mem_bytes'] >= 0
               for r in result['rows'])
    slopes = {(s['sweep'], s['layer']): s for s in result['slopes']}
    assert slopes['nodes', 'exact']['points'] == 3
    assert isinstance(slopes['nodes', 'exact']['time_slope'], float)
    assert result['meta']['config']['dense_max_nodes'] == 200
    assert (tmp_path / 'scaling_slopes.csv').is_file()


def test_scaling_measure_in_process(bench):
    for layer in bench.scaling.LAYERS:
        result = bench.scaling.measure(layer, 40, 3, 1, 0, chunk_size=16)
        assert result['time_s'] > 0 and result['mem_bytes'] >= 0
    assert set(bench.scaling.measure('exact', 40, 3, 2, 0,
                                     what='time')) == {'time_s'}
    assert set(bench.scaling.measure('exact', 40, 3, 2, 0,
                                     what='memory')) == {'mem_bytes'}


def test_scaling_times_and_peaks_from_two_children(bench, monkeypatch):
    def fake_run(cmd, env, **kwargs):
        group = json.loads(cmd[-1])
        returning = env.get('MALLOC_MMAP_THRESHOLD_') == '65536'
        assert {c['what'] for c in group} == {
            'memory' if returning else 'time'}
        if returning:  # the memory child dies on the second case
            rows = [dict(group[0], mem_bytes=7)]
            return subprocess.CompletedProcess(
                cmd, -9, '\n'.join(map(json.dumps, rows)), 'Killed')
        rows = [dict(c, time_s=0.5) for c in group]
        return subprocess.CompletedProcess(
            cmd, 0, '\n'.join(map(json.dumps, rows)), '')

    monkeypatch.delenv('MALLOC_MMAP_THRESHOLD_', raising=False)
    monkeypatch.setattr(bench.scaling.subprocess, 'run', fake_run)
    cases = bench.scaling.plan([100, 200], 2, 100, [], 1000, ['exact'])
    first, second = bench.scaling.run_children(cases)
    assert (first['time_s'], first['mem_bytes']) == (0.5, 7)
    assert 'what' not in first
    assert second['error'].startswith('child exited with code -9')
    assert 'time_s' not in second


def test_scaling_failure_skips_larger_cases(bench, monkeypatch, capsys):
    def fake(layer, num_nodes, degree, repeats, seed, chunk_size=None,
             what='both'):
        if num_nodes >= 200:
            raise RuntimeError('out of memory')
        return dict(time_s=1.0, mem_bytes=1)

    monkeypatch.setattr(bench.scaling, 'measure', fake)
    cases = bench.scaling.plan([100, 200, 400], 2, 100, [1], 1000,
                               ['exact'])
    bench.scaling.probe(cases)
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r.get('error') for r in rows] == [
        None, 'RuntimeError: out of memory',
        'skipped: a smaller case failed', None]


def test_slopes(bench):
    rows = [dict(layer='a', sweep='nodes', num_nodes=n, degree=1,
                 time_s=n ** 2, mem_bytes=n) for n in (10, 100, 1000, 10000)]
    rows.append(dict(layer='a', sweep='nodes', num_nodes=10 ** 5, degree=1,
                     error='x'))
    fit, = bench.scaling.slopes(rows)
    assert fit['time_slope'] == pytest.approx(2.0)
    assert fit['mem_slope_last3'] == pytest.approx(1.0)
    assert fit['points'] == 4 and fit['x_max'] == 10000


def test_gate(bench, tmp_path):
    (tmp_path / 'test_ok.py').write_text('def test_ok():\n    pass\n')
    (tmp_path / 'test_bad.py').write_text('def test_bad():\n    assert 0\n')
    assert 'passed' in bench.run_gate([str(tmp_path / 'test_ok.py')])
    with pytest.raises(SystemExit, match='gate failed.*--no-gate'):
        bench.run_gate([str(tmp_path / 'test_bad.py')])


def test_quick_results_stay_out_of_published_folder(bench, monkeypatch):
    args = bench.parse_args(['--suite', 'speed', '--quick'])
    assert bench.results_folder(args) == bench.RESULTS / 'quick'
    assert bench.results_folder(bench.parse_args(['--suite', 'all'])) == \
        bench.RESULTS
    assert bench.parse_args(['--suite', 'all']).suite == list(bench.SUITES)
    with pytest.raises(SystemExit):
        bench.parse_args([])
