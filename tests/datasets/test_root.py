import os.path as osp

import pytest
import torch_geometric.transforms as T

from pyg_attn.datasets import data_root, load_heterophilous, load_planetoid


def test_data_root_precedence(monkeypatch):
    monkeypatch.delenv('PYG_ATTN_DATA', raising=False)
    assert data_root() == './data'
    monkeypatch.setenv('PYG_ATTN_DATA', '/from/env')
    assert data_root() == '/from/env'
    assert data_root('/explicit') == '/explicit'


def test_load_planetoid_missing_files(tmp_path):
    raw_dir = osp.join(str(tmp_path), 'Cora', 'raw')
    with pytest.raises(FileNotFoundError) as info:
        load_planetoid('cora', root=str(tmp_path))
    msg = str(info.value)
    for suffix in ['x', 'tx', 'allx', 'y', 'ty', 'ally', 'graph', 'test.index']:
        assert f'ind.cora.{suffix}' in msg
    assert f'{raw_dir}/' in msg
    assert 'cp -r ../shared/datasets $PYG_ATTN_DATA' in msg


def test_load_planetoid_partial_files(tmp_path):
    raw_dir = tmp_path / 'Cora' / 'raw'
    raw_dir.mkdir(parents=True)
    (raw_dir / 'ind.cora.x').touch()
    with pytest.raises(FileNotFoundError, match='ind.cora.graph'):
        load_planetoid('Cora', root=str(tmp_path))


def test_load_planetoid_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="'name' \\('Amazon'\\)"):
        load_planetoid('Amazon', root=str(tmp_path))


def test_load_planetoid_cora(planetoid_root, monkeypatch):
    monkeypatch.setenv('PYG_ATTN_DATA', planetoid_root)
    dataset = load_planetoid('Cora', transform=T.NormalizeFeatures())
    data = dataset[0]
    assert osp.isdir(osp.join(planetoid_root, 'Cora', 'processed'))
    assert data.num_nodes == 2708
    assert data.num_edges == 10556
    assert dataset.num_classes == 7
    assert int(data.train_mask.sum()) == 140
    assert int(data.val_mask.sum()) == 500
    assert int(data.test_mask.sum()) == 1000
    assert data.x.sum(dim=-1)[data.x.sum(dim=-1) > 0].allclose(
        data.x.new_ones(1))


def test_load_heterophilous_missing_file(tmp_path):
    raw = osp.join(str(tmp_path), 'tolokers', 'raw', 'tolokers.npz')
    with pytest.raises(FileNotFoundError) as info:
        load_heterophilous('Tolokers', root=str(tmp_path))
    msg = str(info.value)
    assert f"'{raw}' is missing" in msg
    assert 'cp -r ../shared/datasets $PYG_ATTN_DATA' in msg


@pytest.mark.parametrize('name', ['Cora', 'roman empire', None])
def test_load_heterophilous_unknown_name(tmp_path, name):
    with pytest.raises(ValueError, match=f"'name' \\({name!r}\\) must be "
                       "one of .*'minesweeper'"):
        load_heterophilous(name, root=str(tmp_path))


def test_load_heterophilous_minesweeper(minesweeper_root, monkeypatch):
    monkeypatch.setenv('PYG_ATTN_DATA', minesweeper_root)
    dataset = load_heterophilous('Minesweeper', transform=T.ToUndirected())
    data = dataset[0]
    assert osp.isdir(osp.join(minesweeper_root, 'minesweeper', 'processed'))
    assert data.num_nodes == 10_000 and data.num_edges == 78_804
    assert dataset.num_classes == 2
    assert data.train_mask.shape == (10_000, 10)  # the 10 given splits
    assert (data.train_mask.sum(0) == 5_000).all()  # 50 % of the nodes
    assert not (data.train_mask & data.test_mask).any()
    assert dataset.transform is not None
