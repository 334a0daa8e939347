"""Executes both benchmark notebooks with nbclient, as CI does: on temporary
copies, in quick mode (each re-runs tiny suites into a temporary folder) and
on a results folder with nothing in it, and the compare notebook on
committed full-protocol runs (a few, then all); a failing cell fails the
test."""
import importlib
import json
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ['compare_mechanisms.ipynb', 'scaling.ipynb']
COMMITTED = ROOT / 'benchmarks' / 'results'


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module('benchmarks.run')


def snapshot(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob('*')}


def outputs(nb, kind: str) -> list:
    return [o for cell in nb.cells if cell.cell_type == 'code'
            for o in cell.outputs if kind in o.get('data', {})]


def notes(nb) -> str:
    return '\n'.join(o['data']['text/markdown']
                     for o in outputs(nb, 'text/markdown'))


def texts(nb) -> list:
    """The plain-text outputs (tables, prints) of the code cells."""
    return [''.join(o['data']['text/plain'])
            for o in outputs(nb, 'text/plain')]


def execute_copy(bench, name: str, tmp_path: Path, **kwargs):
    """Executes a temporary copy of the notebook :obj:`name`."""
    copy = tmp_path / name
    shutil.copy(ROOT / 'benchmarks' / name, copy)
    return bench.execute_notebook(copy, timeout=600, **kwargs)


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_quick_mode(bench, name, tmp_path, planetoid_root, monkeypatch):
    monkeypatch.setenv('PYG_ATTN_DATA', planetoid_root)
    src = ROOT / 'benchmarks' / name
    original, before = src.read_bytes(), snapshot(COMMITTED)
    nb = execute_copy(bench, name, tmp_path, quick=True)
    assert src.read_bytes() == original
    assert snapshot(COMMITTED) == before  # quick results go to a temp dir
    assert 'quick mode:' in notes(nb)
    assert 'is missing' not in notes(nb) and 'failed' not in notes(nb)
    assert len(outputs(nb, 'image/png')) >= 2


def layers_json() -> dict:
    """A ``benchmarks.layers`` result file, as written before the harness."""
    row = dict(graph='cora', layer='EdgeGATConv', peer='GATConv',
               num_nodes=2708, num_edges=10556, time_ours_s=0.08,
               time_peer_s=0.1, time_ratio=0.8, mem_ours_bytes=6e7,
               mem_peer_bytes=9e7, mem_ratio=0.67)
    return dict(meta=dict(torch='x'), rows=[row])


def test_missing_results_give_notes(bench, tmp_path):
    """Without the harness's files: a note per missing file, and the
    compare notebook falls back to benchmarks.layers' layers.json."""
    results = tmp_path / 'results'
    results.mkdir()
    (results / 'layers.json').write_text(json.dumps(layers_json()))
    for name in NOTEBOOKS:
        nb = execute_copy(bench, name, tmp_path, results_dir=results)
        suites = ['accuracy', 'speed', 'memory'] if name.startswith(
            'compare') else ['scaling']
        for suite in suites:
            assert f'{results / suite}.json` is missing' in notes(nb)
        if name.startswith('compare'):
            assert notes(nb).count('Showing `layers.json`') == 2
            assert len(outputs(nb, 'image/png')) == 2  # time and memory
    # each chart is saved beside the results it shows (the scaling
    # notebook's edge sweep reads the committed layers' file)
    assert sorted(p.name for p in (results / 'figures').iterdir()) == [
        'mem_ratio.png', 'memory_vs_edges.png', 'time_ratio.png']


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_no_layer_defined_in_notebook(name):
    nb = json.loads((ROOT / 'benchmarks' / name).read_text())
    code = '\n'.join(''.join(c['source']) for c in nb['cells']
                     if c['cell_type'] == 'code')
    assert not re.search(r'^\s*class\s', code, re.MULTILINE)
    assert 'MessagePassing' not in code and 'nn.Module' not in code
    assert any(c['cell_type'] == 'markdown' for c in nb['cells'])


def test_full_protocol_section(bench, tmp_path):
    """The split-by-split section on committed full-protocol runs (quick
    mode leaves it empty): its tables, the published mean and the chart."""
    results = tmp_path / 'results'
    for name in ['heterophilous_full/minesweeper_edge_gat_split0.json',
                 'heterophilous_full/minesweeper_edge_gat_layers4_split0.json',
                 'heterophilous_reduced/minesweeper_edge_gat.json']:
        (results / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(COMMITTED / name, results / name)
    nb = execute_copy(bench, 'compare_mechanisms.ipynb', tmp_path,
                      results_dir=results)
    assert 'no full-protocol runs' not in notes(nb)
    summary = next(t for t in texts(nb) if 'published_model' in t)
    # one row per depth: split 0's full and reduced runs, GAT's 92.01
    assert re.search(r'edge_gat\s+2\s+1\s+89\.88\s+88\.56\s+92\.01\s+GAT',
                     summary), summary
    assert re.search(r'4\s+1\s+91\.64\s+NaN\s+92\.01\s+GAT', summary), summary
    # by depth: one split each, so a standard deviation of 0
    depth = next(t for t in texts(nb) if 'num_splits' in t)
    assert re.search(r'edge_gat\s+2\s+1\s+89\.88\s+0\.0\s', depth), depth
    assert re.search(r'edge_gat\s+4\s+1\s+91\.64\s+0\.0\s', depth), depth
    assert {p.name for p in (results / 'figures').iterdir()} >= {
        'full_protocol_splits.png', 'full_protocol_depth.png'}


def test_full_protocol_table_shows_every_split(bench, tmp_path):
    """On all committed full-protocol runs (more rows than pandas shows by
    default) the split-by-split table lists every row, none elided; with
    no reduced run beside them the chart is still drawn."""
    results = tmp_path / 'results'
    shutil.copytree(COMMITTED / 'heterophilous_full',
                    results / 'heterophilous_full')
    expected = bench.full_protocol_splits(results)
    assert len(expected) > 60  # past pandas' default display.max_rows
    nb = execute_copy(bench, 'compare_mechanisms.ipynb', tmp_path,
                      results_dir=results)
    table = next(t for t in texts(nb) if 'best_step' in t)
    shown = re.findall(r'^\d+\s+(\w+)\s+(\w+)\s+(\d+)\s+(\d+)\s', table,
                       re.MULTILINE)
    assert shown == [(r['dataset'], r['conv'], str(r['layers']),
                      str(r['split'])) for r in expected], table
    depth = next(t for t in texts(nb) if 'num_splits' in t)
    assert len(re.findall(r'^\d+\s+minesweeper\s', depth, re.MULTILINE)) == \
        len(bench.full_protocol_summary(results)), depth
    assert {p.name for p in (results / 'figures').iterdir()} >= {
        'full_protocol_splits.png', 'full_protocol_depth.png'}
