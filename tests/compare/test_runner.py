import pytest

from pyg_attn.compare import DATASETS, compare, environment


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
    assert {'torch', 'torch_geometric', 'pyg_attn', 'python', 'threads',
            'device', 'dtype'} <= set(info)
    assert info['device'] == 'cpu' and 'gpu' not in info
