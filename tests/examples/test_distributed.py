import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pyg_attn.nn.models.adapters import KeywordAttentionNet
from pyg_attn.testing.graphs import random_graph

SCRIPT = Path(__file__).resolve().parents[2] / 'examples' / 'distributed.py'


@pytest.fixture(scope='module')
def script():
    spec = importlib.util.spec_from_file_location('distributed', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def loader(script, data, num_neighbors, batch_size, **kwargs):
    return script.make_loader(data, torch.arange(data.num_nodes),
                              num_neighbors, batch_size, shuffle=False,
                              **kwargs)


CONVS = ['dot_product', 'edge_gat', 'flash', 'gat', 'transformer', 'poincare',
         'local_global', 'rotary', 'moe']
ONE_NODE_SET = ['linear', 'linear_gps', 'dual_space']


def test_convs(script):
    # every conv of the script is tested here
    assert set(script.CONVS) == set(CONVS + ONE_NODE_SET)
    assert script.ONE_NODE_SET == set(ONE_NODE_SET)
    assert all(script.bipartite(conv) for conv in CONVS)


@pytest.mark.parametrize('conv', CONVS)
def test_bipartite_forward_matches_full(script, conv):
    # Each layer gets (x_src, x_dst) with fewer destinations than sources;
    # the seeds' outputs equal those of the full forward on the same batch.
    data = script.message_graph(
        conv, random_graph(40, 160, num_features=5, seed=3))
    keys = script.edge_inputs(conv)
    batch = next(iter(loader(script, data, [3, 3], batch_size=6)))
    assert batch.num_sampled_nodes[1] > 0 and batch.num_sampled_nodes[2] > 0
    tensors = {key: batch[key] for key in keys}
    for key in keys:  # the sampled edges' own rows
        assert torch.equal(tensors[key], data[key][batch.e_id])
    torch.manual_seed(0)
    net = KeywordAttentionNet(5, 4, 3, conv=script.CONVS[conv], heads=2,
                              conv_kwargs=script.conv_kwargs(conv))
    model = script.SampledAttentionNet(net).eval()
    out = model(batch.x, batch.edge_index, batch.num_sampled_nodes,
                batch.num_sampled_edges, **tensors)
    assert out.shape == (6, 3)
    full = model(batch.x, batch.edge_index, **tensors)[:6]
    torch.testing.assert_close(out, full)
    if keys:  # the layers use them
        other = {key: value.flip(0) for key, value in tensors.items()}
        assert not torch.allclose(out, model(
            batch.x, batch.edge_index, batch.num_sampled_nodes,
            batch.num_sampled_edges, **other))

    model.train()
    check_gradients(script, model, model(
        batch.x, batch.edge_index, batch.num_sampled_nodes,
        batch.num_sampled_edges, **tensors), conv)


def check_gradients(script, model, out, conv):
    script.with_auxiliary_loss(out.sum(), model).backward()
    grads = dict(model.named_parameters())
    assert all(torch.isfinite(p.grad).all() for p in grads.values()
               if p.grad is not None)
    unused = {name for name, p in grads.items() if p.grad is None}
    if conv == 'moe':  # experts no node was routed to, the dot-product
        # expert's skip projection (built, unused without a root weight)
        assert all('.experts.' in name for name in unused), unused
        assert not any('.router' in name for name in unused)
    elif conv == 'dual_space':  # its attentions' skip projections
        assert unused and all('.lin_skip.' in name for name in unused), unused
    else:
        assert not unused
    # DDP is told to look for them exactly where they can occur
    assert (conv in script.UNUSED_PARAMETERS) == (conv in ('moe',
                                                           'dual_space'))


@pytest.mark.parametrize('conv', ONE_NODE_SET)
def test_subgraph_forward(script, conv):
    # Layers over one node set run on the whole mini-batch and keep the seed
    # nodes' rows; a batch of every node with all in-edges is the full graph.
    data = random_graph(40, 160, num_features=5, seed=3)
    torch.manual_seed(0)
    data.y = torch.randint(3, (40, ))
    net = KeywordAttentionNet(5, 4, 3, conv=script.CONVS[conv], heads=2,
                              conv_kwargs=script.conv_kwargs(conv))
    model = script.SampledAttentionNet(net, script.bipartite(conv)).eval()
    assert not model.bipartite
    whole = next(iter(loader(script, data, [-1, -1], batch_size=40)))
    assert torch.equal(whole.n_id, torch.arange(40))
    out = model(whole.x, whole.edge_index, whole.num_sampled_nodes,
                whole.num_sampled_edges)
    torch.testing.assert_close(out, model(data.x, data.edge_index))
    counts = script.evaluate_graph(model, data, [torch.arange(10),
                                                 torch.arange(10, 40)],
                                   torch.device('cpu'))
    pred = out.argmax(dim=-1) == data.y
    assert counts.tolist() == [int(pred[:10].sum()), 10,
                               int(pred[10:].sum()), 30]

    batch = next(iter(loader(script, data, [3, 3], batch_size=6)))
    assert batch.num_sampled_nodes[2] > 0
    out = model(batch.x, batch.edge_index, batch.num_sampled_nodes,
                batch.num_sampled_edges)
    assert out.shape == (6, 3)
    torch.testing.assert_close(out, net(batch.x, batch.edge_index)[:6])
    if conv == 'linear':  # global: every node of the batch reaches the seeds
        x = batch.x.clone()
        x[-1] += 1.0  # a node of the last hop
        assert not torch.allclose(out, model(
            x, batch.edge_index, batch.num_sampled_nodes,
            batch.num_sampled_edges))
    model.train()
    check_gradients(script, model, model(
        batch.x, batch.edge_index, batch.num_sampled_nodes,
        batch.num_sampled_edges), conv)


@pytest.mark.parametrize('argv,match', [
    (['--num-neighbors', '5', '0'], 'positive counts or -1'),
    (['--batch-size', '0'], r'--batch-size \(0\) must be at least 1'),
    (['--epochs', '0'], r'--epochs \(0\) must be at least 1'),
])
def test_bad_arguments(script, argv, match, capsys):
    with pytest.raises(SystemExit):
        script.parse_args(argv)
    assert re.search(match, capsys.readouterr().err)


def test_moe_adds_load_balancing(script, planetoid_root, auxiliary_losses,
                                 tmp_path):
    losses = auxiliary_losses(script)
    assert script.main([
        '--root', planetoid_root, '--conv', 'moe', '--epochs', '1',
        '--batch-size', '70', '--hidden', '2', '--heads', '2',
        '--out', str(tmp_path / 'out.json')]) == 0
    assert len(losses) == 2  # 140 training nodes, 70 per step
    assert all(loss.requires_grad and loss > 0 for loss in losses)


def test_missing_data(script, tmp_path, capsys):
    assert script.main(['--root', str(tmp_path), '--epochs', '1',
                        '--out', str(tmp_path / 'out.json')]) == 1
    assert 'raw files are missing' in capsys.readouterr().err
    assert not (tmp_path / 'out.json').exists()


# edge_gat: the plain case; moe: a load-balancing loss and parameters
# without a gradient (unrouted experts); local_global: a message graph built
# by rank 0 (HNSW links) whose edge tensors the mini-batches carry;
# dual_space: whole-subgraph layers, full-graph evaluation and unused skip
# projections.  moe learns more slowly: its loss needs 8 epochs to fall by
# 0.02.
@pytest.mark.parametrize('conv,epochs', [('edge_gat', 4), ('moe', 8),
                                         ('local_global', 4),
                                         ('dual_space', 4)])
def test_two_processes(planetoid_root, tmp_path, conv, epochs):
    r"""Two gloo processes train on disjoint halves of the training nodes;
    DDP keeps their parameters identical, and the loss falls."""
    out, state = tmp_path / 'results.json', tmp_path / 'state'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone',
         '--nproc_per_node=2', str(SCRIPT), '--dataset', 'Cora', '--root',
         planetoid_root, '--conv', conv, '--epochs', str(epochs),
         '--batch-size', '35', '--num-neighbors', '5', '5', '--lr', '0.01',
         '--out', str(out), '--save-dir', str(state)],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'Cora {conv}: 2 process(es) (gloo)' in proc.stdout

    results = json.loads(out.read_text())
    assert results['world_size'] == 2 and results['backend'] == 'gloo'
    assert results['steps_per_epoch'] == 2  # 70 training nodes per rank
    losses = results['train_loss']
    assert len(losses) == epochs and losses[-1] < losses[0] - 0.02, losses
    assert all(0.0 <= acc <= 1.0 for acc in results['test_acc'])
    assert {'torch', 'pyg_attn', 'git_commit'} <= set(results['versions'])

    ranks = [torch.load(state / f'rank{r}.pt') for r in range(2)]
    assert ranks[0]['steps'] == ranks[1]['steps'] == 2 * epochs
    seen = [set(r['seed_nodes'].tolist()) for r in ranks]
    assert len(seen[0]) == len(seen[1]) == 70 and not seen[0] & seen[1]
    assert ranks[0]['final'].keys() == ranks[1]['final'].keys()
    for key, value in ranks[0]['final'].items():
        assert torch.equal(value, ranks[1]['final'][key]), key
        assert torch.equal(ranks[0]['initial'][key], ranks[1]['initial'][key])
    assert any(not torch.equal(value, ranks[0]['initial'][key])
               for key, value in ranks[0]['final'].items())
