import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / 'examples' / 'node_classification.py'
CONVS = ['dot_product', 'edge_gat', 'gat', 'transformer', 'gcn']


@pytest.fixture(scope='module')
def script():
    spec = importlib.util.spec_from_file_location('node_classification', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(args, data_root):
    env = dict(os.environ, PYG_ATTN_DATA=str(data_root))
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env,
                          capture_output=True, text=True, timeout=120)


def check_results(path, conv):
    results = json.loads(path.read_text())
    assert results['dataset'] == 'Cora' and results['conv'] == conv
    assert len(results['accuracies']) == 1
    assert 0.0 <= results['mean'] <= 1.0
    assert results['args']['epochs'] == 2
    assert {'torch', 'torch_geometric', 'pyg_attn'} <= set(results['versions'])


# In-process: a fresh interpreter spends 3-5 s importing torch_geometric, so
# one subprocess per conv would not keep this file under a minute on 2 cores.
@pytest.mark.parametrize('conv', CONVS)
def test_node_classification_main(conv, script, planetoid_root, tmp_path,
                                  capsys):
    out = tmp_path / 'results.json'
    assert script.main(['--dataset', 'Cora', '--conv', conv, '--epochs', '2',
                        '--seeds', '1', '--root', planetoid_root,
                        '--out', str(out)]) == 0
    assert f'Cora {conv}: test accuracy' in capsys.readouterr().out
    check_results(out, conv)


def test_node_classification_subprocess(planetoid_root, tmp_path):
    out = tmp_path / 'results.json'
    proc = run(['--dataset', 'Cora', '--conv', 'edge_gat', '--epochs', '2',
                '--seeds', '1', '--out', str(out)], planetoid_root)
    assert proc.returncode == 0, proc.stderr
    assert 'Cora edge_gat: test accuracy' in proc.stdout
    check_results(out, 'edge_gat')


def test_node_classification_missing_data(tmp_path):
    proc = run(['--conv', 'gat', '--epochs', '2', '--seeds', '1',
                '--out', str(tmp_path / 'results.json')], tmp_path)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert 'ind.cora.graph' in proc.stderr
    assert str(tmp_path / 'Cora' / 'raw') in proc.stderr
    assert not (tmp_path / 'results.json').exists()


def test_node_classification_defaults(script):
    args = script.parse_args(['--conv', 'gat'])
    assert (args.hidden, args.heads, args.lr, args.dropout) == (8, 8, 0.005, 0.6)
    assert args.attn_dropout == 0.6 and not args.self_loops
    assert args.out == 'results/node_classification_Cora_gat.json'
    args = script.parse_args(['--conv', 'dot_product'])
    assert args.self_loops and args.root_weight is False
    args = script.parse_args(['--conv', 'gcn', '--dataset', 'CiteSeer'])
    assert (args.hidden, args.lr, args.dropout) == (16, 0.01, 0.5)
    with pytest.raises(SystemExit):
        script.parse_args(['--conv', 'gat', '--beta'])
