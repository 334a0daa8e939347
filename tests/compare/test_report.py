import csv
import json
import sys

from pyg_attn.compare import format_table, plot, write_csv, write_json


def rows():
    return [
        dict(mechanism='gat', layer='GATConv', origin='PyG',
             accuracy_mean=0.8294, accuracy_std=0.0086, epoch_ms=153.2,
             peak_mib=67.4, parameters=92373, num_edges=10556,
             accuracies=[0.82, 0.8388], epochs=[300, 320], note=''),
        dict(mechanism='edge_gat', layer='EdgeGATConv', origin='pyg_attn',
             accuracy_mean=0.83, accuracy_std=0.0, epoch_ms=130.0,
             peak_mib=None, parameters=92373, num_edges=10556,
             accuracies=[0.83, 0.83], epochs=[310, 290],
             note='equals GATConv'),
    ]


def test_format_table():
    text = format_table(rows(), title='Cora')
    lines = text.splitlines()
    assert lines[0] == 'Cora'
    assert lines[1].split()[:3] == ['mechanism', 'layer', 'accuracy']
    assert 'gat *' in lines[3] and '82.94 ± 0.86' in lines[3]
    assert '92,373' in lines[3] and ' 153 ' in lines[3] and ' 67 ' in lines[3]
    assert '83.00 ± 0.00' in lines[4] and 'n/a' in lines[4]
    assert lines[-2].startswith('* PyG baseline.  accuracy: test accuracy')
    assert 'peak MiB: not measured on this system' in lines[-2]
    assert lines[-1] == 'edge_gat: equals GATConv'
    rows_ = rows()
    rows_[0]['memory_method'] = 'VmHWM'
    assert 'peak MiB: peak resident memory above' in format_table(rows_)
    assert not any(line.startswith('gat:') for line in lines)


def test_write_csv_json(tmp_path):
    write_csv(rows(), tmp_path / 'table.csv')
    with open(tmp_path / 'table.csv') as f:
        table = list(csv.DictReader(f))
    assert [r['mechanism'] for r in table] == ['gat', 'edge_gat']
    assert table[0]['parameters'] == '92373' and table[0]['seeds'] == '2'
    assert table[1]['peak_mib'] == '' and table[1]['mean_epochs'] == '300.0'
    write_json(dict(rows=rows()), tmp_path / 'table.json')
    assert json.loads((tmp_path / 'table.json').read_text())['rows'][1][
        'peak_mib'] is None


def test_plot(tmp_path):
    assert plot(rows(), str(tmp_path / 'chart.png'), title='Cora')
    assert (tmp_path / 'chart.png').read_bytes()[:4] == b'\x89PNG'


def test_plot_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'matplotlib.figure', None)
    assert not plot(rows(), str(tmp_path / 'chart.png'))
    assert not (tmp_path / 'chart.png').exists()
