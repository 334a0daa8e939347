import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / 'examples' / 'heterophilous.py'
CONVS = ['dual_space', 'dot_product', 'edge_gat', 'gat', 'gcn', 'moe']


@pytest.fixture(scope='module')
def script():
    spec = importlib.util.spec_from_file_location('heterophilous', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_roc_auc_equals_pairwise_count(script):
    gen = torch.Generator().manual_seed(0)
    score = torch.randint(0, 6, (40, ), generator=gen).float()  # many ties
    target = torch.randint(0, 2, (40, ), generator=gen)
    pos, neg = score[target == 1], score[target == 0]
    diff = pos[:, None] - neg[None, :]
    expected = ((diff > 0).double() + 0.5 * (diff == 0).double()).mean()
    assert script.roc_auc(score, target) == pytest.approx(float(expected))
    assert script.roc_auc(torch.tensor([0., 1.]), torch.tensor([0, 1])) == 1
    with pytest.raises(ValueError, match='both classes'):
        script.roc_auc(torch.ones(3), torch.ones(3))


# In-process, tiny model, two steps: the graph has 10,000 nodes.
@pytest.mark.parametrize('conv', CONVS)
def test_heterophilous_main(conv, script, minesweeper_root, tmp_path,
                            capsys):
    out = tmp_path / 'results.json'
    assert script.main([
        '--conv', conv, '--epochs', '2', '--splits', '1', '--hidden', '8',
        '--heads', '2', '--layers', '1', '--k', '3', '--refresh-interval',
        '2', '--eval-every', '2', '--root', minesweeper_root,
        '--out', str(out)]) == 0
    assert f'minesweeper {conv}: test ROC AUC' in capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results['dataset'] == 'minesweeper' and results['conv'] == conv
    assert len(results['test_auc']) == 1 and 0 <= results['mean'] <= 1
    assert results['args']['epochs'] == 2
    assert {'torch', 'torch_geometric', 'pyg_attn'} <= set(
        results['versions'])


def test_heterophilous_missing_data(script, tmp_path, capsys):
    out = tmp_path / 'results.json'
    assert script.main(['--epochs', '2', '--splits', '1', '--root',
                        str(tmp_path), '--out', str(out)]) == 1
    err = capsys.readouterr().err
    assert 'Traceback' not in err and 'minesweeper.npz' in err
    assert str(tmp_path / 'minesweeper' / 'raw') in err
    assert not out.exists()


def test_heterophilous_defaults(script):
    args = script.parse_args([])
    assert (args.hidden, args.heads, args.lr, args.dropout, args.epochs,
            args.splits) == (512, 8, 3e-5, 0.2, 1000, 10)
    assert args.out == 'results/heterophilous_minesweeper_dual_space.json'
    with pytest.raises(SystemExit):
        script.parse_args(['--hidden', '10', '--heads', '4'])
    with pytest.raises(SystemExit):
        script.parse_args(['--splits', '11'])
