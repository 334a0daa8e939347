"""Smoke test of ``benchmarks.moe`` at a tiny size."""
import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module('benchmarks.moe')


def test_tiny_run_writes_json(bench, tmp_path):
    out = tmp_path / 'moe.json'
    results = bench.main(['--nodes', '60', '--edges', '400', '--features',
                          '8', '--heads', '2', '--channels', '4',
                          '--repeats', '1', '--out', str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    assert {'torch', 'torch_geometric', 'cpu', 'threads',
            'dtype'} <= set(results['meta'])
    assert results['num_experts'] == 4 and results['top_k'] == 1
    assert sum(results['routed_counts']) == 60
    assert results['time_sparse_s'] > 0 and results['time_dense_s'] > 0
    assert results['time_ratio'] == pytest.approx(
        results['time_sparse_s'] / results['time_dense_s'])
