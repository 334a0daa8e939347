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


def test_memory_probe_measures_the_saved_feature_maps(bench):
    if not Path('/proc/self/clear_refs').exists():
        pytest.skip('needs /proc/self/clear_refs (Linux)')
    # In a fresh child, as the benchmark measures: in this process the
    # allocator reuses pages earlier tests left resident, and in CI the peak
    # came out under one feature map.  At 20,000 nodes each [N, H, m]
    # feature map is 20,000 * heads * num_features * 4 bytes; backward needs
    # both phi(q) and phi(k), so the true peak is at least two.  1.5 leaves
    # room for the kernel's lagging RSS counters.
    feature_map = 20_000 * bench.SCALING['heads'] * \
        bench.SCALING['num_features'] * 4
    assert bench.measure_memory('scaling', 20_000, 0) > 1.5 * feature_map


def test_loglog_slope(bench):
    assert bench.loglog_slope([10, 100, 1000], [2, 20, 200]) == \
        pytest.approx(1.0)
    assert bench.loglog_slope([10], [1]) is None
