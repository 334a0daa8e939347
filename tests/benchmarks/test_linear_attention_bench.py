"""Smoke test of ``benchmarks.linear_attention`` at tiny sizes."""
import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module('benchmarks.linear_attention')


def test_both_suites_write_merged_json(bench, tmp_path):
    out = tmp_path / 'x.json'
    tiny = ['--repeats', '1', '--no-memory', '--out', str(out)]
    bench.main(['--suite', 'scaling', '--nodes', '100', '300', *tiny])
    bench.main(['--suite', 'performer', '--graphs', '2', *tiny])
    results = json.loads(out.read_text())
    assert set(results) == {'scaling', 'performer'}
    for suite in results.values():
        assert {'torch', 'torch_geometric', 'cpu', 'threads',
                'dtype'} <= set(suite['meta'])
    scaling = results['scaling']
    assert [r['num_nodes'] for r in scaling['rows']] == [100, 300]
    assert all(r['time_s'] > 0 for r in scaling['rows'])
    assert isinstance(scaling['time_slope'], float)
    assert scaling['mem_slope'] is None
    row, = results['performer']['rows']
    assert {'time_ours_s', 'time_pyg_s', 'time_ratio', 'mem_ours_bytes',
            'mem_pyg_bytes', 'mem_ratio', 'leak_ours',
            'leak_pyg'} <= set(row)
    assert row['num_features'] == 110 and row['leak_ours'] < 1e-5


def test_memory_probe_runs_in_process(bench):
    if not Path('/proc/self/clear_refs').exists():
        pytest.skip('needs /proc/self/clear_refs (Linux)')
    # 20,000 nodes: each [N, H, m] feature tensor alone is 10 MiB
    assert bench.memory_probe('scaling', 20_000, 0) > 10 * 2**20


def test_loglog_slope(bench):
    assert bench.loglog_slope([10, 100, 1000], [2, 20, 200]) == \
        pytest.approx(1.0)
    assert bench.loglog_slope([10], [1]) is None
