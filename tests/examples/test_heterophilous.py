import importlib.util
import json
from pathlib import Path

import pytest
import torch

from pyg_attn.datasets import load_heterophilous
from pyg_attn.testing import edge_set

SCRIPT = Path(__file__).resolve().parents[2] / 'examples' / 'heterophilous.py'
CONVS = ['dual_space', 'dot_product', 'edge_gat', 'gat', 'transformer',
         'gcn', 'moe', 'mlp', 'flash', 'poincare', 'local_global', 'rotary',
         'linear', 'linear_gps']


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
    assert len(results['epoch_times']) == 1
    assert results['epoch_times'][0] == results['epoch_time_mean'] > 0
    assert {'torch', 'torch_geometric', 'pyg_attn', 'git_commit'} <= set(
        results['versions'])


def test_heterophilous_moe_adds_load_balancing(script, minesweeper_root,
                                               auxiliary_losses, tmp_path):
    losses = auxiliary_losses(script)
    assert script.main([
        '--conv', 'moe', '--epochs', '2', '--splits', '1', '--hidden', '8',
        '--heads', '2', '--layers', '1', '--root', minesweeper_root,
        '--out', str(tmp_path / 'results.json')]) == 0
    assert len(losses) == 2
    assert all(loss.requires_grad and loss > 0 for loss in losses)


def test_heterophilous_convs(script):
    # every conv of the script is tested above, and every layer of the
    # comparison's rows that this installation has is one of them
    assert set(script.CONVS) == set(CONVS)


def test_heterophilous_message_graph(script, minesweeper_root):
    from pyg_attn.compare.mechanisms import KEPT_EDGE_TYPE
    data = load_heterophilous('minesweeper', minesweeper_root)[0]
    n, graph = data.num_nodes, edge_set(data.edge_index)

    args = script.parse_args(['--conv', 'local_global'])
    edge_index, inputs = script.message_graph(args, data)
    assert set(inputs) == {'edge_type'}
    kept = inputs['edge_type'] == KEPT_EDGE_TYPE
    assert edge_set(edge_index[:, kept]) == graph
    assert (inputs['edge_type'][~kept] < KEPT_EDGE_TYPE).all()
    assert (~kept).sum() > n  # HNSW links of the features

    args = script.parse_args(['--conv', 'rotary'])
    edge_index, inputs = script.message_graph(args, data)
    assert inputs['edge_pos'].shape == (edge_index.size(1), 1)
    hop = inputs['edge_pos'][:, 0]
    assert edge_set(edge_index[:, hop == 1]) == graph
    assert not edge_set(edge_index[:, hop == 2]) & graph
    assert set(hop.tolist()) <= {0., 1., 2.} and hop.max() == 2

    for conv in ('dot_product', 'flash', 'mlp', 'linear'):
        args = script.parse_args(['--conv', conv])
        edge_index, inputs = script.message_graph(args, data)
        assert inputs == {} and edge_index is data.edge_index


@pytest.mark.parametrize('conv,has_root', [
    ('dot_product', True), ('flash', True), ('rotary', True),
    ('local_global', True), ('transformer', True), ('linear', True),
    ('linear_gps', True), ('poincare', False)])
def test_heterophilous_root_weight(script, conv, has_root):
    # --no-root-weight reaches every layer that has a root weight (the
    # comparison builds local_global and rotary without one)
    def root_weights(argv):
        args = script.parse_args(['--conv', conv, '--hidden', '8',
                                  '--heads', '2', *argv])
        return [module.root_weight
                for module in script.make_conv(args, 8).modules()
                if hasattr(module, 'root_weight')]
    assert root_weights([]) == ([True] if has_root else [])
    assert root_weights(['--no-root-weight']) == (
        [False] if has_root else [])


def test_heterophilous_mlp_ignores_edges(script):
    args = script.parse_args(['--conv', 'mlp', '--hidden', '8', '--heads',
                              '2'])
    torch.manual_seed(0)
    model = script.Net(args, 5).eval()
    x = torch.randn(6, 5)
    edges = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
    out = model(x, edges)
    torch.testing.assert_close(model(x, edges.flip(0)[:, :1]), out, rtol=0,
                               atol=0)
    # fewer rows: the same values up to the matmul's blocking
    torch.testing.assert_close(model(x[:3], edges[:, :1]), out[:3])


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


def test_heterophilous_split_ids(script, minesweeper_root, tmp_path, capsys):
    # --split-ids 2 runs split 2 alone, as the third split of --splits 3,
    # so the 10 splits can be shared among machines.
    common = ['--conv', 'edge_gat', '--epochs', '2', '--hidden', '8',
              '--heads', '2', '--layers', '1', '--root', minesweeper_root]
    assert script.main([*common, '--splits', '3',
                        '--out', str(tmp_path / 'all.json')]) == 0
    assert script.main([*common, '--split-ids', '2',
                        '--out', str(tmp_path / 'one.json')]) == 0
    first = json.loads((tmp_path / 'all.json').read_text())
    one = json.loads((tmp_path / 'one.json').read_text())
    assert first['splits'] == [0, 1, 2] and one['splits'] == [2]
    assert one['test_auc'] == first['test_auc'][2:]
    assert one['best_epochs'] == first['best_epochs'][2:]
    assert len(set(first['test_auc'])) == 3  # the splits differ
    for wrong in (['--split-ids', '10'], ['--split-ids', '1', '1'],
                  ['--split-ids', '-1']):
        with pytest.raises(SystemExit):
            script.parse_args(wrong)
    assert 'must be distinct numbers in 0..9' in capsys.readouterr().err
