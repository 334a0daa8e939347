import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pyg_attn.testing import edge_set

SCRIPT = (Path(__file__).resolve().parents[2] / 'examples' /
          'link_prediction.py')
CONVS = ['poincare', 'edge_gat', 'dot_product', 'flash', 'gcn', 'gat',
         'transformer', 'moe', 'dual_space', 'linear', 'linear_gps',
         'local_global', 'rotary', 'mlp']


@pytest.fixture(scope='module')
def script():
    spec = importlib.util.spec_from_file_location('link_prediction', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(args, data_root):
    env = dict(os.environ, PYG_ATTN_DATA=str(data_root))
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env,
                          capture_output=True, text=True, timeout=120)


def check_results(path, dataset, conv):
    results = json.loads(path.read_text())
    assert results['dataset'] == dataset and results['conv'] == conv
    assert len(results['roc_auc']) == len(results['ap']) == 1
    assert 0.0 <= results['roc_auc_mean'] <= 1.0
    assert 0.0 <= results['ap_mean'] <= 1.0
    assert results['args']['epochs'] == 2 and results['epochs'] == [2]
    assert {'torch', 'torch_geometric', 'pyg_attn'} <= set(results['versions'])


# In-process: a fresh interpreter spends seconds importing torch_geometric.
@pytest.mark.parametrize('conv', CONVS)
def test_link_prediction_main(conv, script, disease_root, tmp_path, capsys):
    out = tmp_path / 'results.json'
    assert script.main(['--dataset', 'disease_lp', '--conv', conv,
                        '--epochs', '2', '--seeds', '1', '--root',
                        disease_root, '--out', str(out)]) == 0
    assert f'disease_lp {conv}: test ROC AUC' in capsys.readouterr().out
    check_results(out, 'disease_lp', conv)


def test_link_prediction_cora(script, planetoid_root, tmp_path, capsys):
    out = tmp_path / 'results.json'
    assert script.main(['--dataset', 'Cora', '--conv', 'gcn', '--epochs', '2',
                        '--seeds', '1', '--root', planetoid_root,
                        '--out', str(out)]) == 0
    assert 'Cora gcn: test ROC AUC' in capsys.readouterr().out
    check_results(out, 'Cora', 'gcn')


def test_link_prediction_subprocess(disease_root, tmp_path):
    out = tmp_path / 'results.json'
    proc = run(['--conv', 'edge_gat', '--epochs', '2', '--seeds', '1',
                '--out', str(out)], disease_root)
    assert proc.returncode == 0, proc.stderr
    assert 'disease_lp edge_gat: test ROC AUC' in proc.stdout
    check_results(out, 'disease_lp', 'edge_gat')


def test_link_prediction_missing_data(script, tmp_path, capsys):
    out = tmp_path / 'results.json'
    assert script.main(['--conv', 'gcn', '--epochs', '2', '--seeds', '1',
                        '--root', str(tmp_path), '--out', str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: disease_lp: 3 of its 3 raw files')
    assert str(tmp_path / 'disease_lp' / 'raw') in err
    assert not out.exists()


def test_link_prediction_split(script, disease_root):
    from pyg_attn.datasets import DiseaseLP
    data = DiseaseLP(disease_root)[0]
    train, val, test = script.split_edges(data, seed=0)
    # HGCN's 85/5/10 of the 2,664 undirected edges, both directions kept
    # for message passing, one non-edge per validation and test edge.
    assert (val.edge_label == 1).sum() == 133
    assert (test.edge_label == 1).sum() == 266
    assert train.edge_label_index.size(1) == 2664 - 133 - 266
    assert train.edge_index.size(1) == 2 * (2664 - 133 - 266)
    assert (val.edge_label == 0).sum() == 133
    assert (test.edge_label == 0).sum() == 266
    again = script.split_edges(data, seed=0)[2]
    assert torch.equal(again.edge_label_index, test.edge_label_index)
    other = script.split_edges(data, seed=1)[2]
    assert not torch.equal(other.edge_label_index, test.edge_label_index)


def test_link_prediction_message_graph(script, disease_root):
    # The transforms see the training edges only: no validation or test
    # edge may become a message edge (or a 1-hop position).
    from pyg_attn.compare.mechanisms import KEPT_EDGE_TYPE
    from pyg_attn.datasets import DiseaseLP
    train, val, test = script.split_edges(DiseaseLP(disease_root)[0], 0)
    n = train.num_nodes
    loops = {(i, i) for i in range(n)}
    held_out = edge_set(val.edge_label_index[:, val.edge_label == 1]) | \
        edge_set(test.edge_label_index[:, test.edge_label == 1])
    held_out |= {(j, i) for i, j in held_out}
    training = edge_set(train.edge_index)
    assert training and not training & held_out

    args = script.parse_args(['--conv', 'local_global'])
    x, edge_index, inputs = script.message_graph(args, train)
    assert set(inputs) == {'edge_type'}
    kept = inputs['edge_type'] == KEPT_EDGE_TYPE
    assert edge_set(edge_index[:, kept]) == training | loops
    assert (inputs['edge_type'][~kept] < KEPT_EDGE_TYPE).all()
    assert (~kept).sum() > n  # HNSW links of the features

    args = script.parse_args(['--conv', 'rotary'])
    x, edge_index, inputs = script.message_graph(args, train)
    assert inputs['edge_pos'].shape == (edge_index.size(1), 1)
    hop = inputs['edge_pos'][:, 0]
    assert edge_set(edge_index[:, hop == 0]) == loops
    assert edge_set(edge_index[:, hop == 1]) == training
    assert not edge_set(edge_index[:, hop == 2]) & training
    assert hop.max() == 2

    args = script.parse_args(['--conv', 'dual_space'])
    x, edge_index, inputs = script.message_graph(args, train)
    assert inputs == {} and torch.equal(edge_index, train.edge_index)
    torch.testing.assert_close(x, train.x, rtol=0, atol=0)


def test_link_prediction_moe_adds_load_balancing(script, disease_root,
                                                 auxiliary_losses):
    losses = auxiliary_losses(script)
    args = script.parse_args(['--conv', 'moe', '--epochs', '2', '--seeds',
                              '1', '--root', disease_root])
    from tqdm import tqdm
    with tqdm(disable=True) as progress:
        script.run_seed(args, script.load_dataset(args), 0, progress)
    assert len(losses) == 2
    assert all(loss.requires_grad and loss > 0 for loss in losses)


def test_link_prediction_mlp_is_hgcn_mlp(script):
    # Linear -> ReLU -> Linear -> ReLU on each node's own features.
    args = script.parse_args(['--conv', 'mlp'])
    model = script.build_model(args, 11)
    x = torch.randn(7, 11)
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    first, second = model.convs
    linear = torch.nn.functional.linear
    expected = torch.relu(linear(torch.relu(linear(x, first.weight,
                                                    first.bias)),
                                 second.weight, second.bias))
    expected = expected.renorm(2, 0, 1.0)
    torch.testing.assert_close(model.encode(x, edge_index), expected,
                               rtol=0, atol=0)
    assert (first.in_features, first.out_features) == (11, 16)
    torch.testing.assert_close(model.encode(x, edge_index.flip(0)), expected,
                               rtol=0, atol=0)


def brute_roc_auc(scores, labels):
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


def brute_average_precision(scores, labels):
    total, recall_before = 0.0, 0.0
    for threshold in sorted(set(scores.tolist()), reverse=True):
        chosen = scores >= threshold
        tp = float((labels[chosen] == 1).sum())
        recall = tp / float((labels == 1).sum())
        total += (recall - recall_before) * tp / float(chosen.sum())
        recall_before = recall
    return total


def test_metrics_known_values(script):
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
    labels = torch.tensor([0, 0, 1, 1])
    # sklearn's documented examples: roc_auc_score 0.75, AP 0.8333...
    assert script.roc_auc(scores, labels) == pytest.approx(0.75)
    assert script.average_precision(scores, labels) == pytest.approx(5 / 6)
    assert script.roc_auc(-scores, labels) == pytest.approx(0.25)
    assert script.roc_auc(torch.ones(4), labels) == pytest.approx(0.5)
    assert script.average_precision(torch.ones(4),
                                    labels) == pytest.approx(0.5)


@pytest.mark.parametrize('ties', [False, True])
def test_metrics_match_brute_force(script, ties):
    gen = torch.Generator().manual_seed(3)
    scores = torch.randn(57, generator=gen)
    if ties:
        scores = (scores * 2).round() / 2
    labels = (torch.rand(57, generator=gen) < 0.4).long()
    assert script.roc_auc(scores, labels) == pytest.approx(
        brute_roc_auc(scores, labels), abs=1e-12)
    assert script.average_precision(scores, labels) == pytest.approx(
        brute_average_precision(scores, labels), abs=1e-12)


def test_metrics_one_class(script):
    with pytest.raises(ValueError, match='needs both classes'):
        script.roc_auc(torch.rand(3), torch.ones(3))
    with pytest.raises(ValueError, match='at least one positive'):
        script.average_precision(torch.rand(3), torch.zeros(3))


def test_link_prediction_defaults(script):
    args = script.parse_args([])
    assert (args.dataset, args.conv, args.seeds) == ('disease_lp',
                                                     'poincare', 10)
    assert (args.hidden, args.heads, args.lr) == (16, 1, 0.01)
    assert (args.dropout, args.weight_decay, args.c, args.r, args.t) == (
        0.0, 0.0, 1.0, 2.0, 1.0)
    assert args.self_loops and args.patience == 100
    assert (args.feature_scale, args.min_epochs) == (0.01, 300)
    assert args.out == 'results/link_prediction_disease_lp_poincare.json'
    args = script.parse_args(['--conv', 'edge_gat', '--dataset', 'Cora'])
    assert args.heads == 4 and not args.self_loops
    assert (args.feature_scale, args.min_epochs) == (1.0, 100)
    assert args.out == 'results/link_prediction_Cora_edge_gat.json'
    args = script.parse_args(['--dataset', 'Cora'])
    assert (args.feature_scale, args.min_epochs) == (1.0, 300)
    assert script.parse_args(['--conv', 'gcn']).heads == 1
    assert script.parse_args(['--conv', 'mlp']).heads == 1
    for conv in ('moe', 'local_global', 'rotary'):
        args = script.parse_args(['--conv', conv])
        assert args.self_loops and args.heads == 4
    for conv in ('dual_space', 'linear', 'linear_gps'):
        assert not script.parse_args(['--conv', conv]).self_loops
    with pytest.raises(SystemExit):
        script.parse_args(['--conv', 'edge_gat', '--heads', '3'])
