import pytest
import torch
from torch_geometric.data import Data

import pyg_attn.nn
from pyg_attn.compare import (Hyperparameters, auxiliary_loss,
                              available_mechanisms, count_parameters,
                              run_seed, with_auxiliary_loss)
from pyg_attn.compare.mechanisms import rotary_conv
from pyg_attn.nn.models.adapters import OutputSlice
from pyg_attn.testing.graphs import random_graph

NUM_CLASSES = 3  # odd, as Cora's 7


def node_classification_graph(num_nodes=24, num_features=12) -> Data:
    data = random_graph(num_nodes, 4 * num_nodes, num_features=num_features)
    del data.edge_attr
    data.x = data.x.abs()  # bag-of-words-like, for NormalizeFeatures
    data.y = torch.arange(num_nodes) % NUM_CLASSES
    split = torch.arange(num_nodes) % 3
    data.train_mask, data.val_mask, data.test_mask = (split == 0), (
        split == 1), (split == 2)
    return data


@pytest.mark.parametrize('name', list(available_mechanisms()))
def test_mechanism_trains(name):
    mechanism = available_mechanisms()[name]
    hp = mechanism.hyperparameters(hidden=4, heads=2)
    data = mechanism.data_transform(hp)(node_classification_graph())
    for key in mechanism.inputs:
        assert data[key].size(0) == data.edge_index.size(1)
    result = run_seed(mechanism, data, NUM_CLASSES, seed=0, hp=hp, epochs=2,
                      patience=10)
    assert result['epochs'] == 2 and 0.0 <= result['test_acc'] <= 1.0
    assert result['epoch_time'] > 0

    torch.manual_seed(0)
    model = mechanism.build(12, NUM_CLASSES, hp)
    inputs = {key: data[key] for key in mechanism.inputs}
    model.train()
    out = model(data.x, data.edge_index, **inputs)
    assert out.shape == (24, NUM_CLASSES) and out.isfinite().all()
    out.sum().backward()
    trained = sum(p.numel() for p in model.parameters() if p.grad is not None)
    assert 0 < result['parameters'] == trained <= count_parameters(model)


def test_baselines_and_layers_listed():
    specs = available_mechanisms()
    assert list(specs)[:6] == ['gcn', 'gat', 'transformer', 'edge_gat',
                               'dot_product', 'flash']
    assert {s.origin for s in specs.values()} == {'PyG', 'pyg_attn'}
    assert [n for n, s in specs.items() if s.origin == 'PyG'] == [
        'gcn', 'gat', 'transformer']


def test_missing_layer_is_skipped(monkeypatch):
    monkeypatch.delattr(pyg_attn.nn, 'RotaryAttentionConv', raising=False)
    monkeypatch.delattr(pyg_attn.nn, 'MoEAttentionConv', raising=False)
    names = list(available_mechanisms())
    assert 'rotary' not in names and 'moe' not in names
    assert 'edge_gat' in names


def trained_parameters(spec, hp, num_features=12):
    data = spec.data_transform(hp)(node_classification_graph(
        num_features=num_features))
    return run_seed(spec, data, NUM_CLASSES, 0, hp, epochs=1,
                    patience=1)['parameters']


def test_parameter_counts():
    # GATConv(12 -> 2 x 4): weight 12*8, att_src 8, att_dst 8, bias 8;
    # GATConv(8 -> 3): weight 8*3, att_src 3, att_dst 3, bias 3
    specs = available_mechanisms()
    hp = specs['gat'].hyperparameters(hidden=4, heads=2)
    assert count_parameters(specs['gat'].build(12, 3, hp)) == \
        12 * 8 + 3 * 8 + 8 * 3 + 3 * 3
    assert count_parameters(specs['edge_gat'].build(12, 3, hp)) == \
        12 * 8 + 3 * 8 + 8 * 3 + 3 * 3
    # GCNConv(12 -> 16) and GCNConv(16 -> 3), weights and biases
    hp = specs['gcn'].hyperparameters()
    assert count_parameters(specs['gcn'].build(12, 3, hp)) == \
        12 * 16 + 16 + 16 * 3 + 3
    assert trained_parameters(specs['gcn'], hp) == 12 * 16 + 16 + 16 * 3 + 3
    # TransformerConv without root weight: query, key, value with biases;
    # it builds lin_skip anyway, which gets no gradient and is not counted
    hp = specs['transformer'].hyperparameters(hidden=4, heads=2)
    expected = 3 * (12 * 8 + 8) + 3 * (8 * 3 + 3)
    assert count_parameters(specs['transformer'].build(12, 3, hp)) > expected
    assert trained_parameters(specs['transformer'], hp) == expected
    assert trained_parameters(specs['dot_product'], hp) == expected


def test_hyperparameters():
    specs = available_mechanisms()
    assert specs['gat'].hyperparameters() == Hyperparameters()
    hp = specs['gcn'].hyperparameters(lr=0.1, dropout=None)
    assert (hp.hidden, hp.lr, hp.dropout) == (16, 0.1, 0.5)
    assert specs['dot_product'].hyperparameters().self_loops
    assert specs['transformer'].takes('beta')
    assert not specs['gat'].takes('beta')
    assert not specs['gcn'].takes('dropout')


def test_attention_dropout_reaches_the_layer():
    spec = available_mechanisms()['gat']
    model = spec.build(12, 3, spec.hyperparameters(attn_dropout=0.25))
    assert [conv.dropout for conv in model.convs] == [0.25, 0.25]
    assert model.dropout == 0.6


def test_rotary_conv_odd_width():
    if not hasattr(pyg_attn.nn, 'RotaryAttentionConv'):
        pytest.skip('RotaryAttentionConv is not available')
    conv = rotary_conv(12, 3, heads=1, concat=False)
    assert isinstance(conv, OutputSlice) and conv.conv.out_channels == 4
    assert isinstance(rotary_conv(12, 4, heads=2),
                      pyg_attn.nn.RotaryAttentionConv)


def test_auxiliary_loss():
    # and with_auxiliary_loss, what the training steps backpropagate
    specs = available_mechanisms()
    loss = torch.tensor(1.5, requires_grad=True)
    model = specs['gat'].build(12, 3, specs['gat'].hyperparameters())
    assert auxiliary_loss(model) is None
    assert with_auxiliary_loss(loss, model) is loss
    if 'moe' not in specs:
        pytest.skip('MoEAttentionConv is not available')
    data = specs['moe'].data_transform(specs['moe'].hyperparameters())(
        node_classification_graph())
    model = specs['moe'].build(12, 3, specs['moe'].hyperparameters())
    model(data.x, data.edge_index)
    aux = auxiliary_loss(model)
    assert aux.dim() == 0 and aux.requires_grad
    torch.testing.assert_close(with_auxiliary_loss(loss, model), loss + aux,
                               rtol=0, atol=0)


def test_local_global_without_hnsw(monkeypatch):
    import pyg_attn.compare.mechanisms as module
    if 'local_global' not in available_mechanisms():
        pytest.skip('LocalGlobalAttentionConv is not available')
    monkeypatch.setattr(module, '_hnsw_available', lambda: False)
    spec = available_mechanisms()['local_global']
    assert 'graph edges only' in spec.note
    hp = spec.hyperparameters(hidden=4, heads=2)
    data = spec.data_transform(hp)(node_classification_graph())
    assert (data.edge_type == module.KEPT_EDGE_TYPE).all()
    model = spec.build(12, NUM_CLASSES, hp)
    conv = model.convs[0]
    assert (conv.partition(data.edge_type) == 0).all()  # local
    assert model(data.x, data.edge_index,
                 edge_type=data.edge_type).shape == (24, NUM_CLASSES)
