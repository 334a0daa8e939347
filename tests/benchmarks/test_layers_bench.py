import pytest

from benchmarks import layers


def test_profile_pair_tables():
    graph = layers.make_graph('random-40-200')
    tables = layers.profile_pair('edge_gat', graph, top=5)
    assert len(tables) == 2  # ours, then the peer
    for table in tables:
        assert 'Self CPU' in table and 'aten::' in table


def test_profile_flag_prints_instead_of_measuring(planetoid_root, tmp_path,
                                                  capsys):
    out = tmp_path / 'layers.json'
    layers.main(['--graphs', 'cora', '--pairs', 'edge_gat', '--profile', '3',
                 '--root', planetoid_root, '--out', str(out)])
    printed = capsys.readouterr().out
    assert 'cora: EdgeGATConv' in printed and 'cora: GATConv' in printed
    assert not out.exists()


@pytest.mark.parametrize('top', ['0', '-2'])
def test_profile_needs_a_positive_count(top, tmp_path, capsys):
    out = tmp_path / 'layers.json'
    with pytest.raises(SystemExit) as error:
        layers.main(['--profile', top, '--out', str(out)])
    assert error.value.code == 2
    assert f'--profile ({top}) must be at least 1' in capsys.readouterr().err
    assert not out.exists()


def test_heterophilous_graph(minesweeper_root):
    x, edge_index, edge_attr = layers.make_graph('minesweeper',
                                                 minesweeper_root)
    assert x.shape == (10_000, 7) and edge_index.shape == (2, 78_804)
    assert edge_attr.shape == (78_804, layers.EDGE_DIM)
    assert 'tolokers' in layers.GRAPHS
