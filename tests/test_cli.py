import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pyg_attn.cli import main, parse_args
from pyg_attn.compare import FULL, QUICK

REPO = Path(__file__).resolve().parents[1]


def test_compare_tiny_run(planetoid_root, tmp_path, capsys):
    out_dir = tmp_path / 'out'
    assert main(['compare', '--root', planetoid_root, '--mechanisms', 'gcn',
                 'edge_gat', 'dot_product', '--seeds', '1', '--epochs', '3',
                 '--out-dir', str(out_dir), '--no-progress']) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith('Cora: test accuracy over 1 seed (max 3 '
                               'epochs')
    assert lines[1].split()[:2] == ['mechanism', 'layer']
    assert [line.split()[0] for line in lines[3:6]] == [
        'gcn', 'edge_gat', 'dot_product']
    assert 'GCNConv' in lines[3] and 'EdgeGATConv' in lines[4]

    with open(out_dir / 'compare.csv') as f:
        table = list(csv.DictReader(f))
    assert [row['mechanism'] for row in table] == ['gcn', 'edge_gat',
                                                   'dot_product']
    # GCNConv(1433 -> 16) + GCNConv(16 -> 7); GATConv-shaped EdgeGATConv
    assert int(table[0]['parameters']) == 1433 * 16 + 16 + 16 * 7 + 7
    assert int(table[1]['parameters']) == 1433 * 64 + 3 * 64 + 64 * 7 + 3 * 7
    for row in table:
        assert 0.0 <= float(row['accuracy_mean']) <= 1.0
        assert float(row['epoch_ms']) > 0 and row['seeds'] == '1'
        if sys.platform.startswith('linux'):
            assert float(row['peak_mib']) > 0

    results = json.loads((out_dir / 'compare.json').read_text())
    assert results['dataset'] == 'Cora'
    assert results['protocol'] == dict(seeds=1, epochs=3,
                                       patience=QUICK.patience)
    assert {'torch', 'torch_geometric', 'pyg_attn', 'device'} <= set(
        results['environment'])
    assert [row['epochs'] for row in results['rows']] == [[3]] * 3
    assert results['command'].startswith('pyg-attn compare --root')
    assert (out_dir / 'compare.png').read_bytes()[:4] == b'\x89PNG'
    assert f"wrote {out_dir / 'compare.csv'}" in out


def test_compare_missing_data(tmp_path, capsys):
    out_dir = tmp_path / 'out'
    assert main(['compare', '--root', str(tmp_path), '--mechanisms', 'gat',
                 '--out-dir', str(out_dir), '--no-progress']) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: Cora: 8 of its 8 raw files are missing')
    assert 'ind.cora.graph' in err and str(tmp_path / 'Cora' / 'raw') in err
    assert not out_dir.exists()


def test_python_m_missing_data(tmp_path):
    env = dict(os.environ, PYG_ATTN_DATA=str(tmp_path),
               PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, '-m', 'pyg_attn', 'compare',
                           '--dataset', 'CiteSeer', '--no-progress'],
                          env=env, capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert 'ind.citeseer.x' in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_compare_mechanism_selection(capsys):
    args = parse_args(['compare', '--mechanisms', 'gat', 'gcn'])
    assert args.mechanisms == ['gat', 'gcn']
    assert parse_args(['compare']).mechanisms is None
    with pytest.raises(SystemExit) as info:
        parse_args(['compare', '--mechanisms', 'gat', 'no_such_layer'])
    assert info.value.code == 2
    assert "invalid choice: 'no_such_layer'" in capsys.readouterr().err


def test_compare_protocol_options():
    args = parse_args(['compare'])
    assert args.protocol == QUICK and args.dataset == 'Cora'
    assert args.out_dir == os.path.join('results', 'compare_Cora')
    assert parse_args(['compare', '--full']).protocol == FULL
    args = parse_args(['compare', '--full', '--seeds', '3', '--dataset',
                       'CiteSeer'])
    assert (args.protocol.seeds, args.protocol.epochs) == (3, FULL.epochs)
    assert args.out_dir == os.path.join('results', 'compare_CiteSeer')
    with pytest.raises(SystemExit):
        parse_args(['compare', '--epochs', '0'])
    with pytest.raises(SystemExit):
        parse_args([])


@pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is available')
def test_compare_device_without_cuda(capsys):
    with pytest.raises(SystemExit):
        parse_args(['compare', '--device', 'cuda'])
    assert 'CUDA is not available' in capsys.readouterr().err


def test_compare_jobs():
    args = parse_args(['compare', '--device', 'cpu'])
    assert args.jobs == len(os.sched_getaffinity(0))
    assert parse_args(['compare', '--jobs', '3']).jobs == 3
    with pytest.raises(SystemExit):
        parse_args(['compare', '--jobs', '0'])


def test_compare_title_and_json_name_the_processes_started(
        planetoid_root, tmp_path, capsys, monkeypatch):
    # --jobs above the number of mechanisms starts one process per mechanism
    monkeypatch.setattr(torch, 'get_num_threads', lambda: 2)
    out_dir = tmp_path / 'out'
    assert main(['compare', '--root', planetoid_root, '--mechanisms', 'gcn',
                 'gat', '--seeds', '1', '--epochs', '1', '--jobs', '8',
                 '--out-dir', str(out_dir), '--no-progress']) == 0
    assert '(2 processes of 1 thread)' in capsys.readouterr().out
    assert json.loads((out_dir / 'compare.json').read_text())['jobs'] == 2
