"""Smoke test of ``benchmarks.hnsw_transform`` at a tiny size."""
import importlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip('faiss')


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module('benchmarks.hnsw_transform')


def test_writes_times_and_edges_per_layer(bench, tmp_path, capsys):
    out = tmp_path / 'h.json'
    bench.main(['--nodes', '300', '--dim', '8', '--m', '4', '--out',
                str(out)])
    result = json.loads(out.read_text())
    assert {'torch', 'torch_geometric', 'faiss', 'cpu',
            'faiss_threads'} <= set(result['meta'])
    assert result['num_nodes'] == 300 and result['dim'] == 8
    for key in ('faiss_build_s', 'transform_s', 'extract_s', 'distance_s',
                'hub_s', 'transform_hub_s'):
        assert result[key] > 0
    per_layer = result['edges_per_layer']
    assert sum(per_layer) == result['num_edges'] and len(per_layer) > 1
    assert sum(result['nodes_per_level']) == 300
    # hub edges: one per node and layer above its own
    hub = result['edges_per_layer_hub']
    assert hub[0] == per_layer[0] and hub[-1] >= 299
    assert 'faiss build alone' in capsys.readouterr().out


def test_no_hub(bench, tmp_path):
    out = tmp_path / 'h.json'
    result = bench.main(['--nodes', '50', '--dim', '4', '--no-hub', '--out',
                         str(out)])
    assert result['hub_s'] is None and 'transform_hub_s' not in result
