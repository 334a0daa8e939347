import pytest
import torch
from torch_geometric.data import Data

from pyg_attn.compare import (DATASETS, Protocol, available_mechanisms,
                              compare, environment, train_mechanism)


def test_datasets():
    assert list(DATASETS) == ['Cora', 'CiteSeer']


def test_compare_rejects_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="'dataset' \\('PubMed'\\)"):
        compare('PubMed', root=str(tmp_path))
    with pytest.raises(ValueError, match="unknown or unavailable mechanisms "
                       "\\['nope'\\]"):
        compare('Cora', root=str(tmp_path), names=['gat', 'nope'])


def test_compare_missing_data(tmp_path):
    with pytest.raises(FileNotFoundError, match='ind.citeseer.x'):
        compare('CiteSeer', root=str(tmp_path), names=['gat'],
                show_progress=False)


def test_environment():
    info = environment('cpu')
    assert {'torch', 'torch_geometric', 'pyg_attn', 'git_commit', 'python',
            'threads', 'device', 'dtype'} <= set(info)
    assert info['device'] == 'cpu' and 'gpu' not in info


def test_environment_commit(tmp_path, monkeypatch):
    import subprocess

    import pyg_attn
    from pyg_attn.compare.runner import source_commit

    # a copy of the package in a fresh repository: the commit, then -dirty
    # once a tracked file changes
    package = tmp_path / 'pyg_attn'
    package.mkdir()
    (package / '__init__.py').write_text('')
    monkeypatch.setattr(pyg_attn, '__file__', str(package / '__init__.py'))

    def git(*args):
        return subprocess.run(['git', '-C', str(tmp_path), *args], check=True,
                              capture_output=True, text=True).stdout.strip()

    assert source_commit() is None  # not a repository yet
    git('init', '-q')
    git('add', '.')
    git('-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', 't')
    head = git('rev-parse', 'HEAD')
    assert source_commit() == head
    (tmp_path / 'untracked.txt').write_text('not part of the source')
    (tmp_path / 'README.md').write_text('prose')
    git('add', 'README.md')
    git('-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', 'r')
    head = git('rev-parse', 'HEAD')
    (tmp_path / 'README.md').write_text('prose, edited')  # not the source
    assert source_commit() == head
    (package / '__init__.py').write_text('# changed')
    assert source_commit() == head + '-dirty'


def test_train_mechanism_prepared_data():
    class Toy(list):
        num_classes = 2

    n = 12
    ring = torch.arange(n)
    mask = ring % 3 == 0
    dataset = Toy([Data(x=torch.rand(n, 5), y=ring % 2,
                        edge_index=torch.stack([ring, (ring + 1) % n]),
                        train_mask=mask, val_mask=ring % 3 == 1,
                        test_mask=ring % 3 == 2)])
    gat = available_mechanisms()['gat']
    protocol = Protocol(seeds=1, epochs=2, patience=2)
    row = train_mechanism(gat, dataset, protocol)
    assert row['num_edges'] == n and row['transform_s'] >= 0
    data = gat.data_transform(gat.hyperparameters())(dataset[0])
    data.edge_index = data.edge_index[:, :5]  # the graph given is used
    row = train_mechanism(gat, dataset, protocol, data=data)
    assert row['num_edges'] == 5 and row['transform_s'] is None


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_compare_in_processes_matches_in_process(planetoid_root, one_thread):
    # two spawned workers of one thread each give the rows one process of
    # one thread gives, in table order
    protocol = Protocol(seeds=2, epochs=3, patience=3)
    names = ['gat', 'gcn', 'edge_gat']
    kwargs = dict(root=planetoid_root, names=names, protocol=protocol,
                  show_progress=False)
    serial = compare('Cora', jobs=1, **kwargs)
    parallel = compare('Cora', jobs=2, **kwargs)
    assert [row['mechanism'] for row in parallel] == names
    for a, b in zip(serial, parallel):
        for key in ('accuracies', 'val_accuracies', 'best_epochs',
                    'parameters', 'num_edges'):
            assert a[key] == b[key], (a['mechanism'], key)
        assert b['epoch_ms'] > 0 and b['peak_mib'] is not None


def test_compare_rejects_bad_jobs(tmp_path):
    with pytest.raises(ValueError, match="'jobs' \\(0\\)"):
        compare('Cora', root=str(tmp_path), jobs=0)
