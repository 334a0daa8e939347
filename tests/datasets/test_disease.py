import os.path as osp
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.utils import contains_self_loops, is_undirected

from pyg_attn.datasets import DiseaseLP
from pyg_attn.datasets.disease import read_csr_npz

FILES = ['disease_lp.edges.csv', 'disease_lp.feats.npz',
         'disease_lp.labels.npy']


def write_raw(root: Path, edges, feats: np.ndarray, labels: np.ndarray):
    raw = root / 'disease_lp' / 'raw'
    raw.mkdir(parents=True)
    np.savetxt(raw / FILES[0], np.asarray(edges), fmt='%d', delimiter=',')
    rows, cols = feats.nonzero()
    indptr = np.searchsorted(rows, np.arange(feats.shape[0] + 1))
    np.savez(raw / FILES[1], indices=cols.astype(np.int32),
             indptr=indptr.astype(np.int32), format=np.bytes_(b'csr'),
             shape=np.array(feats.shape), data=feats[rows, cols])
    np.save(raw / FILES[2], labels)


def test_disease_lp_missing_files(tmp_path):
    raw_dir = osp.join(str(tmp_path), 'disease_lp', 'raw')
    with pytest.raises(FileNotFoundError) as info:
        DiseaseLP(str(tmp_path))
    msg = str(info.value)
    assert '3 of its 3 raw files' in msg
    assert all(name in msg for name in FILES)
    assert f'{raw_dir}/' in msg
    assert 'cp -r ../shared/datasets $PYG_ATTN_DATA' in msg


def test_disease_lp_partial_files(tmp_path):
    raw = tmp_path / 'disease_lp' / 'raw'
    raw.mkdir(parents=True)
    (raw / FILES[0]).write_text('0,1\n')
    with pytest.raises(FileNotFoundError,
                       match=r'2 of its 3 raw files .*\(disease_lp.feats.npz, '
                       r'disease_lp.labels.npy\)'):
        DiseaseLP(str(tmp_path))


def test_disease_lp_small(tmp_path, monkeypatch):
    feats = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [0.0, -3.5, 0.0],
                      [4.0, 0.0, 0.0]])
    write_raw(tmp_path, [[0, 1], [1, 2], [1, 3]], feats,
              np.array([0, 1, 1, 0]))
    monkeypatch.setenv('PYG_ATTN_DATA', str(tmp_path))
    dataset = DiseaseLP()
    data = dataset[0]
    assert str(dataset) == 'DiseaseLP(1)'
    assert torch.equal(data.x, torch.tensor(feats, dtype=torch.float))
    assert torch.equal(data.y, torch.tensor([0, 1, 1, 0]))
    assert data.edge_index.tolist() == [[0, 1, 1, 1, 2, 3], [1, 0, 2, 3, 1, 1]]
    assert osp.isfile(tmp_path / 'disease_lp' / 'processed' / 'data.pt')


def test_disease_lp_bad_node_ids(tmp_path):
    write_raw(tmp_path, [[0, 1], [1, 5]], np.eye(3), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match=r'node ids from 0 to 5 but there are '
                       r'3 feature rows; ids must lie in \[0, 2\]'):
        DiseaseLP(str(tmp_path))


def test_disease_lp_label_count(tmp_path):
    write_raw(tmp_path, [[0, 1]], np.eye(3), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match='holds 2 labels for 3 feature rows'):
        DiseaseLP(str(tmp_path))


def test_read_csr_npz_not_csr(tmp_path):
    path = tmp_path / 'm.npz'
    np.savez(path, indices=np.zeros(0, np.int32), indptr=np.zeros(2, np.int32),
             format=np.bytes_(b'csc'), shape=np.array([1, 1]),
             data=np.zeros(0))
    with pytest.raises(ValueError, match="holds a scipy 'csc' matrix"):
        read_csr_npz(str(path))


def test_read_csr_npz_matches_scipy(tmp_path):
    sp = pytest.importorskip('scipy.sparse')
    dense = np.random.default_rng(0).standard_normal((7, 5))
    dense[dense < 0.3] = 0.0
    sp.save_npz(tmp_path / 'm.npz', sp.csr_matrix(dense))
    assert np.array_equal(read_csr_npz(str(tmp_path / 'm.npz')).numpy(), dense)


def num_components(edge_index: torch.Tensor, num_nodes: int) -> int:
    parent = list(range(num_nodes))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for u, v in edge_index.t().tolist():
        parent[find(u)] = find(v)
    return len({find(i) for i in range(num_nodes)})


def test_disease_lp(disease_root):
    dataset = DiseaseLP(disease_root)
    data = dataset[0]
    # The README's numbers: 2,665 nodes, a tree (δ-hyperbolicity 0).
    assert data.num_nodes == 2665
    assert data.num_edges == 2 * 2664
    assert is_undirected(data.edge_index, num_nodes=data.num_nodes)
    assert not contains_self_loops(data.edge_index)
    assert num_components(data.edge_index, data.num_nodes) == 1
    assert data.x.shape == (2665, 11) and data.x.dtype == torch.float
    assert data.y.bincount().tolist() == [1605, 1060]
    assert DiseaseLP(disease_root)[0].edge_index.equal(data.edge_index)
