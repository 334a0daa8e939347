r"""Full-batch semi-supervised node classification with the GAT paper's
protocol (Veličković et al., 2018, https://arxiv.org/abs/1710.10903): train
on the public split's 140 labels, early stopping with patience on validation
loss *or* accuracy, and report the test accuracy of the last epoch that
improved both."""
import statistics
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Module
from torch_geometric.data import Data

from pyg_attn.compare.mechanisms import Hyperparameters, Mechanism


@dataclass(frozen=True)
class Protocol:
    r"""How long each mechanism trains.

    Args:
        seeds (int): Seeds :obj:`0 .. seeds - 1`, one model each.
        epochs (int): Maximum epochs per seed.
        patience (int): Epochs without improving validation loss or
            accuracy before stopping.
    """
    seeds: int
    epochs: int
    patience: int


# The GAT paper's protocol, and a quick one that ends in a few minutes on
# 2 CPU cores for every mechanism on Cora.
FULL = Protocol(seeds=10, epochs=1000, patience=100)
QUICK = Protocol(seeds=2, epochs=50, patience=20)


def auxiliary_loss(model: Module) -> Optional[Tensor]:
    r"""The sum of the :obj:`aux_loss` tensors the model's submodules left
    in their last forward (e.g. :class:`~pyg_attn.nn.MoEAttentionConv`'s
    load-balancing loss), or :obj:`None` if there are none."""
    losses = [m.aux_loss for m in model.modules()
              if isinstance(getattr(m, 'aux_loss', None), Tensor)]
    return sum(losses) if losses else None


def with_auxiliary_loss(loss: Tensor, model: Module) -> Tensor:
    r""":obj:`loss` plus the model's :func:`auxiliary_loss` if it has one:
    what a training step backpropagates."""
    aux = auxiliary_loss(model)
    return loss if aux is None else loss + aux


def count_parameters(model: Module) -> int:
    r"""Learnable parameters (buffers such as random features are not
    counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _with_gradient(model: Module, seen: Dict[int, int]) -> None:
    for p in model.parameters():
        if p.grad is not None:
            seen[id(p)] = p.numel()


def train_node_classifier(
    model: Module,
    data: Data,
    *,
    lr: float,
    weight_decay: float,
    epochs: int,
    patience: int,
    inputs: Dict[str, Tensor] = None,
    progress: Any = None,
    seed: Optional[int] = None,
) -> Dict[str, Any]:
    r"""Trains :obj:`model` full-batch with Adam and GAT's early stopping.

    Each epoch is one training step (cross entropy on :obj:`data.train_mask`
    plus any :func:`auxiliary_loss`) and one evaluation forward.  The model
    improving both validation loss and accuracy is kept; training stops after
    :obj:`patience` epochs improving neither.

    Args:
        model (Module): Called as :obj:`model(data.x, data.edge_index,
            **inputs)`.
        data (Data): The graph with :obj:`train_mask`, :obj:`val_mask` and
            :obj:`test_mask`.
        lr (float): Learning rate.
        weight_decay (float): Weight decay.
        epochs (int): Maximum epochs.
        patience (int): Early-stopping patience.
        inputs (dict, optional): Extra keyword tensors of the model.
            (default: :obj:`None`)
        progress (tqdm, optional): Updated once per epoch.
            (default: :obj:`None`)
        seed (int, optional): Shown in the progress bar. (default: :obj:`None`)

    Returns:
        A dict with :obj:`test_acc` and :obj:`val_acc` of the kept epoch,
        :obj:`best_epoch`, :obj:`epochs` run, the mean :obj:`epoch_time`
        in seconds and the :obj:`parameters` trained: those that received a
        gradient (PyG's :obj:`TransformerConv` builds :obj:`lin_skip` even
        with :obj:`root_weight=False`; it is not counted).
    """
    inputs = inputs or {}
    optimizer = torch.optim.Adam(model.parameters(), lr=lr,
                                 weight_decay=weight_decay)
    max_acc, min_loss, bad_epochs, times = 0.0, float('inf'), 0, []
    best = dict(test_acc=0.0, val_acc=0.0, best_epoch=0)
    trained: Dict[int, int] = {}
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        model.train()
        optimizer.zero_grad()
        out = model(data.x, data.edge_index, **inputs)
        loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        with_auxiliary_loss(loss, model).backward()
        _with_gradient(model, trained)
        optimizer.step()

        model.eval()
        with torch.no_grad():
            out = model(data.x, data.edge_index, **inputs)
        times.append(time.perf_counter() - start)
        val_loss = F.cross_entropy(out[data.val_mask], data.y[data.val_mask])
        pred = out.argmax(dim=-1)
        val_acc = (pred[data.val_mask] == data.y[data.val_mask]).float().mean()
        val_loss, val_acc = float(val_loss), float(val_acc)

        # GAT's rule: keep the model that improves both, wait on either.
        if val_acc >= max_acc or val_loss <= min_loss:
            if val_acc >= max_acc and val_loss <= min_loss:
                test_acc = (pred[data.test_mask] == data.y[data.test_mask])
                best = dict(test_acc=float(test_acc.float().mean()),
                            val_acc=val_acc, best_epoch=epoch)
            max_acc, min_loss = max(val_acc, max_acc), min(val_loss, min_loss)
            bad_epochs = 0
        else:
            bad_epochs += 1
        if progress is not None:
            progress.set_postfix(seed=seed, epoch=epoch, val=f'{max_acc:.3f}',
                                 test=f"{best['test_acc']:.3f}")
            progress.update()
        if bad_epochs >= patience:
            break
    return dict(best, epochs=epoch, epoch_time=statistics.mean(times),
                parameters=sum(trained.values()))


def run_seed(
    mechanism: Mechanism,
    data: Data,
    num_classes: int,
    seed: int,
    hp: Hyperparameters,
    *,
    epochs: int,
    patience: int,
    conv_kwargs: Optional[Dict[str, Any]] = None,
    progress: Any = None,
) -> Dict[str, Any]:
    r"""Seeds torch with :obj:`seed`, builds the mechanism's model on
    :obj:`data`'s device and trains it with
    :func:`train_node_classifier`.

    Args:
        mechanism (Mechanism): The row to train.
        data (Data): The graph after :meth:`Mechanism.data_transform`.
        num_classes (int): Output classes.
        seed (int): The seed.
        hp (Hyperparameters): From :meth:`Mechanism.hyperparameters`.
        epochs (int): Maximum epochs.
        patience (int): Early-stopping patience.
        conv_kwargs (dict, optional): Extra layer arguments.
            (default: :obj:`None`)
        progress (tqdm, optional): Updated once per epoch.
            (default: :obj:`None`)

    Returns:
        The dict of :func:`train_node_classifier`.
    """
    torch.manual_seed(seed)
    model = mechanism.build(data.num_features, num_classes, hp,
                            conv_kwargs).to(data.x.device)
    inputs = {name: data[name] for name in mechanism.inputs}
    return train_node_classifier(
        model, data, lr=hp.lr, weight_decay=hp.weight_decay, epochs=epochs,
        patience=patience, inputs=inputs, progress=progress, seed=seed)
