import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Data

pytest.importorskip('faiss')

SCRIPT = Path(__file__).resolve().parents[2] / 'examples' / 'hnsw_attention.py'
CORA_EDGES, CORA_NODES = 10556, 2708


@pytest.fixture(scope='module')
def script():
    spec = importlib.util.spec_from_file_location('hnsw_attention', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def toy_graph() -> Data:
    """300 non-negative vectors (cosine, like bag-of-words) on a ring."""
    n = 300
    x = torch.rand(n, 16, generator=torch.Generator().manual_seed(0))
    ring = torch.arange(n)
    edge_index = torch.stack([ring, (ring + 1) % n])
    return Data(x=x, edge_index=edge_index, y=torch.zeros(n, dtype=torch.long))


def prepared(script, layer, variant):
    mechanism = script.variant_mechanism(layer, variant, m=4)
    return mechanism, mechanism.data_transform(mechanism.hyperparameters())(
        toy_graph())


def test_hnsw_attention_variant_edges(script):
    n, own = 300, 300
    kept = script.KEPT_EDGE_TYPE
    mechanism, data = prepared(script, 'local_global', 'own')
    assert mechanism.conv_kwargs['num_partitions'] == 1
    assert data.edge_index.size(1) == own + n
    assert (data.edge_type == kept).all()
    assert script.edge_counts(data) == {'own': own, 'self-loops': n}

    _, hnsw = prepared(script, 'local_global', 'hnsw')
    _, keep = prepared(script, 'local_global', 'keep')
    for data in (hnsw, keep):
        counts = script.edge_counts(data)
        assert sum(counts.values()) == data.edge_index.size(1)
        top = int(data.node_level.max())
        assert top >= 2 and counts['layer 0 links'] > 4 * n
        for layer in range(1, top + 1):  # one hub edge per node below layer
            assert counts[f'layer {layer} hubs'] == int(
                (data.node_level < layer).sum())
        is_kept = data.edge_type == kept
        src, dst = data.edge_index[:, is_kept]
        assert ((src == dst).sum(), is_kept.sum()) == (
            n, n + (own if data is keep else 0))
        loop = data.edge_index[0] == data.edge_index[1]
        assert data.edge_attr[is_kept & loop].abs().max() < 1e-6
    assert script.edge_counts(hnsw)['own'] == 0
    assert script.edge_counts(keep)['own'] == own
    # The same HNSW links in both; keep adds the ring after them.
    assert torch.equal(hnsw.edge_index[:, hnsw.edge_type < kept],
                       keep.edge_index[:, keep.edge_type < kept])

    # Three partitions: own + self-loops, HNSW layer 0, upper layers.
    mechanism, _ = prepared(script, 'local_global', 'keep')
    assert mechanism.conv_kwargs['num_partitions'] == 3
    partition = torch.tensor(script.PARTITION_MAP)
    assert partition[0] == 1 and (partition[1:kept] == 2).all()
    assert partition[kept] == 0

    mechanism, data = prepared(script, 'rotary', 'keep')
    assert mechanism.conv_kwargs['pos_dim'] == 2
    assert torch.equal(data.edge_pos[:, 0], data.edge_type.float())
    assert torch.equal(data.edge_pos[:, 1], data.edge_attr[:, 0])
    mechanism, data = prepared(script, 'rotary', 'own')
    assert mechanism.conv_kwargs['pos_dim'] == 1
    counts = script.edge_counts(data)
    assert counts['hop 1'] == own and counts['self-loops'] == n
    assert counts['hop 2'] == own  # on a directed ring, one per node


def test_hnsw_attention_models_run(script):
    for layer in script.LAYERS:
        for variant in script.VARIANTS:
            mechanism, data = prepared(script, layer, variant)
            model = mechanism.build(16, 3, mechanism.hyperparameters())
            out = model(data.x, data.edge_index,
                        **{k: data[k] for k in mechanism.inputs})
            assert out.shape == (300, 3) and torch.isfinite(out).all()


def test_hnsw_attention_main(script, planetoid_root, tmp_path, capsys):
    out = tmp_path / 'results.json'
    assert script.main(['--dataset', 'Cora', '--seeds', '1', '--epochs', '2',
                        '--root', planetoid_root, '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())
    rows = {(r['variant'], r['conv']): r for r in results['rows']}
    assert list(rows) == [(v, c) for v in ('own', 'hnsw', 'keep')
                          for c in ('local_global', 'rotary')]
    for (variant, conv), row in rows.items():
        assert row['dataset'] == 'Cora' and len(row['accuracies']) == 1
        assert 0.0 <= row['accuracy_mean'] <= 1.0 and row['epochs'] == [2]
        assert sum(row['edges'].values()) == row['num_edges']
        assert row['edges']['self-loops'] == CORA_NODES
        assert f'Cora             {variant:<4} {conv:<12}' in printed
    assert rows['own', 'local_global']['edges']['own'] == CORA_EDGES
    assert rows['own', 'rotary']['edges']['hop 1'] == CORA_EDGES
    assert rows['hnsw', 'local_global']['edges']['own'] == 0
    assert rows['keep', 'rotary']['edges']['own'] == CORA_EDGES
    hnsw = rows['hnsw', 'rotary']['edges']
    assert hnsw['layer 0 links'] > 15 * CORA_NODES  # cosine: ~19 per node
    assert hnsw['layer 1 hubs'] > 0.9 * CORA_NODES
    assert results['args']['metric'] == 'cosine'


def test_hnsw_attention_vectors(script, planetoid_root, tmp_path, capsys):
    out = tmp_path / 'results.json'
    assert script.main(['--dataset', 'CiteSeer-vectors', '--seeds', '1',
                        '--epochs', '1', '--layers', 'rotary',
                        '--variants', 'own', 'keep',
                        '--root', planetoid_root, '--out', str(out)]) == 0
    assert 'CiteSeer-vectors keep: skipped' in capsys.readouterr().out
    (row, ) = json.loads(out.read_text())['rows']
    assert row['variant'] == 'own'
    assert row['edges'] == {'self-loops': row['num_edges']}  # no graph


def test_hnsw_attention_missing_data(script, tmp_path, capsys):
    out = tmp_path / 'results.json'
    assert script.main(['--seeds', '1', '--epochs', '2', '--root',
                        str(tmp_path), '--out', str(out)]) == 1
    err = capsys.readouterr().err
    assert 'ind.cora.graph' in err and str(tmp_path / 'Cora' / 'raw') in err
    assert not out.exists()


def test_hnsw_attention_defaults(script):
    args = script.parse_args([])
    assert args.dataset == ['Cora', 'CiteSeer-vectors']
    assert (args.seeds, args.epochs, args.patience) == (10, 1000, 100)
    assert (args.m, args.metric) == (16, 'cosine')
    assert args.layers == ['local_global', 'rotary']
    assert args.variants == ['own', 'hnsw', 'keep']
    with pytest.raises(SystemExit):
        script.parse_args(['--variants', 'dense'])
